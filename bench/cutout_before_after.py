"""Before/after render of cutouts of evaluation cases (docs/renders/ops-cutout-*.jpg).

Two steps, so "before" can run another checkout's code:

    PYTHONPATH=<old checkout>/src python bench/cutout_before_after.py alphas before.npz CASE@SIZE ...
    PYTHONPATH=src python bench/cutout_before_after.py alphas after.npz CASE@SIZE ...
    PYTHONPATH=src python bench/cutout_before_after.py render out.jpg before.npz after.npz

A row per case: the photo, then each cutout on a blue backdrop, each cell 360 px, the IoU
written on it. Tuning seeds only (a held-out case is refused).
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from swiftshot.testing.products import CATEGORIES, HELDOUT_SEEDS, _eval_case, iou, make_photo

CELL = 360
BLUE = np.array([40, 90, 200], np.float32)


def _case(spec: str):
    name, side = spec.rsplit("@", 1)
    for c in CATEGORIES:
        if name.startswith(c + "_"):
            seed = int(name[len(c) + 1:].split("_")[0])
            if seed in HELDOUT_SEEDS:
                raise SystemExit(f"{name}: a held-out seed, not rendered")
            return _eval_case(c, seed), int(side)
    raise SystemExit(f"unknown case {name!r}")


def alphas(out: str, specs: list[str]) -> None:
    from swiftshot.ops.cutout import ClassicalSegmenter

    seg = ClassicalSegmenter()
    saved = {}
    for spec in specs:
        case, side = _case(spec)
        photo = make_photo(case, (side, side))
        saved[spec] = (seg.mask(photo.image) * 255 + 0.5).astype(np.uint8)
    np.savez_compressed(out, **saved)


def render(out: str, *npz: str) -> None:
    sets = [np.load(p) for p in npz]
    rows = []
    for spec in sets[0].files:
        case, side = _case(spec)
        photo = make_photo(case, (side, side))
        rgb = np.asarray(photo.image, np.float32)
        cells = [rgb]
        for s in sets:
            a = s[spec].astype(np.float32)[..., None] / 255.0
            comp = rgb * a + BLUE * (1 - a)
            cells.append(comp)
        row = []
        for i, c in enumerate(cells):
            c = cv2.resize(np.clip(c, 0, 255).astype(np.uint8), (CELL, CELL),
                           interpolation=cv2.INTER_AREA)
            text = spec if i == 0 else f"IoU {iou(sets[i - 1][spec] / 255.0, photo.coverage):.3f}"
            cv2.putText(c, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
            cv2.putText(c, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            row.append(c)
        rows.append(np.concatenate(row, 1))
    img = np.concatenate(rows, 0)
    cv2.imwrite(out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("alphas", "render"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "alphas":
        alphas(sys.argv[2], sys.argv[3:])
    else:
        render(sys.argv[2], *sys.argv[3:])
