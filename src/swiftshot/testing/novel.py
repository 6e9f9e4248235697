"""Products the cutout was never built or tuned on: a blind check of the evaluation set's shapes.

`testing.products` draws twelve kinds of product (bottle, box, sneaker, mug, bag ...), and every
pass of the cutout was tuned on photos of those. A seller's catalogue has other shapes: a stool
on thin legs, a plant's leaves, headphones with their band arching over the backdrop, a watch
with its strap, a lamp on a pole, sunglasses. This module draws those, in the same scenes as
the evaluation set (each category's backdrop, light, shadow, noise, JPEG and framing come from
`products._eval_case` with the same seed; only the product is swapped for one of these), so the
same per-category goal can be read on shapes no rule was written for.

`python -m swiftshot.testing.novel --seeds 0-9 --sizes 640,800 --out F.json` prints the same
per-category tables as `testing.products`. Seeds are drawn anew per product choice
(``[seed, category, 77]``), so they never coincide with the evaluation set's own photos.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from swiftshot.testing import products as P
from swiftshot.testing.products import (
    CATEGORIES,
    Case,
    _canvas,
    _cylinder_shade,
    _down,
    _ellipse,
    _fs,
    _fy,
    _pts,
    _rect,
)


def _col(default) -> np.ndarray:
    return np.array(P._P("color", default), np.float32)


def _pt(xy, h: int, w: int) -> tuple[int, int]:
    """One point (frame fractions) in supersampled pixels, for cv2's line / ellipse centres."""
    x, y = _pts([xy], h, w)[0]
    return int(x), int(y)


def _thick(frac: float, w: int) -> int:
    return max(1, int(_fs(frac) * w * P.SS))


def _stool(h, w, rng):
    """A bar stool: a round seat seen slightly from above, four thin legs splayed to the floor,
    a foot ring between them; the backdrop shows between the legs."""
    seat, legs = _canvas(h, w), _canvas(h, w)
    _ellipse(seat, 0.50, 0.34, 0.20, 0.06, h, w)
    _rect(seat, 0.30, 0.34, 0.70, 0.37, h, w)
    _ellipse(seat, 0.50, 0.37, 0.20, 0.05, h, w)
    t = _thick(float(P._P("leg", 0.014)), w)
    for top, foot in ((0.36, 0.26), (0.45, 0.41), (0.55, 0.59), (0.64, 0.74)):
        cv2.line(legs, _pt((top, 0.40), h, w), _pt((foot, 0.86), h, w),
                 255, t)
    ring = _canvas(h, w)
    cv2.ellipse(ring, _pt((0.50, 0.68), h, w),
                (int(_fs(0.19) * w * P.SS), int(_fs(0.035) * h * P.SS)), 0, 0, 360, 255,
                max(1, t * 2 // 3))
    sc, lc = _down(seat, h, w), _down(cv2.max(legs, ring), h, w)
    cov = np.clip(sc + lc, 0, 1)
    wood = _col((150, 100, 60))
    metal = np.array((60, 60, 64), np.float32)
    yy = np.arange(h, dtype=np.float32)[:, None, None] / h
    top = wood * (1.05 - 0.3 * np.clip((yy - _fy(0.30)) / _fs(0.08), 0, 1))
    rgb = top * sc[..., None] + metal * np.clip(lc - sc, 0, 1)[..., None]
    return cov, rgb / np.maximum(cov, 1e-6)[..., None]


def _plant(h, w, rng):
    """A potted plant: a tapered pot, and leaves (thin ellipses at angles, on thin stems)
    reaching out over the backdrop, each a slightly different green."""
    pot, leaves = _canvas(h, w), _canvas(h, w)
    cv2.fillPoly(pot, [_pts([(0.38, 0.62), (0.62, 0.62), (0.58, 0.86), (0.42, 0.86)], h, w)], 255)
    _rect(pot, 0.36, 0.60, 0.64, 0.64, h, w)
    prng = np.random.default_rng(int(rng.integers(1 << 30)))
    shade = np.zeros((h, w), np.float32)
    for i in range(7):
        ang = -150 + i * 20 + prng.uniform(-8, 8)
        length = prng.uniform(0.16, 0.26)
        bx, by = 0.50 + prng.uniform(-0.03, 0.03), 0.60
        rad = np.deg2rad(ang)
        tx, ty = bx + length * np.cos(rad), by + length * np.sin(rad)
        stem = _canvas(h, w)
        cv2.line(stem, _pt((bx, by), h, w), _pt((tx, ty), h, w), 255,
                 _thick(0.005, w))
        leaf = _canvas(h, w)
        _ellipse(leaf, tx, ty, 0.07, 0.025, h, w, angle=float(ang))
        one = _down(cv2.max(stem, leaf), h, w)
        shade = np.maximum(shade, one * prng.uniform(0.75, 1.1))
        leaves = cv2.max(leaves, cv2.max(stem, leaf))
    pc, lc = _down(pot, h, w), _down(leaves, h, w)
    cov = np.clip(pc + lc, 0, 1)
    green = _col((52, 120, 48))
    potcol = np.array((190, 110, 80), np.float32) * _cylinder_shade(h, w, 0.38, 0.62)[..., None]
    leafrgb = green * np.maximum(shade, 0.6)[..., None]
    only_leaf = np.clip(lc - pc, 0, 1)[..., None]
    rgb = potcol * pc[..., None] + leafrgb * only_leaf
    return cov, rgb / np.maximum(cov, 1e-6)[..., None]


def _headphones(h, w, rng):
    """Over-ear headphones standing up: a thick band arching over the backdrop, two ear cups."""
    band, cups = _canvas(h, w), _canvas(h, w)
    cv2.ellipse(band, _pt((0.50, 0.58), h, w),
                (int(_fs(0.22) * w * P.SS), int(_fs(0.32) * h * P.SS)), 0, 180, 360, 255,
                _thick(0.028, w))
    _ellipse(cups, 0.29, 0.66, 0.055, 0.11, h, w)
    _ellipse(cups, 0.71, 0.66, 0.055, 0.11, h, w)
    _rect(cups, 0.265, 0.56, 0.315, 0.62, h, w)
    _rect(cups, 0.685, 0.56, 0.735, 0.62, h, w)
    bc, cc = _down(band, h, w), _down(cups, h, w)
    cov = np.clip(bc + cc, 0, 1)
    col = _col((30, 30, 34))
    yy = np.arange(h, dtype=np.float32)[:, None, None] / h
    rgb = col * (1.15 - 0.3 * yy) * np.ones((1, w, 1), np.float32)
    pad = _canvas(h, w)
    _ellipse(pad, 0.29, 0.66, 0.035, 0.085, h, w)
    _ellipse(pad, 0.71, 0.66, 0.035, 0.085, h, w)
    pc = _down(pad, h, w)[..., None]
    return cov, rgb * (1 - 0.35 * pc) + 18 * pc


def _watch(h, w, rng):
    """A wristwatch standing on its strap: a round steel case with a light dial, a leather
    strap running up and down out of it, a buckle loop with the backdrop showing through."""
    case_m, strap, loop_hole = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    _ellipse(case_m, 0.50, 0.52, 0.12, 0.12, h, w)
    _rect(strap, 0.43, 0.14, 0.57, 0.86, h, w)
    _ellipse(strap, 0.50, 0.14, 0.07, 0.02, h, w)
    _rect(loop_hole, 0.46, 0.18, 0.54, 0.24, h, w)
    strap = cv2.subtract(strap, loop_hole)
    cc, sc = _down(case_m, h, w), _down(strap, h, w)
    cov = np.clip(cc + sc, 0, 1)
    leather = _col((110, 64, 36))
    dial = _canvas(h, w)
    _ellipse(dial, 0.50, 0.52, 0.095, 0.095, h, w)
    dc = _down(dial, h, w)[..., None]
    steel = np.array((190, 192, 196), np.float32) * _cylinder_shade(h, w, 0.38, 0.62)[..., None]
    rgb = leather * np.ones((h, w, 1), np.float32)
    c = cc[..., None]
    rgb = rgb * (1 - c) + steel * c
    return cov, rgb * (1 - dc) + np.array((236, 234, 226), np.float32) * dc


def _lamp(h, w, rng):
    """A desk lamp: a wide conical shade, a thin pole, a heavy round base."""
    shade_m, pole, base = _canvas(h, w), _canvas(h, w), _canvas(h, w)
    cv2.fillPoly(shade_m, [_pts([(0.40, 0.16), (0.60, 0.16), (0.72, 0.40), (0.28, 0.40)], h, w)],
                 255)
    _ellipse(shade_m, 0.50, 0.40, 0.22, 0.025, h, w)
    _rect(pole, 0.495 - 0.006, 0.40, 0.505 + 0.006, 0.82, h, w)
    _ellipse(base, 0.50, 0.84, 0.13, 0.03, h, w)
    _rect(base, 0.37, 0.82, 0.63, 0.84, h, w)
    sc, pc, bc = _down(shade_m, h, w), _down(pole, h, w), _down(base, h, w)
    cov = np.clip(sc + pc + bc, 0, 1)
    col = _col((232, 226, 210))
    lit = _cylinder_shade(h, w, 0.28, 0.72)[..., None]
    metal = np.array((70, 66, 60), np.float32)
    s = sc[..., None]
    rgb = col * lit * s + metal * np.clip(cov - sc, 0, 1)[..., None]
    return cov, rgb / np.maximum(cov, 1e-6)[..., None]


def _sunglasses(h, w, rng):
    """Sunglasses facing the camera: two dark glossy lenses in a thin frame, a bridge, the
    arms folded behind; the backdrop shows between lenses and under the bridge."""
    lens, frame = _canvas(h, w), _canvas(h, w)
    _ellipse(lens, 0.36, 0.56, 0.11, 0.08, h, w)
    _ellipse(lens, 0.64, 0.56, 0.11, 0.08, h, w)
    t = _thick(0.012, w)
    for cx in (0.36, 0.64):
        cv2.ellipse(frame, _pt((cx, 0.56), h, w),
                    (int(_fs(0.115) * w * P.SS), int(_fs(0.085) * h * P.SS)), 0, 0, 360, 255, t)
    cv2.ellipse(frame, _pt((0.50, 0.54), h, w),
                (int(_fs(0.035) * w * P.SS), int(_fs(0.025) * h * P.SS)), 0, 180, 360, 255, t)
    _rect(frame, 0.24, 0.62, 0.76, 0.635, h, w)  # the folded arms, seen below the lenses
    lc, fc = _down(lens, h, w), _down(frame, h, w)
    cov = np.clip(lc + fc, 0, 1)
    yy = np.arange(h, dtype=np.float32)[:, None, None] / h
    glass = np.array((26, 30, 34), np.float32) + 90 * np.clip(1 - (yy - _fy(0.48)) / _fs(0.05), 0, 1)
    glass = np.broadcast_to(glass, (h, w, 3))
    col = _col((30, 30, 34))
    rgb = glass * lc[..., None] + col * np.clip(cov - lc, 0, 1)[..., None]
    return cov, rgb / np.maximum(cov, 1e-6)[..., None]


NOVEL_PRODUCTS = {"stool": _stool, "plant": _plant, "headphones": _headphones, "watch": _watch,
                  "lamp": _lamp, "sunglasses": _sunglasses}
"""The shapes no pass of the cutout was written for."""

# Which novel shapes stand in for each category's products: the category's hazard (holes, thin
# parts, white on white ...) must still be there.
_BY_CATEGORY = {
    "two_plane": ("stool", "plant", "lamp", "headphones"),
    "holes": ("headphones", "watch", "stool"),
    "white_on_white": ("lamp", "watch", "headphones"),
    "glossy_transparent": ("sunglasses", "headphones"),
    "thin_parts": ("stool", "plant", "lamp"),
    "textured": ("stool", "plant", "lamp", "watch"),
    "gradient_vignette": ("plant", "lamp", "watch", "sunglasses"),
    "cast_shadows": ("stool", "lamp", "headphones", "plant"),
    "low_light": ("watch", "headphones", "plant", "sunglasses"),
    "framing": ("stool", "plant", "lamp", "headphones"),
}


def novel_case(category: str, seed: int) -> Case:
    """The evaluation set's scene for (category, seed) with a novel product in it."""
    base = P._eval_case(category, seed)
    rng = np.random.default_rng([seed, CATEGORIES.index(category), 77])
    product = _BY_CATEGORY[category][int(rng.integers(len(_BY_CATEGORY[category])))]
    params = dict(base.params)
    if category == "white_on_white":
        params["color"] = base.param("color")
    elif product in ("headphones", "sunglasses") and category != "low_light":
        params["color"] = P._pick(rng, ((30, 30, 34), (200, 196, 190), (150, 40, 50),
                                        (40, 60, 120)))
    elif product == "plant":
        params["color"] = P._pick(rng, ((52, 120, 48), (86, 140, 60), (40, 96, 70)))
    return dataclasses.replace(base, name=f"novel_{category}_{seed}_{product}_{base.backdrop}",
                               product=product, params=tuple(params.items()))


def novel_cases(seeds, categories=CATEGORIES) -> list[Case]:
    return [novel_case(c, s) for c in categories for s in seeds]


def _register() -> None:
    for name, fn in NOVEL_PRODUCTS.items():
        P.PRODUCTS.setdefault(name, fn)


_register()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import time
    from pathlib import Path

    from swiftshot.ops.cutout import create_segmenter

    ap = argparse.ArgumentParser(prog="python -m swiftshot.testing.novel")
    ap.add_argument("--seeds", required=True, help="e.g. 0-9 or 3,5")
    ap.add_argument("--categories", default=None)
    ap.add_argument("--sizes", default="640")
    ap.add_argument("--segmenter", default="classical")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--show", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    seeds: list[int] = []
    for part in args.seeds.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    cats = tuple(args.categories.split(",")) if args.categories else CATEGORIES
    seg = create_segmenter(args.segmenter, args.model_dir)
    result: dict = {"segmenter": args.segmenter, "seeds": seeds, "sizes": {}}
    for side in P._sizes(args.sizes):
        t0 = time.perf_counter()
        rows = P.evaluate(seg.mask, novel_cases(seeds, cats), (side, side), segmenter=seg)
        stats = P.by_category(rows)
        print(f"\nnovel shapes, seeds {seeds[0]}-{seeds[-1]} at {side}² ({len(rows)} cases, "
              f"{time.perf_counter() - t0:.1f} s)")
        if args.show:
            for r in rows:
                print(f"  {r['case']:<52} IoU {r['iou']:.3f}  BF {r['bf']:.3f}  "
                      f"confidence {r['confidence']:.2f} ({r['level']})")
        print(P.report_table(stats))
        result["sizes"][str(side)] = {"rows": rows, "categories": stats,
                                      "confidence": P.confidence_report(rows)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
