"""``cutout._row_ends``: the convex hull of a mask from each row's first and last pixel is the
hull of all its pixels, vertex for vertex (``_hull_area`` and ``_close_silhouette`` sort two
points a row instead of every pixel); ``_drop_specks`` without a speck skips its table
look-up: the same masks either way, so the cutout's decisions cannot move."""

from __future__ import annotations

import cv2
import numpy as np

from swiftshot.ops.cutout import _drop_specks, _hull_area, _row_ends


def _masks():
    rng = np.random.default_rng(11)
    for trial in range(120):
        h, w = int(rng.integers(1, 120)), int(rng.integers(1, 120))
        m = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 6))):
            kind = trial % 4
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            if kind == 0:
                cv2.ellipse(m, (cx, cy), (int(rng.integers(1, 40)), int(rng.integers(1, 40))),
                            float(rng.uniform(0, 180)), 0, 360, 1, -1)
            elif kind == 1:  # straight sides: collinear pixels along the hull's edges
                cv2.rectangle(m, (cx, cy), (cx + int(rng.integers(0, 30)),
                                            cy + int(rng.integers(0, 30))), 1, -1)
            elif kind == 2:
                m[rng.random((h, w)) < rng.uniform(0.001, 0.2)] = 1  # specks, single pixels
            else:
                cv2.line(m, (cx, cy), (int(rng.integers(0, w)), int(rng.integers(0, h))), 1,
                         int(rng.integers(1, 4)))
        yield m


def _old_area(m):
    pts = cv2.findNonZero(m)
    return 0 if pts is None else int(cv2.contourArea(cv2.convexHull(pts)) + len(pts) ** 0.5)


def test_row_ends_give_the_hull_of_every_pixel():
    seen = 0
    for m in _masks():
        pts = cv2.findNonZero(m)
        ends = _row_ends(m)
        if pts is None:
            assert ends is None and _hull_area(m) == 0
            continue
        seen += 1
        assert ends.dtype == np.int32 and ends.shape[1:] == (1, 2)
        assert np.array_equal(cv2.convexHull(ends), cv2.convexHull(pts))
        assert _hull_area(m) == _old_area(m)
        for core in (m > 0, m.astype(bool) | np.roll(m, 3, 1).astype(bool)):
            a, b = np.zeros_like(m), np.zeros_like(m)
            cv2.fillConvexPoly(a, cv2.convexHull(_row_ends(core)), 1)
            cv2.fillConvexPoly(b, cv2.convexHull(cv2.findNonZero(core.astype(np.uint8))), 1)
            assert np.array_equal(a, b)
    assert seen > 100


def test_drop_specks_keeps_the_same_pixels_with_or_without_specks():
    for m in _masks():
        for min_area in (0, 1, 5, 40, 400):
            n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
            keep = np.zeros(n, bool)
            keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
            out = _drop_specks(m, min_area)
            assert out.dtype == np.uint8 and np.array_equal(out, keep[labels].astype(np.uint8))
