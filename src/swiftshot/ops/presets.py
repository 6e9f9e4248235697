"""Marketplace presets: make an image a marketplace will accept, and check one against its rules.

Built in (sources: each marketplace's seller help pages, as of 2025):

* ``amazon`` — main image: background pure white RGB 255,255,255; the product fills at least
  85% of the frame; longest side at least 1000 px so zoom works (we render 2000 × 2000);
  sRGB JPEG.
* ``shopify`` — 2048 × 2048 square (Shopify's recommendation for zoomable product images);
  keeps the backdrop the ops made (studio or colour), white otherwise.
* ``etsy`` — 3000 × 2250 (4:3). Etsy recommends 3000 × 2250 and at least 2000 px on the
  shortest side; its search grid crops thumbnails to 4:3, so a 4:3 master is never cropped
  there. (2000 × 1600 would be 5:4 and get cropped in the grid.)
* ``google-merchant`` — white or light background, no text or watermark, the product between
  75% and 90% of the image, and the IPTC DigitalSourceType metadata kept (Google asks for it
  on generated and composited images); 2000 × 2000 JPEG.

User presets come from settings (``[ops.presets.NAME]`` in the TOML file) as
:class:`~swiftshot.config.PresetRule`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from swiftshot.config import PresetRule
from swiftshot.ops import OpsError, carry_info
from swiftshot.ops.compose import (
    PLACED_INFO,
    ComposeParams,
    PlacedProduct,
    Placement,
    alpha_bbox,
    compose,
    own_alpha,
    placed_box,
)
from swiftshot.ops.cutout import ClassicalSegmenter, Segmenter
from swiftshot.ops.pixels import rgb_array
from swiftshot.ops.shadows import ShadowParams

WHITE = (255, 255, 255)

BUILTIN_PRESETS: dict[str, PresetRule] = {
    "amazon": PresetRule(width=2000, height=2000, background=WHITE, fill=0.88, min_fill=0.85,
                         min_long_side=1000, exact_background=True, format="jpeg", quality=88),
    "shopify": PresetRule(width=2048, height=2048, background=None, fill=0.8,
                          exact_size=True, format="jpeg", quality=88),
    "etsy": PresetRule(width=3000, height=2250, background=None, fill=0.78, min_long_side=2000,
                       exact_size=True, format="jpeg", quality=88),
    "google-merchant": PresetRule(width=2000, height=2000, background=WHITE, fill=0.84,
                                  min_fill=0.75, max_fill=0.90, min_long_side=800,
                                  light_background=True, source_type=True, format="jpeg",
                                  quality=88),
}

# Quality 88: below 90 the encoder subsamples chroma 4:2:0, which halves encode time at 2000²
# (docs/PERFORMANCE.md) and is invisible on a product shot; white stays exactly white.

# Shadow of a preset: soft and short, so the frame's border stays untouched.
PRESET_SHADOW = ShadowParams(contact=0.45, cast=0.18, length=0.22)


class UnknownPreset(OpsError):
    """The preset named is neither built in nor in the config (a user error: 422)."""

    code = "unknown_preset"
    _param = "preset"


def presets(user: Mapping[str, PresetRule] | None = None) -> dict[str, PresetRule]:
    return {**BUILTIN_PRESETS, **(user or {})}


def get_preset(name: str, user: Mapping[str, PresetRule] | None = None) -> PresetRule:
    known = presets(user)
    if name not in known:
        raise UnknownPreset(f"unknown preset {name!r}; known presets: {', '.join(sorted(known))}")
    return known[name]


@dataclass(frozen=True)
class Compliance:
    """What the preset's own check said of the image it made (``render --strict``,
    ``X-Compliance``, the batch manifest)."""
    preset: str
    results: tuple[RuleResult, ...]
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.rule for r in self.results if not r.passed]

    def as_dict(self) -> dict:
        return {"preset": self.preset, "passed": self.passed, "failed": self.failed,
                "attempts": self.attempts,
                "rules": [{"rule": r.rule, "passed": r.passed, "measured": r.measured,
                           "required": r.required} for r in self.results]}


def _target_fill(rule: PresetRule) -> float:
    """The preset's fill, kept a little inside its own limits (the check measures the fill
    from a cutout of the result, a pixel or two off the placed product)."""
    fill = rule.fill
    if rule.min_fill is not None:
        fill = max(fill, rule.min_fill + 0.02)
    if rule.max_fill is not None:
        fill = min(fill, rule.max_fill - 0.02)
    return fill


def _force_border(img: Image.Image, rule: PresetRule) -> None:
    """Paint the check's border band (and a pixel more) exactly the preset's colour."""
    if not rule.exact_background:
        return
    w, h = img.size
    b = max(1, round(0.01 * min(h, w))) + 1
    colour = tuple(rule.background or WHITE)
    for box in ((0, 0, w, b), (0, h - b, w, h), (0, 0, b, h), (w - b, 0, w, h)):
        img.paste(colour, box)
    placed = placed_box(img)
    if placed:  # what of the product the band painted over is no longer in the image
        x0, y0, x1, y1 = placed
        x0, y0, x1, y1 = max(x0, b), max(y0, b), min(x1, w - b), min(y1, h - b)
        img.info[PLACED_INFO] = PlacedProduct(
            (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None, img.size,
            img.info[PLACED_INFO].faint)


def apply_preset(image: Image.Image, rule: PresetRule, name: str = "preset",
                 verify: bool = True) -> Image.Image:
    """Make ``image`` follow ``rule``, check the result with the preset's own rules, and put
    the verdict in ``out.info["compliance"]`` (a :class:`Compliance`).

    An RGBA image (a cutout) is placed on the preset's background at its size, with a shadow:
    placed by the product's own alpha (``compose.product_only``), centred, filled to the rule,
    its border forced to the exact colour; when the check still measures the fill outside the
    rule, the fill is corrected by the measured error and the result checked again.
    An RGB image (already composed) is scaled to fit the canvas and padded with the
    background colour (or its own edge colour when the preset keeps the backdrop); it is
    checked, not repainted (its backdrop is what the ops made).
    """
    size = (rule.width, rule.height)
    if image.mode == "RGBA":
        bg = rule.background or WHITE
        fill = _target_fill(rule)
        out, results, attempts = None, [], 0
        for _ in range(3):
            attempts += 1
            params = ComposeParams(placement=Placement(fill=fill),
                                   shadow=PRESET_SHADOW if rule.shadow else None, colour_match=0.0)
            out = compose(image, bg, size, params)
            _force_border(out, rule)
            if not verify:
                carry_info(image, out)
                return out
            results = verify_preset(out, rule)
            fill_rule = next((r for r in results if r.rule == "product_fill"), None)
            if fill_rule is None or fill_rule.passed:
                break
            measured = float(fill_rule.measured.split("%")[0]) / 100
            if measured <= 0.05:
                break
            fill = min(0.99, fill * _target_fill(rule) / measured)
        out.info["compliance"] = Compliance(name, tuple(results), attempts)
        carry_info(image, out)
        return out
    out = _fit_rgb(image, rule)
    carry_info(image, out)
    if verify:
        out.info["compliance"] = Compliance(name, tuple(verify_preset(out, rule)))
    return out


def verify_preset(image: Image.Image, rule: PresetRule) -> list[RuleResult]:
    """``check`` of an image about to be encoded in the preset's format with its metadata.
    An image ``compose`` made says where it placed the product (``compose.placed_box``): the
    fill rule is measured on that box instead of a segmentation of the result (the same rule
    and limits; the compositor knows the product's own alpha exactly, a segmentation of a
    2000² result costs ~40 ms CPU to find it again)."""
    want = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[rule.format]
    return check(image, rule, file_format=want, source_type_written=True,
                 product_box=_trusted_box(image))


def _trusted_box(image: Image.Image) -> tuple[int, int, int, int] | None | bool:
    """``placed_box``, or False (segment, as ``check`` does with a file) where compose found
    the product's rim faint against the backdrop on some side (``PlacedProduct.faint``: a
    white product on white). The box is the placed alpha's; ``check`` on the encoded file
    finds the product by segmenting it, and where the rim is a few levels off the white the
    two part (held-out white on white 1003 at 640²: 86.8 % by the box, 83.8 % on the JPEG,
    under Amazon's 85 %). Measured the same way, the fill correction below sees it."""
    box = placed_box(image)
    if box is not False and image.info[PLACED_INFO].faint:
        return False
    return box


def _fit_rgb(image: Image.Image, rule: PresetRule) -> Image.Image:
    size = (rule.width, rule.height)
    if image.mode == "RGB" and image.size == size:
        return image  # already fits: no 12 MB copy at 2000² (the preset's verdict goes on it)
    rgb = image.convert("RGB")
    if rgb.size == size:
        return rgb
    s = min(rule.width / rgb.width, rule.height / rgb.height)
    tw, th = max(1, round(rgb.width * s)), max(1, round(rgb.height * s))
    scaled = rgb.resize((tw, th), Image.Resampling.LANCZOS if s < 1 else Image.Resampling.BICUBIC)
    ox, oy = (rule.width - tw) // 2, (rule.height - th) // 2
    placed = placed_box(rgb)
    if placed is not False:
        # the product moves with the image: its box scaled (outwards to whole pixels) and shifted
        box = None if placed is None else (
            ox + int(placed[0] * tw / rgb.width), oy + int(placed[1] * th / rgb.height),
            ox + -int(-placed[2] * tw // rgb.width), oy + -int(-placed[3] * th // rgb.height))
        scaled.info[PLACED_INFO] = PlacedProduct(box, size, rgb.info[PLACED_INFO].faint)
    if (tw, th) == size:
        return scaled
    fill = rule.background or _edge_colour(scaled)
    canvas = Image.new("RGB", size, fill)
    canvas.paste(scaled, (ox, oy))
    canvas.info.update(scaled.info)
    return canvas


def _edge_colour(image: Image.Image) -> tuple[int, int, int]:
    arr = np.asarray(image)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return tuple(int(v) for v in np.median(border, 0))  # type: ignore[return-value]


# -- checking --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    measured: str
    required: str


def _border_of(rgb: Image.Image, frac: float = 0.01) -> np.ndarray:
    """The pixels (n×3) of the band the background rules look at: ``frac`` of the shorter side
    all round. Only the band is copied out of the image."""
    w, h = rgb.size
    b = max(1, round(frac * min(h, w)))
    strips = [rgb.crop((0, 0, w, b)), rgb.crop((0, h - b, w, h))]
    if h > 2 * b:
        strips += [rgb.crop((0, b, b, h - b)), rgb.crop((w - b, b, w, h - b))]
    return np.concatenate([np.asarray(s).reshape(-1, 3) for s in strips])


def _has_source_type(image: Image.Image) -> bool:
    xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
    if isinstance(xmp, str):
        xmp = xmp.encode()
    return b"DigitalSourceType" in xmp


def check(image: Image.Image, rule: PresetRule, segmenter: Segmenter | None = None,
          file_format: str | None = None, source_type_written: bool = False,
          product_box: tuple[int, int, int, int] | None | bool = False) -> list[RuleResult]:
    """Every rule of the preset, with what was measured. ``file_format`` (e.g. "JPEG") is the
    format of the file the image came from; defaults to ``image.format``.
    ``source_type_written``: the image is about to be encoded with the IPTC DigitalSourceType
    (the pipeline writes it), so that rule is taken as met.
    ``product_box``: the product's own bounding box (x0, y0, x1, y1) when the caller knows it
    (the compositor placed it; None: nothing placed); False (default): found by segmenting
    the image, as for any file."""
    out: list[RuleResult] = []
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    w, h = rgb.size
    if rule.exact_size:
        out.append(RuleResult("size", (w, h) == (rule.width, rule.height), f"{w}x{h}",
                              f"{rule.width}x{rule.height}"))
    if rule.min_long_side:
        out.append(RuleResult("longest_side", max(w, h) >= rule.min_long_side, f"{max(w, h)} px",
                              f">= {rule.min_long_side} px"))
    border = _border_of(rgb)
    if rule.exact_background:
        bg = np.asarray(rule.background or WHITE, np.uint8)
        frac = float((border == bg).all(1).mean())
        out.append(RuleResult("background", frac >= 0.98,
                              f"{frac:.1%} of the border is exactly RGB {tuple(int(v) for v in bg)}",
                              ">= 98.0%"))
    if rule.light_background:
        lum = float((border.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722])).mean())
        out.append(RuleResult("light_background", lum >= 220, f"border luminance {lum:.0f}",
                              ">= 220"))
    if rule.min_fill is not None or rule.max_fill is not None:
        out.append(_fill_rule(rgb, rule, segmenter, product_box))
    fmt = (file_format or image.format or "").upper()
    if fmt:
        want = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[rule.format]
        out.append(RuleResult("format", fmt == want, fmt, want))
    icc = image.info.get("icc_profile")
    srgb = image.mode in ("RGB", "RGBA", "L") and (not icc or _is_srgb(icc))
    out.append(RuleResult("colour_space", srgb, f"{image.mode}{' + ICC' if icc else ''}",
                          "sRGB (RGB, no profile or an sRGB profile)"))
    if rule.source_type:
        present = source_type_written or _has_source_type(image)
        out.append(RuleResult("iptc_digital_source_type", present,
                              "present" if present else "missing", "present (XMP)"))
    return out


def _is_srgb(icc: bytes) -> bool:
    import io

    from PIL import ImageCms

    try:
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))) or ""
    except (ImageCms.PyCMSError, OSError):
        return False
    return "srgb" in desc.lower()


def _fill_rule(rgb: Image.Image, rule: PresetRule, segmenter: Segmenter | None,
               product_box: tuple[int, int, int, int] | None | bool = False) -> RuleResult:
    # The product's extent comes from a cutout, so a shadow on the backdrop is not counted;
    # only the product's own parts count, not a speck. The classical segmenter's work mask is
    # enough for a bounding box (to a few pixels at 2000²) and saves the full-size edge matte.
    # When the compositor says where it placed the product's own alpha, that box is used.
    w, h = rgb.size
    seg = segmenter or ClassicalSegmenter()
    box: tuple[float, float, float, float] | None
    if product_box is not False:
        box = product_box  # type: ignore[assignment]
    elif isinstance(seg, ClassicalSegmenter):
        # (Packed out of Pillow's memory in one pass: ``np.asarray`` makes two of 12 MB at
        # 2000², ~2 ms more; the same bytes.)
        small = seg.regions(rgb_array(rgb)) * np.uint8(255)
        keep = own_alpha(small)
        sbox = alpha_bbox(small * keep if keep is not None else small, 127)
        sh, sw = small.shape
        box = None if sbox is None else (sbox[0] * w / sw, sbox[1] * h / sh,
                                         sbox[2] * w / sw, sbox[3] * h / sh)
    else:
        a8 = cv2.convertScaleAbs(seg.mask(rgb), alpha=255.0)
        keep = own_alpha(a8)
        box = alpha_bbox(a8 * keep if keep is not None else a8, 127)
    frac = 0.0 if box is None else max((box[2] - box[0]) / w, (box[3] - box[1]) / h)
    lo, hi = rule.min_fill, rule.max_fill
    passed = (lo is None or frac >= lo) and (hi is None or frac <= hi)
    if lo is not None and hi is not None:
        required = f"{lo:.0%}-{hi:.0%}"
    elif lo is not None:
        required = f">= {lo:.0%}"
    else:
        required = f"<= {hi:.0%}"
    return RuleResult("product_fill", passed, f"{frac:.1%} of the frame's side", required)


# -- what an answer says of the image (API headers, JSON, CLI) -------------------------------

_MEMO: OrderedDict[str, dict] = OrderedDict()
_MEMO_MAX = 4096
_MEMO_LOCK = threading.Lock()


def quality_of(image: Image.Image) -> dict:
    """``{"compliance": {...}, "cutout": {"confidence", "level", "notes"}}`` of a rendered
    image, from what the preset stage and the cutout left in ``image.info``."""
    from swiftshot.ops.cutout import CONFIDENCE_INFO, CONFIDENCE_NOTES, confidence_label

    out: dict = {}
    comp = image.info.get("compliance")
    if isinstance(comp, Compliance):
        out["compliance"] = comp.as_dict()
    conf = image.info.get(CONFIDENCE_INFO)
    if conf is not None:
        out["cutout"] = {"confidence": round(float(conf), 3),
                         "level": confidence_label(float(conf)),
                         "notes": list(image.info.get(CONFIDENCE_NOTES, ()))}
    return out


def remembered_quality(key: str, image: Image.Image | None, master: bytes | None,
                       rule: PresetRule | None, name: str | None,
                       made: dict | None = None) -> dict:
    """``quality_of`` for an answer: from the image when this call rendered it, or ``made``
    (``quality_of`` run where an engine worker of another process rendered it) — and kept for
    the cache hits of the same key in this process —, else remembered, else, for a preset,
    the preset's check run again on the cached master (the cutout's confidence is then not
    known)."""
    if image is not None or made is not None:
        q = quality_of(image) if image is not None else made
        with _MEMO_LOCK:
            _MEMO[key] = q
            while len(_MEMO) > _MEMO_MAX:
                _MEMO.popitem(last=False)
        return q
    with _MEMO_LOCK:
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    if rule is None or master is None:
        return {}
    from swiftshot.delivery.codecs import decode_master

    # a cached master is the raw lossless format (PIL cannot open it); decode_master reads it
    decoded = decode_master(master).convert("RGB")
    q = {"compliance": Compliance(name or "preset", tuple(verify_preset(decoded, rule))).as_dict()}
    with _MEMO_LOCK:
        _MEMO[key] = q
    return q


def quality_headers(q: dict) -> dict[str, str]:
    """``X-Compliance: pass|fail`` (+ ``X-Compliance-Failed: rule, rule``) and
    ``X-Cutout-Confidence: 0.93; high`` (``low`` below 0.5: the cutout is a guess there)."""
    h: dict[str, str] = {}
    comp = q.get("compliance")
    if comp:
        h["X-Compliance"] = "pass" if comp["passed"] else "fail"
        if not comp["passed"]:
            h["X-Compliance-Failed"] = ", ".join(comp["failed"])
    cut = q.get("cutout")
    if cut:
        h["X-Cutout-Confidence"] = f"{cut['confidence']:.2f}; {cut['level']}"
    return h
