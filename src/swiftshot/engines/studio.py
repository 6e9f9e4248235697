"""The studio engine: procedural product-photography backdrops from a short prompt.

No weights, no GPU: a seamless paper sweep, a marble or wooden tabletop, concrete, linen or
terrazzo, lit softly or dramatically, in a colour the prompt names. Same spec, same pixels.

How a frame is made (why it is fast): everything smooth (light pools, the sweep's cove, window
light, vignette, wall/floor colours, marble clouds) is computed at 1/4 resolution and upsampled
once. Only the things the eye reads as sharp are full resolution: one single-channel texture
field per material (vein / grain / weave / pores / chips) and a film-grain tile cut from a
table built once in ``load()``. The final image is three single-channel ``scaleAdd`` passes
(colour = smooth base + smooth tint × texture + grain) and one conversion to uint8; the grain
doubles as dither, so smooth gradients do not band. The frame is built in Pillow's own RGBX
layout and the image maps it (no copy); the engine keeps its last frames (``_CACHE_BYTES``, about
four at 2000²) and gives the same spec's frame again. It hits when requests share the backdrop's
seed (a client that fixes the seed for its catalogue); an unseeded product request derives its
seed from the whole request, product included, so each product gets a frame of its own.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageColor

from swiftshot.config import StudioSettings
from swiftshot.engines.base import StepCallback, check_cancel, wanted_previews
from swiftshot.spec import RenderSpec

RGB = tuple[float, float, float]

MATERIALS = ("paper", "solid", "gradient", "marble", "wood", "concrete", "linen", "terrazzo", "pastel")
LIGHTINGS = ("soft", "hard", "morning", "golden hour", "dramatic")
LAYOUTS = ("sweep", "tabletop", "flat")
DIRECTIONS = ("left", "right", "top")

_MATERIAL_WORDS = {
    "paper": "paper", "sweep": "paper", "seamless": "paper", "backdrop": "paper", "studio": "paper",
    "solid": "solid", "plain": "solid", "flat-colour": "solid", "pure": "solid",
    "gradient": "gradient", "ombre": "gradient",
    "marble": "marble", "carrara": "marble", "calacatta": "marble", "stone": "marble",
    "wood": "wood", "wooden": "wood", "timber": "wood", "plank": "wood", "planks": "wood",
    "oak": "wood", "walnut": "wood", "maple": "wood", "pine": "wood", "teak": "wood",
    "ash": "wood", "cherry": "wood", "ebony": "wood", "mahogany": "wood",
    "concrete": "concrete", "cement": "concrete", "plaster": "concrete",
    "linen": "linen", "fabric": "linen", "cloth": "linen", "canvas": "linen",
    "terrazzo": "terrazzo",
    "pastel": "pastel",
}
_LIGHT_WORDS = {
    "soft": "soft", "diffused": "soft", "diffuse": "soft", "even": "soft", "bright": "soft",
    "hard": "hard", "harsh": "hard", "direct": "hard", "crisp": "hard",
    "morning": "morning", "window": "morning", "daylight": "morning",
    "golden": "golden hour", "sunset": "golden hour", "sunlight": "golden hour", "warm-light": "golden hour",
    "dramatic": "dramatic", "moody": "dramatic", "spotlight": "dramatic", "dark": None,
}
_LAYOUT_WORDS = {
    "sweep": "sweep", "seamless": "sweep", "cyclorama": "sweep", "cyc": "sweep",
    "tabletop": "tabletop", "table": "tabletop", "counter": "tabletop", "countertop": "tabletop",
    "surface": "tabletop", "shelf": "tabletop", "desk": "tabletop",
    "flat": "flat", "flatlay": "flat", "flat-lay": "flat", "overhead": "flat", "top-down": "flat",
    "topdown": "flat", "above": "flat",
}
_WOODS: dict[str, RGB] = {
    "oak": (184, 140, 92), "walnut": (112, 74, 48), "maple": (214, 178, 132), "pine": (206, 160, 104),
    "teak": (160, 108, 60), "ash": (200, 170, 132), "cherry": (150, 82, 52), "ebony": (52, 40, 34),
    "mahogany": (118, 58, 40),
}
# Photo-stylist colour words CSS lacks; CSS names (ImageColor.colormap) and #rrggbb work too.
_EXTRA_COLOURS: dict[str, RGB] = {
    "sage": (156, 175, 136), "sage green": (156, 175, 136), "blush": (232, 196, 190),
    "dusty rose": (204, 156, 152), "terracotta": (196, 110, 80), "sand": (214, 196, 168),
    "cream": (242, 234, 218), "charcoal": (58, 60, 64), "taupe": (160, 146, 132),
    "mustard": (214, 170, 60), "off white": (240, 236, 228), "off-white": (240, 236, 228),
    "warm white": (244, 240, 232), "cool grey": (190, 194, 200), "cool gray": (190, 194, 200),
    "warm grey": (196, 190, 182), "warm gray": (196, 190, 182), "stone": (190, 184, 174),
    "nude": (226, 196, 170), "mint": (190, 228, 208), "lilac": (204, 186, 220),
    "butter": (246, 230, 170), "powder blue": (182, 208, 226), "greige": (190, 182, 170),
    "ivory": (246, 242, 230), "rust": (170, 84, 50), "forest green": (52, 86, 60), "emerald": (40, 120, 86),
}
_MODIFIERS = {"light": 0.45, "pale": 0.6, "soft": 0.25, "dark": -0.45, "deep": -0.35, "muted": 0.0}
_PASTELS: tuple[RGB, ...] = (
    (244, 205, 205), (205, 226, 244), (214, 238, 214), (246, 232, 196), (226, 212, 242),
    (248, 220, 200), (204, 236, 232),
)
_WORD_RE = re.compile(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b|[a-zA-Z][a-zA-Z\-]*")
_SURFACE_WORDS = {"wall", "background", "backdrop", "behind"}


@dataclass(frozen=True)
class Scene:
    """What a prompt asks for, after parsing. Unknown words are ignored."""

    material: str = "paper"
    layout: str = "sweep"
    lighting: str = "soft"
    direction: str = "left"
    colour: RGB | None = None
    colour2: RGB | None = None
    wall: RGB | None = None
    wood: str | None = None
    words: tuple[str, ...] = field(default=(), compare=False)


def _css(name: str) -> RGB | None:
    name = name.lower()
    if name in _EXTRA_COLOURS:
        return _EXTRA_COLOURS[name]
    compact = name.replace(" ", "").replace("-", "")
    if compact in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(compact)[:3]
        return _photographic((float(r), float(g), float(b)))
    return None


def _photographic(c: RGB) -> RGB:
    """Tame pure CSS primaries ("blue" is #0000ff): paper that saturated does not exist.

    Hex colours are taken literally; only named colours pass through here.
    """
    hi, lo = max(c), min(c)
    saturation = (hi - lo) / hi if hi else 0.0
    if saturation < 0.75:
        return c
    grey = 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2]
    return _mix(c, (grey + 40, grey + 40, grey + 40), 0.35)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _modify(c: RGB, amount: float) -> RGB:
    if amount == 0.0:  # muted: halfway to its grey
        grey = sum(c) / 3
        return _mix(c, (grey, grey, grey), 0.5)
    return _mix(c, (255.0, 255.0, 255.0), amount) if amount > 0 else _mix(c, (0.0, 0.0, 0.0), -amount)


def parse_prompt(prompt: str) -> Scene:
    """Material, layout, light and colours named in ``prompt`` (case-insensitive)."""
    words = [w.lower() for w in _WORD_RE.findall(prompt)]
    material = layout = lighting = direction = wood = None
    colours: list[tuple[int, RGB]] = []
    wall: RGB | None = None
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        taken = 1
        colour: RGB | None = None
        if w.startswith("#"):
            r, g, b = ImageColor.getrgb(w)[:3]
            colour = (float(r), float(g), float(b))
        elif w in _MODIFIERS and nxt and (_css(nxt) or _css(f"{nxt} {words[i + 2]}" if i + 2 < len(words) else "")):
            two = f"{nxt} {words[i + 2]}" if i + 2 < len(words) else ""
            base = _css(two) if two and _css(two) else _css(nxt)
            taken = 3 if two and _css(two) else 2
            compact = _css(f"{w}{nxt}")  # "light blue" is a CSS colour of its own
            colour = compact if compact and taken == 2 else _modify(base, _MODIFIERS[w])  # type: ignore[arg-type]
        elif nxt and _css(f"{w} {nxt}"):
            colour, taken = _css(f"{w} {nxt}"), 2
        elif w == "golden" and nxt == "hour":
            lighting, taken = "golden hour", 2
        elif w in _WOODS:
            wood, material = w, "wood"
        elif w in _MATERIAL_WORDS and (w != "stone" or material is None):
            if material is None or material == "paper":
                material = _MATERIAL_WORDS[w]
            if w in ("sweep", "seamless"):
                layout = layout or "sweep"
        elif w in _LAYOUT_WORDS:
            layout = layout or _LAYOUT_WORDS[w]
        elif w in _LIGHT_WORDS and _LIGHT_WORDS[w]:
            lighting = lighting or _LIGHT_WORDS[w]
        elif w in DIRECTIONS:
            direction = direction or w
        elif (c := _css(w)) is not None:
            colour = c
        if colour is not None:
            after = words[i + taken:i + taken + 2]
            if any(a in _SURFACE_WORDS for a in after):
                wall = colour
            else:
                colours.append((i, colour))
        i += taken
    if wall is not None and not colours and material in (None, "paper", "solid", "pastel", "gradient"):
        colours.append((0, wall))  # "grey background" names the backdrop itself, not a wall
        wall = None
    material = material or "paper"
    if layout is None:
        layout = {"marble": "tabletop", "wood": "tabletop", "concrete": "tabletop",
                  "terrazzo": "tabletop", "linen": "flat"}.get(material, "sweep")
    if material in ("solid", "gradient") and layout == "tabletop":
        layout = "sweep"
    return Scene(
        material=material, layout=layout, lighting=lighting or "soft", direction=direction or "left",
        colour=colours[0][1] if colours else None,
        colour2=colours[1][1] if len(colours) > 1 else None,
        wall=wall, wood=wood, words=tuple(words),
    )


# -- noise -----------------------------------------------------------------------------------

def _fbm(rng: np.random.Generator, h: int, w: int, base: float, octaves: int, gain: float = 0.5,
         aspect: float = 1.0) -> np.ndarray:
    """Fractal value noise, zero mean, ~unit std, with ``base`` cells across the height.

    Built as a pyramid: each octave doubles the previous grid and adds fresh noise, and only
    the finished grid is resized to (h, w), so the cost is one resize whatever the octaves.
    ``aspect`` > 1 stretches features along x (wood figure, marble drift).
    """
    gy = max(2, int(round(base)))
    gx = max(2, int(round(base * w / h / aspect)))
    grid = rng.standard_normal((gy + 2, gx + 2)).astype(np.float32)
    amp, total = 1.0, 1.0
    for _ in range(octaves - 1):
        gy, gx = gy * 2, gx * 2
        grid = cv2.resize(grid, (gx + 2, gy + 2), interpolation=cv2.INTER_CUBIC)
        amp *= gain
        total += amp * amp
        grid += amp * rng.standard_normal(grid.shape).astype(np.float32)
    # the outer ring of cells is margin, so the edges are as random as the middle
    fx, fy = (gx + 2) / gx, (gy + 2) / gy
    up = cv2.resize(grid, (int(w * fx) + 1, int(h * fy) + 1), interpolation=cv2.INTER_CUBIC)
    oy, ox = (up.shape[0] - h) // 2, (up.shape[1] - w) // 2
    return up[oy:oy + h, ox:ox + w] * (1.0 / math.sqrt(total))


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# -- the engine ------------------------------------------------------------------------------

@dataclass
class _Layers:
    """A frame as two smooth low-res fields, two colours and one full-res texture.

    pixel = light·wall + lightm·(floor − wall) + lightm·texture·detail + grain, where ``light``
    is the light falling on each point and ``lightm`` the part of it on the floor/table. Every
    term is a scalar field times a colour, so the full-resolution work per channel is one
    ``addWeighted``, one ``scaleAdd`` per extra term and one conversion, and the smooth fields
    are upsampled once for all three channels.
    """

    light: np.ndarray  # (lh, lw) float32
    lightm: np.ndarray  # (lh, lw) float32
    wall: np.ndarray  # (3,) float32, 0-255, times the light colour
    floor_minus_wall: np.ndarray  # (3,)
    detail: np.ndarray  # (3,) colour change per unit of texture
    texture: np.ndarray | list[np.ndarray] | None
    """(H, W) float32 shared by the channels, one per channel (already colour offsets), or None."""


class StudioEngine:
    """Procedural studio backdrops; see the module docstring."""

    name = "studio"
    version = "4"  # bump whenever the same spec would give other pixels (it is in every cache key)
    batch_gain = False  # run() renders specs in turn: the worker need not wait to batch them
    # What the front needs to know (runtime/executor.EngineInfo): fields with no effect here
    # are cleared from the canonical spec so they cannot split the cache.
    ignored_fields = frozenset({"steps", "guidance", "negative_prompt", "model"})
    batch_fields = ("width", "height")
    _LOW = 4  # smooth layers are computed at 1/_LOW resolution
    _GRAIN_SIDE = 2048 + 256
    _tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    _tables_lock = threading.Lock()

    _CACHE_BYTES = 64 << 20
    """Frames kept by ``render`` (about four 2000² ones): the same spec gives the same pixels,
    so a catalogue rendered with one seed puts product after product on one kept frame."""

    def __init__(self, settings: StudioSettings | None = None) -> None:
        self.settings = settings or StudioSettings()
        self._grain: np.ndarray | None = None
        self._weave: np.ndarray | None = None
        self._pores: np.ndarray | None = None
        self._fibres: np.ndarray | None = None
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._frames_bytes = 0
        self._frames_lock = threading.Lock()

    # -- protocol ----------------------------------------------------------------------------

    def load(self) -> None:
        # The tables are constants (seed-independent, ~70 MB, ~1 s to build): every engine in
        # the process shares one set.
        with StudioEngine._tables_lock:
            if StudioEngine._tables is None:
                StudioEngine._tables = self._build_tables()
        self._grain, self._weave, self._pores, self._fibres = StudioEngine._tables

    @classmethod
    def _build_tables(cls) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0x57D10)
        side = cls._GRAIN_SIDE
        # Film grain: slightly clumped (blurred) so it reads as grain, not as digital noise.
        g = rng.standard_normal((side, side)).astype(np.float32)
        g = cv2.GaussianBlur(g, (0, 0), 0.6)
        g *= 1.0 / float(g.std())
        weave = cls._make_weave(rng, side)
        pores = cls._make_pores(rng, side)
        fib = rng.standard_normal((3 * side, 320)).astype(np.float32)
        fibres = cv2.GaussianBlur(fib, (0, 0), sigmaX=1.2, sigmaY=0.6) * 2.5
        for table in (g, weave, pores, fibres):
            table.flags.writeable = False  # shared between engines and threads
        return g, weave, pores, fibres

    def warmup(self, shapes: Sequence[tuple[int, int]]) -> None:
        self.load()
        for w, h in shapes:
            self.run([RenderSpec(prompt="white marble", width=w, height=h, seed=0)])

    def batch_key(self, spec: RenderSpec) -> Hashable:
        return ("studio", spec.width, spec.height)

    def run(self, specs: Sequence[RenderSpec], on_step: StepCallback | None = None) -> list[Image.Image]:
        self.load()
        if wanted_previews(on_step):
            # A coarse render first (1/4 of each side, ~1/16 of the work) as the one preview;
            # the final follows as step 2. Nobody asking: one step, no extra work.
            check_cancel(on_step, 1, 2, [self.render(s.prompt, _coarse(s.width), _coarse(s.height),
                                                     s.seed or 0) for s in specs])
            out = [self.render(s.prompt, s.width, s.height, s.seed or 0) for s in specs]
            check_cancel(on_step, 2, 2)
            return out
        out = [self.render(s.prompt, s.width, s.height, s.seed or 0) for s in specs]
        check_cancel(on_step, 1, 1)
        return out

    def describe(self) -> dict[str, object]:
        return {
            "materials": list(MATERIALS),
            "lighting": list(LIGHTINGS),
            "layouts": list(LAYOUTS),
            "directions": list(DIRECTIONS),
            "woods": list(_WOODS),
            "colours": "CSS colour names, #rrggbb, and " + ", ".join(sorted(_EXTRA_COLOURS)),
            "grain": self.settings.grain,
        }

    # -- rendering ---------------------------------------------------------------------------

    def render(self, prompt: str, width: int, height: int, seed: int) -> Image.Image:
        scene = parse_prompt(prompt)
        if scene.material == "solid":
            colour = scene.colour or (255.0, 255.0, 255.0)
            return Image.new("RGB", (width, height), tuple(int(round(c)) for c in colour))
        # Everything that changes the pixels: the spec's prompt, size and seed, and the grain
        # setting (the tables are constants; the engine's version is fixed per process).
        key = (prompt, width, height, seed & 0xFFFFFFFF, float(self.settings.grain))
        with self._frames_lock:
            rgbx = self._frames.get(key)
            if rgbx is not None:
                self._frames.move_to_end(key)
        if rgbx is None:
            rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x5C])
            rgbx = self._compose(self._layers(scene, rng, width, height), rng, width, height)
            self._keep(key, rgbx)
        return _frame_image(rgbx)

    def _keep(self, key: Hashable, rgbx: np.ndarray) -> None:
        """Remember a frame, the least recently used ones making room (bounded in bytes)."""
        if rgbx.nbytes > self._CACHE_BYTES:
            return
        with self._frames_lock:
            if key in self._frames:
                return
            self._frames[key] = rgbx
            self._frames_bytes += rgbx.nbytes
            while self._frames_bytes > self._CACHE_BYTES:
                _, old = self._frames.popitem(last=False)
                self._frames_bytes -= old.nbytes

    def _compose(self, layers: _Layers, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
        """The frame as a read-only (h, w, 4) RGBX array (see ``_frame_image``)."""
        assert self._grain is not None
        gy = int(rng.integers(0, self._grain.shape[0] - h + 1))
        gx = int(rng.integers(0, self._grain.shape[1] - w + 1))
        grain_amp = 1.6 * self.settings.grain
        grain = self._grain[gy:gy + h, gx:gx + w]
        light = cv2.resize(layers.light, (w, h), interpolation=cv2.INTER_LINEAR)
        lightm = cv2.resize(layers.lightm, (w, h), interpolation=cv2.INTER_LINEAR)
        shaded: np.ndarray | list[np.ndarray] | None = None
        if isinstance(layers.texture, list):
            shaded = [cv2.multiply(lightm, t) for t in layers.texture]
        elif layers.texture is not None:
            shaded = cv2.multiply(lightm, layers.texture)
        # The per-channel passes run a band of rows at a time: one float band (reused, written
        # in place) and the band's rows of the inputs stay in the core's cache across the three
        # channels, where whole 16 MB planes went to memory and back on every pass. Each pixel's
        # arithmetic is the same element-wise chain as on whole planes: the same pixels.
        rows = max(1, _BAND_FLOATS // max(1, w))
        base = np.empty((min(rows, h), w), np.float32)
        channels = [np.empty((h, w), np.uint8) for _ in range(3)]
        for y0 in range(0, h, rows):
            y1 = min(h, y0 + rows)
            band = base[:y1 - y0]
            for c in range(3):
                cv2.addWeighted(light[y0:y1], float(layers.wall[c]), lightm[y0:y1],
                                float(layers.floor_minus_wall[c]), 0.0, dst=band)
                if shaded is not None:
                    tex = shaded[c] if isinstance(shaded, list) else shaded
                    cv2.scaleAdd(tex[y0:y1], float(layers.detail[c]), band, dst=band)
                if grain_amp > 0:
                    cv2.scaleAdd(grain[y0:y1], grain_amp, band, dst=band)
                cv2.convertScaleAbs(band, dst=channels[c][y0:y1])
        # RGBX, Pillow's own layout for RGB: the image maps this buffer instead of copying it
        # (the fourth byte is never read; any channel will do).
        rgbx = cv2.merge([*channels, channels[2]])
        rgbx.flags.writeable = False
        return rgbx

    # -- scene -> layers ---------------------------------------------------------------------

    def _layers(self, scene: Scene, rng: np.random.Generator, w: int, h: int) -> _Layers:
        lw, lh = max(8, -(-w // self._LOW)), max(8, -(-h // self._LOW))
        ys = ((np.arange(lh, dtype=np.float32) + 0.5) / lh)[:, None]
        xs = ((np.arange(lw, dtype=np.float32) + 0.5) / lw)[None, :]
        aspect = w / h
        light, light_rgb, ambient = self._lighting(scene, rng, xs, ys, aspect)
        peak = {"soft": 0.99, "hard": 1.0, "morning": 1.02, "golden hour": 1.0, "dramatic": 1.0}[scene.lighting]
        surf = self._surface_colours(scene, rng)
        horizon = float({"sweep": 0.6, "tabletop": 0.46, "flat": -1.0}[scene.layout] + rng.uniform(-0.03, 0.03))

        if scene.layout == "sweep":
            # A cove: the surface normal turns from facing the camera (wall) to facing up (floor);
            # the key light comes from above and in front, so the floor catches more of it.
            cove = _smoothstep(horizon - 0.16, horizon + 0.16, ys)
            shade = 0.86 + 0.16 * cove - 0.05 * np.clip((ys - horizon - 0.2) / 0.4, 0, 1)
            floor_mask = cove
        elif scene.layout == "tabletop":
            floor_mask = _smoothstep(horizon - 0.004, horizon + 0.004, ys)
            # Contact shadow where the table meets the wall, a soft one on each side.
            ao = 1.0 - 0.16 * np.exp(-np.abs(ys - horizon) / 0.035) - 0.05 * np.exp(-np.abs(ys - horizon) / 0.2)
            shade = (0.88 + 0.14 * floor_mask) * ao
        else:
            floor_mask = np.ones_like(ys)
            shade = np.ones_like(ys)
        lum = light * shade
        lum = lum * (peak / float(lum.max()))
        if scene.material == "linen":
            lum = lum * self._folds(rng, lh, lw)
        if scene.material == "gradient":
            floor_mask = _smoothstep(0.0, 1.0, np.clip(ys * 0.9 + 0.05, 0, 1))
        textured = scene.material in ("marble", "wood", "concrete", "linen", "terrazzo")
        if textured and scene.layout == "sweep":
            # a printed backdrop: the texture runs up the wall too (wall and floor share a colour)
            floor_mask = np.ones_like(ys)
        # ambient light is a small even lift: fold it into the light colour as a tint
        tint = light_rgb + ambient
        wall_c = np.asarray(surf["wall"], np.float32) * tint
        floor_c = np.asarray(surf["floor"], np.float32) * tint
        lum = np.broadcast_to(lum, (lh, lw)).astype(np.float32)
        lightm = (lum * floor_mask).astype(np.float32)
        texture, detail = None, np.zeros(3, np.float32)
        if textured:
            texture, dark = self._texture(scene, rng, w, h, horizon, surf)
            # texture 0 = the surface colour, 1 = its detail colour (vein, late wood, pore ...);
            # a per-channel texture already holds colour offsets, so its detail is the light
            detail = tint if isinstance(texture, list) else np.asarray(dark, np.float32) * tint - floor_c
        return _Layers(light=lum, lightm=lightm, wall=wall_c, floor_minus_wall=floor_c - wall_c,
                       detail=detail.astype(np.float32), texture=texture)

    def _lighting(self, scene: Scene, rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray,
                  aspect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        side = {"left": -1.0, "right": 1.0, "top": 0.0}[scene.direction]
        kx = 0.5 + side * (0.22 + rng.uniform(-0.05, 0.05))
        ky = 0.28 + rng.uniform(-0.06, 0.06)
        dx = (xs - kx) * aspect
        dy = ys - ky
        r2 = dx * dx + dy * dy
        preset = {
            # pool radius, pool strength, fill, vignette, light colour, ambient colour
            "soft": (0.75, 0.22, 0.86, 0.16, (1.0, 0.995, 0.985), (0.0, 0.0, 0.0)),
            "hard": (0.42, 0.32, 0.72, 0.22, (1.0, 0.99, 0.97), (0.0, 0.0, 0.0)),
            "morning": (0.7, 0.2, 0.84, 0.14, (0.985, 0.995, 1.0), (0.0, 0.0, 0.01)),
            "golden hour": (0.6, 0.25, 0.9, 0.18, (1.0, 0.9, 0.76), (0.03, 0.015, 0.0)),
            "dramatic": (0.32, 0.75, 0.2, 0.55, (1.0, 0.98, 0.95), (0.0, 0.0, 0.0)),
        }[scene.lighting]
        radius, pool, fill, vig, light_c, amb_c = preset
        light = fill + pool * np.exp(-r2 / (2 * radius * radius))
        if scene.lighting in ("morning", "golden hour", "hard"):
            light = light * self._window(scene, rng, xs, ys, aspect, side)
        # Vignette: corners fall off like a lens; strongest on dramatic light.
        vx, vy = (xs - 0.5) * 2, (ys - 0.5) * 2
        light = light * (1.0 - vig * np.clip(0.5 * (vx * vx + vy * vy), 0, 1.6) ** 1.5)
        return light.astype(np.float32), np.asarray(light_c, np.float32), np.asarray(amb_c, np.float32)

    def _window(self, scene: Scene, rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray,
                aspect: float, side: float) -> np.ndarray:
        """Sun through a window: a slanted bright patch crossed by the frame's mullions."""
        angle = math.radians(rng.uniform(20, 35)) * (-side if side else 1.0)
        u = (xs - 0.5) * aspect * math.cos(angle) + (ys - 0.5) * math.sin(angle)
        v = -(xs - 0.5) * aspect * math.sin(angle) + (ys - 0.5) * math.cos(angle)
        soft = {"hard": 0.008, "morning": 0.035, "golden hour": 0.025}[scene.lighting]
        strength = {"hard": 0.4, "morning": 0.16, "golden hour": 0.26}[scene.lighting]
        u0 = rng.uniform(-0.1, 0.1) + 0.08 * side
        half = 0.26
        patch = _smoothstep(-half - soft, -half + soft, u - u0) * (1 - _smoothstep(half - soft, half + soft, u - u0))
        patch = patch * _smoothstep(-0.55, -0.3, v) * (1 - _smoothstep(0.35, 0.6, v))
        # mullions: one vertical bar and one horizontal bar of the frame
        bar = 0.028
        mull = 1 - (1 - _smoothstep(bar - soft, bar + soft, np.abs(u - u0))) * 0.85
        mull = mull * (1 - (1 - _smoothstep(bar - soft, bar + soft, np.abs(v + 0.05))) * 0.85)
        return (1 - strength * 0.45) + strength * patch * mull

    def _folds(self, rng: np.random.Generator, lh: int, lw: int) -> np.ndarray:
        """Soft cloth undulation used as shading: broad, gentle, no sharp creases."""
        n = _fbm(rng, lh, lw, 2.5, 3, 0.4, aspect=1.5)
        return (0.97 + 0.035 * np.tanh(n)).astype(np.float32)

    def _surface_colours(self, scene: Scene, rng: np.random.Generator) -> dict[str, RGB]:
        m = scene.material
        c1, c2 = scene.colour, scene.colour2
        if m == "pastel" and c1 is None:
            c1 = _PASTELS[int(rng.integers(len(_PASTELS)))]
        if m == "wood":
            wood = _WOODS.get(scene.wood or "oak", _WOODS["oak"])
            floor = c1 if c1 is not None else wood
            dark = _mix(floor, (40.0, 24.0, 14.0), 0.42)
        elif m == "marble":
            floor = c1 or (236.0, 234.0, 230.0)
            lum = 0.3 * floor[0] + 0.59 * floor[1] + 0.11 * floor[2]
            dark = c2 or ((236.0, 228.0, 212.0) if lum < 90 else _mix(floor, (70.0, 74.0, 82.0), 0.62))
        elif m == "concrete":
            floor = c1 or (178.0, 176.0, 171.0)
            dark = _mix(floor, (60.0, 60.0, 60.0), 0.5)
        elif m == "linen":
            floor = c1 or (222.0, 212.0, 196.0)
            dark = _mix(floor, (70.0, 60.0, 50.0), 0.3)
        elif m == "terrazzo":
            floor = c1 or (236.0, 230.0, 220.0)
            dark = c2 or (196.0, 110.0, 80.0)
        else:
            floor = c1 or (238.0, 235.0, 229.0)
            dark = floor
        if m == "gradient":
            top = c1 or (226.0, 226.0, 232.0)
            bottom = c2 or _mix(top, (255.0, 255.0, 255.0), 0.55)
            return {"wall": top, "floor": bottom, "dark": bottom}
        if scene.wall is not None:
            wall = scene.wall
        elif scene.layout == "tabletop":
            # A plain wall a little lighter and greyer than the table: it recedes.
            grey = sum(floor) / 3
            neutral = (236.0, 232.0, 226.0) if grey > 60 else (70.0, 68.0, 66.0)
            wall = _mix(_mix(floor, (grey, grey, grey), 0.6), neutral, 0.6)
        else:
            wall = floor
        return {"wall": wall, "floor": floor, "dark": dark}

    # -- textures (full resolution, single channel, 0 = surface colour, 1 = detail colour) ---

    def _texture(self, scene: Scene, rng: np.random.Generator, w: int, h: int, horizon: float,
                 surf: dict[str, RGB]) -> tuple[np.ndarray | list[np.ndarray], RGB]:
        m = scene.material
        if m == "marble":
            tex = self._marble(rng, w, h, scene.layout, horizon)
        elif m == "wood":
            tex = self._wood(rng, w, h, scene.layout, horizon)
        elif m == "concrete":
            tex = self._concrete(rng, w, h, scene.layout, horizon)
        elif m == "linen":
            tex = self._linen(rng, w, h, scene.layout, horizon)
        else:
            return self._terrazzo(rng, w, h, scene.layout, horizon, surf["floor"], surf["dark"]), (255.0, 255.0, 255.0)
        return tex, surf["dark"]

    def _plane_warp(self, layout: str, horizon: float, w: int, h: int) -> tuple[np.ndarray, int, int]:
        """Homography from plane texture pixels to image pixels, and the plane texture size.

        The table top is seen from ~30° above: rows compress towards the back edge, which sits
        at ``horizon`` (a fraction of the height); the front row is at 1:1 scale.
        """
        if layout != "tabletop":
            return np.eye(3), w, h
        y_h = horizon * h
        y_v = y_h - 0.4 * h  # vanishing line above the table's back edge
        depth = h - y_v
        z0 = self._z0(horizon, h)
        cx = w / 2
        z_max = z0 * (depth / (y_h - y_v) - 1)
        x_half = (w / 2) * depth / (y_h - y_v)
        pw, ph = int(math.ceil(2 * x_half)) + 2, int(math.ceil(z_max)) + 2
        # plane (X, Z): X = px - x_half, Z = ph - pz (front row = last texture row)
        to_plane = np.array([[1, 0, -x_half], [0, -1, ph], [0, 0, 1]], np.float64)
        himg = np.array([[z0, cx, cx * z0], [0, y_v, y_v * z0 + z0 * depth], [0, 1, z0]], np.float64)
        return himg @ to_plane, pw, ph

    @staticmethod
    def _z0(horizon: float, h: int) -> float:
        """Camera distance to the table's front edge, in front-row pixels (~33° down)."""
        return (h - (horizon * h - 0.4 * h)) / 0.55

    def _marble(self, rng: np.random.Generator, w: int, h: int, layout: str, horizon: float) -> np.ndarray:
        m, pw, ph = self._plane_warp(layout, horizon, w, h)
        # Veins are the zero crossings of slanted ramps bent by turbulence (the classic marble
        # recipe). The ramps are smooth, so they are built at 1/8 of the plane (coarser for a
        # table's plane, most of which lies far away) and warped to 1/4 of the image; only the
        # sine that turns them into thin lines runs after the warp.
        scale = max(pw, ph) / max(w, h)
        s = int(8 * max(1.0, scale / 1.5))
        lw, lh = max(8, pw // s), max(8, ph // s)
        gx, gy = np.meshgrid(np.linspace(0, scale, lw, dtype=np.float32),
                             np.linspace(0, scale * lh / lw, lh, dtype=np.float32))
        sign = 1 if rng.random() < 0.5 else -1
        a1 = rng.uniform(0.45, 0.85) * sign
        a2 = a1 - sign * rng.uniform(0.4, 0.7)
        turb = _fbm(rng, lh, lw, 1.4 * scale, 4, 0.45)
        turb2 = _fbm(rng, lh, lw, 1.6 * scale, 4, 0.5)
        wid = np.clip(0.6 + 0.4 * turb2, 0.15, 1.2)
        ramp1 = (gx * math.cos(a1) + gy * math.sin(a1)) * rng.uniform(0.9, 1.4) + 0.22 * turb
        ramp2 = (gx * math.cos(a2) + gy * math.sin(a2)) * rng.uniform(3.5, 5.5) + 0.28 * turb2 + 0.1 * turb
        ramp2 = ramp2 + 0.7 * _fbm(rng, lh, lw, 0.8 * scale, 2, 0.5)  # uneven spacing
        presence = _smoothstep(-0.1, 0.9, _fbm(rng, lh, lw, 1.5 * scale, 3, 0.5))
        clouds = 0.2 * np.clip(_fbm(rng, lh, lw, 2.0 * scale, 5, 0.6, aspect=2.0) * 0.5 + 0.4, 0, 1.5)
        patch = _smoothstep(-0.3, 1.0, _fbm(rng, lh, lw, 1.2 * scale, 2, 0.5))
        sm = np.array([[1 / 4, 0, 0], [0, 1 / 4, 0], [0, 0, 1]]) @ m @ np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]])
        lo_w, lo_h = -(-w // 4), -(-h // 4)
        r1, r2, soft, pat, pres = (cv2.warpPerspective(f.astype(np.float32), sm, (lo_w, lo_h), flags=cv2.INTER_LINEAR,
                                                 borderMode=cv2.BORDER_REPLICATE)
                             for f in (ramp1, ramp2, clouds, patch * wid, presence))
        # Dividing by the ramp's slope turns sin() into distance-to-vein in pixels, so a vein
        # keeps its width where the turbulence flattens the ramp (no blobs).
        px = 4.0 * max(w, h) / 1024
        g1 = np.maximum(np.hypot(*np.gradient(r1)), 1e-4) * np.pi / px
        g2 = np.maximum(np.hypot(*np.gradient(r2)), 1e-4) * np.pi / px
        # Fading a vein by narrowing it (dividing q) costs nothing at full resolution.
        # Where a ramp is nearly flat it hovers around an integer and sin() draws specks: fade
        # those out by pushing q up where the slope is far below the typical one.
        g1 = g1 / (1 + np.square(0.6 * float(np.median(g1)) / g1))
        g2 = g2 / (1 + np.square(0.6 * float(np.median(g2)) / g2))
        # (kept above ~1 px: thinner lines break into dashes when upsampled)
        q1 = np.sin(r1 * np.pi) / (g1 * np.maximum(1.1, (0.8 + 4.0 * pat) * (0.4 + 0.9 * pat)))
        q2 = np.sin(r2 * np.pi) / (g2 * (0.75 + 0.8 * pat))
        # A light blur of the signed field keeps real veins (it is locally a ramp) but removes
        # one-sample islands, which the upsampling would turn into specks.
        # Clipping first: past the LUT's range q only means "no vein", and a huge sample next to
        # a normal one makes the cubic upsampling ring through zero (a speck).
        lim = 1.5 * _VEIN_RANGE
        q1 = cv2.GaussianBlur(np.clip(q1, -lim, lim).astype(np.float32), (0, 0), 0.9)
        q2 = cv2.GaussianBlur(np.clip(q2, -lim, lim).astype(np.float32), (0, 0), 0.9)
        q1u = cv2.resize(q1, (w, h), interpolation=cv2.INTER_CUBIC)
        q2u = cv2.resize(q2, (w, h), interpolation=cv2.INTER_CUBIC)
        v1 = cv2.LUT(cv2.convertScaleAbs(q1u, alpha=255.0 / _VEIN_RANGE), _VEIN_LUT)
        v2 = cv2.LUT(cv2.convertScaleAbs(q2u, alpha=255.0 / _VEIN_RANGE), _FINE_LUT)
        # Broad grey drifts alongside the bold veins, as in Calacatta; smooth, so low-res.
        band = np.exp(-np.square(np.sin(r1 * np.pi) / (np.maximum(g1, 0.02) * 28.0))) * (0.06 + 0.12 * pat)
        soft_up = cv2.resize(soft + band, (w, h), interpolation=cv2.INTER_LINEAR)
        # fine veins come and go in patches; fading them by thinning would break them into dashes
        pres_up = cv2.resize(pres * 0.6, (w, h), interpolation=cv2.INTER_LINEAR)
        return cv2.add(cv2.add(cv2.multiply(v2, pres_up), v1), soft_up)

    def _wood(self, rng: np.random.Generator, w: int, h: int, layout: str, horizon: float) -> np.ndarray:
        m, pw, ph = self._plane_warp(layout, horizon, w, h)
        sx = 16  # along the grain the texture is smooth: build it 16x narrower, stretch in the warp
        tw = max(8, pw // sx)
        plank = int(rng.integers(150, 230)) * max(w, h) / 1024
        z = np.arange(ph, dtype=np.float32)[:, None]
        board_off = rng.uniform(0, plank)
        board = np.floor((z + board_off) / plank)
        nboards = int(board.max()) + 2
        offsets = rng.uniform(0, 1000, nboards).astype(np.float32)
        tone = rng.uniform(-0.12, 0.12, nboards).astype(np.float32)
        b = board.astype(np.int64)[:, 0]
        # Figure: growth rings cut at a shallow angle, i.e. the phase drifts with slow noise.
        drift = _fbm(rng, max(8, ph // 8), tw, ph / plank * 1.5, 3, 0.5, aspect=0.6)
        drift = cv2.resize(drift, (tw, ph), interpolation=cv2.INTER_LINEAR)
        ring_f = rng.uniform(0.05, 0.08) * 1024 / max(w, h)
        phase = z * ring_f + 4.0 * drift + offsets[b][:, None]
        rings = (0.5 + 0.5 * np.cos(phase * (2 * np.pi))) ** 3
        assert self._fibres is not None
        fy = int(rng.integers(0, max(1, self._fibres.shape[0] - ph)))
        fx = int(rng.integers(0, max(1, self._fibres.shape[1] - tw)))
        fibres = self._fibres[fy:fy + ph, fx:fx + tw]
        if fibres.shape != rings.shape:  # a plane larger than the table: tile it
            fibres = np.resize(self._fibres, rings.shape)
        r = (z + board_off) % plank
        seam = np.exp(-np.minimum(r, plank - r) / 1.2)
        tex = 0.42 + 0.42 * rings + 0.07 * fibres + tone[b][:, None] + 0.55 * seam
        tex = np.clip(tex, 0, 1.2).astype(np.float32)
        stretch = np.array([[sx, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
        m2 = m @ stretch
        return cv2.warpPerspective(tex, m2, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _concrete(self, rng: np.random.Generator, w: int, h: int, layout: str, horizon: float) -> np.ndarray:
        assert self._pores is not None
        m, pw, ph = self._plane_warp(layout, horizon, w, h)
        s = 4
        lw, lh = max(8, pw // s), max(8, ph // s)
        scale = max(pw, ph) / max(w, h)
        mottle = 0.08 * _fbm(rng, lh, lw, 4 * scale, 5, 0.65) + 0.07 * _fbm(rng, lh, lw, 1.5 * scale, 2, 0.5)
        sm = np.array([[1 / s, 0, 0], [0, 1 / s, 0], [0, 0, 1]]) @ m @ np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]])
        low = cv2.warpPerspective(mottle.astype(np.float32), sm, (-(-w // s), -(-h // s)),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        up = cv2.resize(low + 0.3, (w, h), interpolation=cv2.INTER_LINEAR)
        py, px = int(rng.integers(0, self._pores.shape[0] - h + 1)), int(rng.integers(0, self._pores.shape[1] - w + 1))
        pores = self._pores[py:py + h, px:px + w]
        return cv2.add(up, self._fade(pores, layout, horizon, w, h))

    def _linen(self, rng: np.random.Generator, w: int, h: int, layout: str, horizon: float) -> np.ndarray:
        assert self._weave is not None
        py, px = int(rng.integers(0, self._weave.shape[0] - h + 1)), int(rng.integers(0, self._weave.shape[1] - w + 1))
        weave = self._weave[py:py + h, px:px + w]
        return self._fade(weave, layout, horizon, w, h)

    def _terrazzo(self, rng: np.random.Generator, w: int, h: int, layout: str, horizon: float,
                  floor: RGB, accent: RGB) -> list[np.ndarray]:
        """Stone chips in four colours, as per-channel colour offsets from the floor colour."""
        m, pw, ph = self._plane_warp(layout, horizon, w, h)
        z0 = self._z0(horizon, h)
        # uint8 canvas of the floor colour: anti-aliased chips blend into it for free
        base = tuple(int(round(c)) for c in floor)
        canvas = cv2.merge([np.full((h, w), b, np.uint8) for b in base])  # 20x faster than canvas[:] = base
        k = max(w, h) / 1024
        palette = [accent, _mix(accent, (255.0, 255.0, 255.0), 0.35), (92.0, 92.0, 96.0),
                   (200.0, 198.0, 194.0), (150.0, 128.0, 100.0)]
        x_lo, x_hi = (pw - w) / 2, (pw + w) / 2
        for size, density in ((11 * k, 0.06), (4.5 * k, 0.07)):
            n = int(density * pw * ph / (size * size * 3))
            cx = rng.uniform(0, pw, n)
            cy = rng.uniform(0, ph, n)
            if layout == "tabletop":
                # only chips inside the visible trapezoid: the rest would be drawn off-screen
                depth = (ph - cy) / ph
                half = w / 2 + (pw - w) / 2 * depth
                # drop chips under ~2 px on screen: near the back edge they blur into the base
                z = ph - cy
                on_screen = size * z0 / (z + z0)
                keep = (np.abs(cx - pw / 2) < half + size) & (on_screen > 2.0)
                cx, cy = cx[keep], cy[keep]
            else:
                keep = (cx > x_lo - size) & (cx < x_hi + size)
                cx, cy = cx[keep], cy[keep]
            n = len(cx)
            verts = 7
            ang = np.sort(rng.uniform(0, 2 * np.pi, (n, verts)), axis=1)
            rad = size * rng.uniform(0.5, 1.5, (n, 1)) * rng.uniform(0.55, 1.0, (n, verts))
            pts = np.stack([cx[:, None] + rad * np.cos(ang), cy[:, None] + rad * np.sin(ang),
                            np.ones((n, verts))], axis=-1) @ m.T
            img = np.round(pts[..., :2] / pts[..., 2:3] * 4).astype(np.int32)
            which = rng.choice(len(palette), n, p=[0.34, 0.18, 0.18, 0.18, 0.12])
            for i, colour in enumerate(palette):
                polys = list(img[which == i])
                if polys:
                    cv2.fillPoly(canvas, polys, tuple(int(round(c)) for c in colour), lineType=cv2.LINE_AA, shift=2)
        return [cv2.subtract(ch, float(b), dtype=cv2.CV_32F) for ch, b in zip(cv2.split(canvas), base, strict=True)]

    def _fade(self, tex: np.ndarray, layout: str, horizon: float, w: int, h: int) -> np.ndarray:
        """Fine texture fades out towards a table's back edge (depth of field)."""
        if layout != "tabletop":
            return tex
        ys = (np.arange(h, dtype=np.float32) + 0.5) / h
        f = _smoothstep(horizon, horizon + 0.35, ys)[:, None]
        return cv2.multiply(tex, np.broadcast_to(f, (h, w)).astype(np.float32))

    # -- tables built once -------------------------------------------------------------------

    @staticmethod
    def _make_weave(rng: np.random.Generator, side: int) -> np.ndarray:
        """Plain linen weave, ~3.5 px threads with slubs (thicker, irregular stretches)."""
        period = 3.6
        x = np.arange(side, dtype=np.float32)
        warp_thr = rng.standard_normal((side // 64 + 2, side)).astype(np.float32)
        slub_w = cv2.resize(warp_thr, (side, side), interpolation=cv2.INTER_LINEAR)
        weft_thr = rng.standard_normal((side, side // 64 + 2)).astype(np.float32)
        slub_h = cv2.resize(weft_thr, (side, side), interpolation=cv2.INTER_LINEAR)
        jx = np.cumsum(rng.normal(0, 0.04, side)).astype(np.float32)
        jy = np.cumsum(rng.normal(0, 0.04, side)).astype(np.float32)
        vx = 0.5 + 0.5 * np.cos(2 * np.pi * (x + jx) / period)[None, :]
        vy = 0.5 + 0.5 * np.cos(2 * np.pi * (x + jy) / period)[:, None]
        over = (np.floor((x + jx) / period)[None, :] + np.floor((x + jy) / period)[:, None]) % 2
        weave = np.where(over > 0, vx * (0.8 + 0.2 * vy), vy * (0.8 + 0.2 * vx))
        tex = 0.45 - 0.18 * weave + 0.12 * (slub_w * vx + slub_h * vy)
        return np.clip(tex, 0, 1).astype(np.float32)

    @staticmethod
    def _make_pores(rng: np.random.Generator, side: int) -> np.ndarray:
        """Concrete's fine sand texture and its scattered air pores."""
        sand = cv2.GaussianBlur(rng.standard_normal((side, side)).astype(np.float32), (0, 0), 0.9)
        sand *= 0.06 / float(sand.std())
        pores = np.zeros((side, side), np.float32)
        n = side * side // 900
        pts = rng.integers(0, side, (n, 2))
        radii = np.clip(rng.exponential(0.8, n), 0.5, 2.5)
        for (x, y), r in zip(pts, radii, strict=True):
            cv2.circle(pores, (int(x) * 4, int(y) * 4), int(r * 4), float(rng.uniform(0.2, 0.6)), -1,
                       cv2.LINE_AA, 2)
        return (sand + pores).astype(np.float32)


_BAND_FLOATS = 1 << 17
"""Floats per band of ``StudioEngine._compose``'s channel passes (512 KB: with the band's rows
of the light, texture and grain planes it stays in a core's L2)."""

_VEIN_RANGE = 12.0
"""|q| is scaled so that 255 = this many vein half-widths before the table lookup."""


def _frame_image(rgbx: np.ndarray) -> Image.Image:
    """An RGB image on a frame's RGBX buffer, without a copy. Pillow marks a mapped image
    read-only and copies it before any change (paste, putpixel, draw ...), so a frame kept by
    the engine is never altered through an image given out."""
    h, w = rgbx.shape[:2]
    try:
        # Image.frombuffer would map it as mode "RGBX"; an "RGB" image has the same 4-byte
        # layout, so the buffer is mapped under that mode (read-only, as frombuffer's are).
        im = Image.new("RGB", (0, 0))._new(Image.core.map_buffer(rgbx, (w, h), "raw", 0,
                                                                   ("RGB", 0, 1)))
        if im.mode == "RGB" and im.size == (w, h) and im.readonly:
            return im
    except Exception:  # noqa: BLE001 - a Pillow without the mapping: one copy, same pixels
        pass
    return Image.frombytes("RGB", (w, h), rgbx, "raw", "RGBX")


def _vein_lut(core: float, halo: float) -> np.ndarray:
    # A soft-edged line with a faint halo: marble veins bleed into the stone around them.
    d = np.arange(256, dtype=np.float32) * (_VEIN_RANGE / 255.0)
    return (core * np.exp(-(d * d) * 1.6) + halo * np.exp(-d * 0.35)).astype(np.float32)


_VEIN_LUT = _vein_lut(0.85, 0.3)
_FINE_LUT = _vein_lut(0.9, 0.1)


def _coarse(side: int) -> int:
    """A preview's side: a quarter of the final's, at least 32 px, a multiple of 8."""
    return max(32, side // 4 // 8 * 8)
