"""Synthetic people and garments with exact masks, for the on-model op (``ops/onmodel.py``).

``make_model(seed)`` draws a model (person) photographed front-on in a studio: head, hair
(short, or long and falling over the front of the shoulders), neck, torso in a fitted base
layer, arms hanging beside the torso (touching it or apart), legs cropped by the frame (a
three-quarter shot, as catalogues shoot tops), on a seamless sweep with a soft light from one
side. Every part has its exact mask (4× supersampled coverage), and the torso region a top
should cover, the neck base and the shoulder points are known.

``make_garment(seed)`` draws a top laid flat / shot hollow on a light backdrop: a T-shirt
(short or long sleeves) or a tank, solid, striped or printed, with its mask and keypoints.

``score(result, model)`` measures a dressed result against the model's truth:

* ``inside``: share of the garment's pixels on the person (a garment pixel on the background
  is a seller-visible mistake); a band of 1 % of the shoulder width is allowed (cloth stands
  off the body a little);
* ``coverage``: share of the torso region the garment covers (the base layer must not show;
  hair lying in front of the torso is not counted: it should hide the garment);
* ``neckline``: |garment's neckline − the neck base| / torso height (0 = on the neck base);
* ``neck``: share of the neck above the neck base left visible (not painted over);
* ``hair``: share of hair lying in front of the shoulders left visible (long-hair cases);
* ``hands``: share of the forearms and hands left visible (they hang in front of the hem).

Seeds 0–9 were looked at while tuning (and 10–99 as more tuning seeds, issue 10's second
pass: ``--seeds``); 1000–1009 are held out (only their aggregate printed).
``python -m swiftshot.testing.people [--split heldout] [--groups] [--seeds N …] [--show DIR]
[--json FILE]`` prints the table (``--groups``: per hair length, the docs' table);
``--renders docs/renders`` writes the docs' pictures.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SS = 4
SHIFT = 2  # cv2 sub-pixel bits: coordinates × 4 = the SS grid
TUNING_SEEDS = tuple(range(10))
HELDOUT_SEEDS = tuple(range(1000, 1010))

SKIN = ((236, 200, 170), (224, 172, 135), (196, 140, 100), (150, 100, 70), (110, 72, 48))
HAIR = ((40, 30, 24), (90, 60, 35), (200, 160, 90), (20, 20, 22), (130, 70, 40))
BASE = ((70, 70, 74), (225, 225, 222), (30, 30, 34), (120, 110, 100))
SWEEPS = ((236, 236, 234), (214, 218, 222), (226, 218, 206), (200, 200, 202))
FABRIC = ((30, 44, 92), (180, 40, 40), (40, 110, 70), (235, 200, 60), (240, 240, 236),
          (200, 120, 150), (60, 60, 64), (120, 150, 200))


@dataclass
class ModelPhoto:
    image: Image.Image
    person: np.ndarray
    """float 0..1: coverage of the whole person."""
    torso: np.ndarray
    """bool: the torso region a top covers (neck base to hips, between the arms)."""
    neck: np.ndarray
    """bool: visible neck above the neck base (should stay visible)."""
    hair_front: np.ndarray
    """bool: hair lying in front of the shoulders/chest (empty for short hair)."""
    hands: np.ndarray
    """bool: forearms and hands (in front of or beside the hem: should stay visible)."""
    neck_base: tuple[float, float]
    """(x, y) of the neck's base, centre (where a crew neckline sits)."""
    shoulders: tuple[tuple[float, float], tuple[float, float]]
    hip_y: float
    params: dict = field(default_factory=dict)


@dataclass
class GarmentPhoto:
    image: Image.Image
    mask: np.ndarray
    """float 0..1 coverage."""
    kind: str
    colour: tuple[int, int, int]
    keypoints: dict[str, tuple[float, float]]


def _p(x: float, y: float) -> tuple[int, int]:
    return int(round(x * SS * (1 << SHIFT))), int(round(y * SS * (1 << SHIFT)))


def _poly(m: np.ndarray, pts, value: int = 255) -> None:
    cv2.fillPoly(m, [np.array([_p(x, y) for x, y in pts], np.int32)], value, cv2.LINE_8,
                 SHIFT)


def _ell(m: np.ndarray, cx, cy, rx, ry, value: int = 255, angle: float = 0) -> None:
    cv2.ellipse(m, _p(cx, cy), _p(rx, ry), angle, 0, 360, value, -1, cv2.LINE_8, SHIFT)


def _limb(m: np.ndarray, a, b, r0: float, r1: float) -> None:
    """A tapered capsule from a (radius r0) to b (radius r1)."""
    ax, ay = a
    bx, by = b
    d = np.array([bx - ax, by - ay], np.float64)
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-6)
    _poly(m, [(ax + n[0] * r0, ay + n[1] * r0), (bx + n[0] * r1, by + n[1] * r1),
              (bx - n[0] * r1, by - n[1] * r1), (ax - n[0] * r0, ay - n[1] * r0)])
    _ell(m, ax, ay, r0, r0)
    _ell(m, bx, by, r1, r1)


def _down(m: np.ndarray, h: int, w: int) -> np.ndarray:
    return cv2.resize(m.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def _canvas(h: int, w: int) -> np.ndarray:
    return np.zeros((h * SS, w * SS), np.uint8)


def _sweep(h: int, w: int, colour, light_x: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    yn, xn = y / h, x / w
    level = 1.0 - 0.06 * (yn - 0.3) ** 2 - 0.08 * (xn - light_x) ** 2
    return np.array(colour, np.float32) * level[..., None]


def make_model(seed: int = 0, size: tuple[int, int] = (640, 800)) -> ModelPhoto:
    """A front-on studio model photo (see the module doc), every part drawn from ``seed``."""
    w, h = size
    rng = np.random.default_rng(seed)
    unit = h * rng.uniform(0.115, 0.135)            # head height (crown to chin)
    cx = w * (0.5 + rng.uniform(-0.06, 0.06))
    top = h * rng.uniform(0.04, 0.08)
    sh_half = unit * rng.uniform(0.95, 1.15)       # half the shoulder width
    skin = np.array(SKIN[rng.integers(len(SKIN))], np.float32)
    hair_c = np.array(HAIR[rng.integers(len(HAIR))], np.float32)
    base = np.array(BASE[rng.integers(len(BASE))], np.float32)
    legs_c = np.array(BASE[rng.integers(len(BASE))], np.float32) * 0.8
    long_hair = bool(rng.random() < 0.4)
    arm_out = rng.uniform(0.0, 0.16)               # 0: arms touch the torso
    light_x = rng.uniform(0.2, 0.8)
    bg = _sweep(h, w, SWEEPS[rng.integers(len(SWEEPS))], light_x)

    chin = top + unit
    neck_base_y = chin + unit * 0.42
    sh_y = neck_base_y + unit * 0.22
    neck_half = unit * 0.24
    waist_y = sh_y + unit * 1.55
    hip_y = sh_y + unit * 2.35
    waist_half = sh_half * 0.70
    hip_half = sh_half * rng.uniform(0.78, 0.9)
    arm_r = unit * 0.19

    head, hair, neck, torso, arms, hands, legs = (_canvas(h, w) for _ in range(7))
    _ell(head, cx, top + unit * 0.52, unit * 0.36, unit * 0.52)
    _ell(hair, cx, top + unit * 0.40, unit * 0.40, unit * 0.42)
    cv2.rectangle(hair, _p(cx - unit * 0.42, top + unit * 0.4), _p(cx + unit * 0.42, h),
                  0, -1, cv2.LINE_8, SHIFT)
    hair_front = _canvas(h, w)
    if long_hair:
        side = 1 if rng.random() < 0.5 else -1
        for s in (-1, 1):
            ln = unit * (rng.uniform(1.2, 1.9) if s == side else rng.uniform(0.5, 0.9))
            x0 = cx + s * unit * 0.30
            _poly(hair, [(cx + s * unit * 0.42, top + unit * 0.3), (x0 - s * unit * 0.1, top + unit * 0.9),
                         (x0 + s * unit * 0.12, neck_base_y + ln), (x0 + s * unit * 0.38, neck_base_y + ln * 0.9),
                         (cx + s * unit * 0.5, top + unit * 0.5)])
        _poly(hair_front, [(0, neck_base_y + unit * 0.05), (w, neck_base_y + unit * 0.05), (w, h), (0, h)])
    _poly(neck, [(cx - neck_half, chin - unit * 0.2), (cx + neck_half, chin - unit * 0.2),
                 (cx + neck_half * 1.1, neck_base_y + unit * 0.1),
                 (cx - neck_half * 1.1, neck_base_y + unit * 0.1)])
    _poly(torso, [(cx - neck_half * 1.2, neck_base_y), (cx + neck_half * 1.2, neck_base_y),
                  (cx + sh_half * 0.92, sh_y), (cx + sh_half, sh_y + unit * 0.25),
                  (cx + sh_half * 0.86, sh_y + unit * 0.8), (cx + waist_half, waist_y),
                  (cx + hip_half, hip_y), (cx + hip_half * 0.98, hip_y + unit * 0.3),
                  (cx - hip_half * 0.98, hip_y + unit * 0.3), (cx - hip_half, hip_y),
                  (cx - waist_half, waist_y), (cx - sh_half * 0.86, sh_y + unit * 0.8),
                  (cx - sh_half, sh_y + unit * 0.25), (cx - sh_half * 0.92, sh_y)])
    for s in (-1, 1):
        _ell(torso, cx + s * sh_half * 0.82, sh_y + unit * 0.12, arm_r * 1.25, arm_r * 1.1)  # deltoid
        leg_x = cx + s * hip_half * 0.5
        _limb(legs, (leg_x, hip_y + unit * 0.2), (leg_x + s * unit * 0.1, h + unit), unit * 0.42,
              unit * 0.3)
        shoulder = (cx + s * (sh_half * 0.86), sh_y + unit * 0.15)
        ang = arm_out + rng.uniform(0.0, 0.04)
        elbow = (shoulder[0] + s * (np.sin(ang) * unit * 1.5 + arm_r * 0.3),
                 shoulder[1] + np.cos(ang) * unit * 1.5)
        wrist = (elbow[0] + s * np.sin(ang * 0.6) * unit * 1.3, elbow[1] + np.cos(ang * 0.6) * unit * 1.3)
        _limb(arms, shoulder, elbow, arm_r, arm_r * 0.85)
        _limb(hands, elbow, wrist, arm_r * 0.82, arm_r * 0.6)
        _ell(hands, wrist[0], wrist[1] + unit * 0.22, unit * 0.15, unit * 0.26)

    d = {k: _down(v, h, w) for k, v in (("head", head), ("hair", hair), ("neck", neck),
                                         ("torso", torso), ("arms", arms), ("hands", hands),
                                         ("legs", legs), ("hair_front", hair_front))}
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Light from one side: a soft horizontal ramp across the body plus cylinder shading.
    lit = (1.0 - 0.22 * np.abs(xx / w - light_x)) * (0.9 + 0.1 * np.cos((xx - cx) / (sh_half * 1.3)))
    lit = np.clip(lit, 0.55, 1.1)[..., None]
    img = bg.copy()

    def over(cov: np.ndarray, colour: np.ndarray, shade: np.ndarray = lit) -> None:
        nonlocal img
        img = img * (1 - cov[..., None]) + colour * shade * cov[..., None]

    hair_back = d["hair"] * (1 - d["hair_front"]) if long_hair else d["hair"]
    over(d["legs"], legs_c)
    over(hair_back, hair_c)
    over(np.clip(d["neck"] - d["head"], 0, 1), skin * 0.93)
    over(d["torso"], skin)                              # shoulders (skin) ...
    base_layer = d["torso"] * (yy > neck_base_y + unit * 0.18)[..., :].astype(np.float32)
    strap = (np.abs(np.abs(xx - cx) - sh_half * 0.55) < unit * 0.09) & (yy > neck_base_y + unit * 0.05)
    base_layer = np.maximum(base_layer, d["torso"] * strap)
    over(base_layer, base)                             # ... and a fitted base layer (tank top)
    over(d["arms"], skin * 0.97)
    over(d["hands"], skin * 0.97)
    over(d["head"], skin)
    hair_top = d["hair"] * (1 - d["hair_front"]) if long_hair else d["hair"]
    over(np.clip(hair_top - d["head"] * (yy > top + unit * 0.35), 0, 1), hair_c)
    if long_hair:
        over(d["hair"] * d["hair_front"], hair_c)
    # Face: eyes and mouth, so the head is not a plain disc.
    face = _canvas(h, w)
    for s in (-1, 1):
        _ell(face, cx + s * unit * 0.13, top + unit * 0.5, unit * 0.045, unit * 0.025)
    _ell(face, cx, top + unit * 0.8, unit * 0.09, unit * 0.02)
    over(_down(face, h, w), np.array([60, 40, 40], np.float32), 1.0)
    img = img + rng.normal(0, 1.5, img.shape)
    image = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")

    person = np.clip(np.maximum.reduce([d["head"], d["hair"], d["neck"], d["torso"], d["arms"],
                                        d["hands"], d["legs"]]), 0, 1)
    arms_any = np.maximum(d["arms"], d["hands"])
    torso_region = (d["torso"] >= 0.5) & (arms_any < 0.5) & (yy >= neck_base_y + unit * 0.12) & \
        (yy <= hip_y)
    neck_vis = (d["neck"] >= 0.5) & (d["head"] < 0.5) & (yy < neck_base_y - unit * 0.03) & \
        (d["hair"] < 0.5)
    hair_front_m = (d["hair"] * d["hair_front"] >= 0.5) if long_hair else np.zeros((h, w), bool)
    hands_m = (d["hands"] >= 0.5) & (yy > hip_y - unit * 0.4)
    return ModelPhoto(image, person, torso_region, neck_vis, hair_front_m, hands_m,
                      (float(cx), float(neck_base_y)),
                      ((float(cx - sh_half), float(sh_y)), (float(cx + sh_half), float(sh_y))),
                      float(hip_y),
                      {"seed": seed, "long_hair": long_hair, "arm_out": round(float(arm_out), 3),
                       "unit": round(float(unit), 1)})


def make_garment(seed: int = 0, size: tuple[int, int] = (640, 640)) -> GarmentPhoto:
    """A top shot flat/hollow on a light backdrop: tee (short or long sleeves) or tank."""
    w, h = size
    rng = np.random.default_rng(10_000 + seed)
    kind = ("tee", "tee", "longsleeve", "tank")[rng.integers(4)]
    colour = FABRIC[rng.integers(len(FABRIC))]
    pattern = ("solid", "stripes", "print")[rng.integers(3)]
    cx = w * 0.5
    bw = w * rng.uniform(0.19, 0.24)              # half body width
    top = h * rng.uniform(0.10, 0.16)
    length = bw * rng.uniform(2.5, 3.0)
    neck_half = bw * 0.36
    dip = bw * rng.uniform(0.22, 0.34)
    sh_y = top + bw * 0.12
    m = _canvas(h, w)
    hem = top + length
    body = [(cx - neck_half, top), (cx + neck_half, top), (cx + bw, sh_y), (cx + bw * 1.0, hem),
            (cx - bw * 1.0, hem), (cx - bw, sh_y)]
    _poly(m, body)
    kp = {"neck_dip": (cx, top + dip), "shoulder_l": (cx - bw, sh_y), "shoulder_r": (cx + bw, sh_y),
          "hem_l": (cx - bw, hem), "hem_r": (cx + bw, hem)}
    if kind != "tank":
        slen = bw * (0.7 if kind == "tee" else 1.9)
        sw = bw * 0.55
        ang = np.deg2rad(rng.uniform(30, 55))     # below the horizontal
        arm_y = sh_y + bw * 0.75
        for s in (-1, 1):
            o = (cx + s * bw + s * np.cos(ang) * slen, sh_y + np.sin(ang) * slen)
            i = (o[0] - s * np.sin(ang) * sw, o[1] + np.cos(ang) * sw)
            _poly(m, [(cx + s * bw * 0.9, sh_y), o, i, (cx + s * bw * 0.98, arm_y)])
            kp["sleeve_" + ("l" if s < 0 else "r")] = o
    else:
        # Tank: deeper armholes, narrow straps.
        for s in (-1, 1):
            hole = _canvas(h, w)
            _ell(hole, cx + s * bw * 1.05, sh_y + bw * 0.35, bw * 0.45, bw * 0.55)
            m = cv2.subtract(m, hole)
    neck_cut = _canvas(h, w)
    _ell(neck_cut, cx, top, neck_half, dip)
    cov_shape = cv2.subtract(m, neck_cut)
    cov = _down(cov_shape, h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fab = np.array(colour, np.float32)
    tex = np.ones((h, w), np.float32)
    if pattern == "stripes":
        period = bw * rng.uniform(0.18, 0.3)
        tex = np.where(((yy - top) // period) % 2 == 0, 1.0, 0.55)
    shade = (0.92 + 0.08 * np.cos((xx - cx) / (bw * 1.4))) * \
        (1 + 0.025 * cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3))
    rgb = fab * (tex * shade)[..., None]
    if pattern == "print":
        pm = np.zeros((h, w), np.uint8)
        cv2.circle(pm, (int(cx), int(top + length * 0.38)), int(bw * 0.38), 255, -1, cv2.LINE_AA)
        ink = np.array([255 - c for c in colour], np.float32) * 0.8 + 30
        pa = pm.astype(np.float32)[..., None] / 255
        rgb = rgb * (1 - pa) + ink * pa
    # Rib of the collar: a band a shade darker along the neckline.
    rib = _canvas(h, w)
    _ell(rib, cx, top, neck_half * 1.22, dip * 1.3)
    ribm = _down(cv2.subtract(rib, neck_cut), h, w)[..., None]
    rgb = rgb * (1 - 0.18 * ribm)
    # A seller shoots a white top on grey paper (white on white defeats any cutout).
    bg = _sweep(h, w, (242, 242, 240) if sum(colour) < 600 else (150, 152, 156), 0.4)
    img = bg * (1 - cov[..., None]) + rgb * cov[..., None] + rng.normal(0, 1.2, (h, w, 3))
    image = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")
    return GarmentPhoto(image, cov, kind, colour,
                        {k: (float(a), float(b)) for k, (a, b) in kp.items()})


# -- score -----------------------------------------------------------------------------------

def score(garment_alpha: np.ndarray, model: ModelPhoto, neckline_y: float | None) -> dict:
    """Figures of a dressed result (see the module doc). ``garment_alpha`` is the placed
    garment's final alpha (0..1, occlusion applied) on the model photo's canvas."""
    g = garment_alpha >= 0.5
    (lx, _), (rx, _) = model.shoulders
    tol = max(1, int(round(0.01 * (rx - lx))))
    near = cv2.dilate((model.person >= 0.5).astype(np.uint8), np.ones((2 * tol + 1,) * 2, np.uint8))
    n = int(g.sum())
    torso_h = model.hip_y - model.neck_base[1]

    def visible(m: np.ndarray) -> float | None:
        return None if not m.any() else round(float((~g[m]).mean()), 4)

    return {
        "inside": round(float((g & (near > 0)).sum() / n), 4) if n else 0.0,
        # hair lying in front of the torso should hide the garment: not counted as torso
        "coverage": round(float(g[model.torso & ~model.hair_front].mean()), 4),
        "neckline": None if neckline_y is None else
        round(abs(neckline_y - model.neck_base[1]) / torso_h, 4),
        "neck": visible(model.neck),
        "hair": visible(model.hair_front),
        "hands": visible(model.hands),
    }


GOALS = {"inside": (">=", 0.98), "coverage": (">=", 0.95), "neckline": ("<=", 0.06),
         "neck": (">=", 0.9), "hair": (">=", 0.8), "hands": (">=", 0.9)}


def evaluate(seeds, size=(640, 800), garment_size=(640, 640), inpaint=None) -> list[dict]:
    from swiftshot.ops.onmodel import dress

    rows = []
    for seed in seeds:
        model, garment = make_model(seed, size), make_garment(seed, garment_size)
        res = dress(model.image, garment.image, inpaint=inpaint)
        rows.append({"seed": seed, "garment": garment.kind, **model.params,
                     **score(res.garment_alpha, model, res.neckline_y)})
    return rows


def summary(rows: list[dict]) -> dict:
    out = {}
    for k in GOALS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            out[k] = {"mean": round(float(np.mean(vals)), 4),
                      "worst": round(float(min(vals) if GOALS[k][0] == ">=" else max(vals)), 4),
                      "n": len(vals)}
    return out


def print_groups(rows: list[dict]) -> dict:
    """The summary per hair length (short, long, all): the docs' table. Aggregates only."""
    groups = {"short hair": [r for r in rows if not r.get("long_hair")],
              "long hair": [r for r in rows if r.get("long_hair")], "all": rows}
    out = {}
    keys = list(GOALS)
    print(f"{'group':<11} {'n':>3} " + " ".join(f"{k:>15}" for k in keys) + "   (mean (worst))")
    for name, rs in groups.items():
        if not rs:
            continue
        s = summary(rs)
        out[name] = s
        cells = [f"{s[k]['mean']:.3f} ({s[k]['worst']:.3f})" if k in s else "—" for k in keys]
        print(f"{name:<11} {len(rs):>3} " + " ".join(f"{c:>15}" for c in cells))
    return out


def render_docs(out: str | Path, seeds=(1, 6, 3, 7)) -> list[Path]:
    """docs/renders/onmodel.jpg (garment | model | dressed, per tuning seed) and
    onmodel-mannequin-neck.jpg (ghost mannequin: no inside photo | with one)."""
    from PIL import ImageDraw

    from swiftshot.ops.mannequin import ghost_mannequin
    from swiftshot.ops.onmodel import dress
    from swiftshot.testing.products import make_mannequin_photo

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cw, ch = 240, 300
    sheet = Image.new("RGB", (cw * 3, ch * len(seeds)), "white")
    for row, seed in enumerate(seeds):
        model, garment = make_model(seed), make_garment(seed)
        res = dress(model.image, garment.image)
        g = garment.image.copy()
        g.thumbnail((cw, ch))
        sheet.paste(g, (0, row * ch + (ch - g.height) // 2))
        sheet.paste(model.image.resize((cw, ch), Image.Resampling.LANCZOS), (cw, row * ch))
        sheet.paste(res.image.resize((cw, ch), Image.Resampling.LANCZOS), (2 * cw, row * ch))
    d = ImageDraw.Draw(sheet)
    for i, t in enumerate(("garment photo", "model photo", "on-model (classical)")):
        d.text((i * cw + 6, 4), t, fill=(40, 40, 40))
    paths = [out / "onmodel.jpg"]
    sheet.save(paths[0], quality=82, optimize=True)

    m = make_mannequin_photo()
    inside = np.full((90, 160, 3), (24, 34, 70), np.uint8)      # the navy tee's inside back
    inside[6:34, 66:94] = (235, 232, 225)                        # its neck label
    inside[14:18, 70:90] = (60, 60, 60)
    plain = ghost_mannequin(m.image, key_color=m.key_color)
    with_inside = ghost_mannequin(m.image, key_color=m.key_color, inside=Image.fromarray(inside))
    panel = Image.new("RGB", (3 * 240, 300), "white")
    for i, im in enumerate((m.image, plain, with_inside)):
        bg = Image.new("RGB", im.size, "white")
        bg.paste(im, (0, 0), im if im.mode == "RGBA" else None)
        panel.paste(bg.resize((240, 300), Image.Resampling.LANCZOS), (i * 240, 0))
    d = ImageDraw.Draw(panel)
    for i, t in enumerate(("on the mannequin", "ghost: no inside photo", "ghost: inside photo")):
        d.text((i * 240 + 6, 4), t, fill=(40, 40, 40))
    paths.append(out / "onmodel-mannequin-neck.jpg")
    panel.save(paths[1], quality=85, optimize=True)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", choices=("tuning", "heldout"), default="tuning")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="tuning seeds to use instead of 0-9 (never the held-out range)")
    ap.add_argument("--groups", action="store_true",
                    help="print the summary per hair length (short / long / all) too")
    ap.add_argument("--show", default=None, help="folder to write model/garment/result PNGs to")
    ap.add_argument("--json", default=None)
    ap.add_argument("--renders", default=None, help="write the docs' renders to this folder")
    a = ap.parse_args(argv)
    if a.renders:
        for p in render_docs(a.renders):
            print(f"wrote {p}")
        return 0
    seeds = TUNING_SEEDS if a.split == "tuning" else HELDOUT_SEEDS
    if a.seeds is not None:
        if a.split != "tuning" or set(a.seeds) & set(HELDOUT_SEEDS):
            ap.error("--seeds picks tuning seeds only (the held-out range is printed whole)")
        seeds = tuple(a.seeds)
    rows = evaluate(seeds)
    if a.split == "tuning":
        for r in rows:
            print(json.dumps(r))
    s = summary(rows)
    print(f"{'figure':<10} {'mean':>7} {'worst':>7}  goal")
    for k, v in s.items():
        op, g = GOALS[k]
        print(f"{k:<10} {v['mean']:>7.3f} {v['worst']:>7.3f}  {op} {g} (n={v['n']})")
    if a.groups:
        print_groups(rows)
    if a.show and a.split == "tuning":
        from swiftshot.ops.onmodel import dress

        out = Path(a.show)
        out.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            model, garment = make_model(seed), make_garment(seed)
            res = dress(model.image, garment.image)
            tile = Image.new("RGB", (640 * 3, 800), "white")
            tile.paste(garment.image, (0, 80))
            tile.paste(model.image, (640, 0))
            tile.paste(res.image, (1280, 0))
            tile.save(out / f"onmodel-{seed}.png")
    if a.json:
        Path(a.json).write_text(json.dumps({"split": a.split, "rows": rows, "summary": s},
                                           indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
