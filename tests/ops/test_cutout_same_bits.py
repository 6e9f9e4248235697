"""Same-bits rewrites in the classical cutout (speed18), each compared bit for bit with the
plain numpy / OpenCV expression it replaced, so the cutout's decisions cannot move:
``_median_beyond`` (``_whiteish`` and ``_neutral_sweep``'s medians from a count),
``_drop_specks`` and ``_fill_holes`` on labels without OpenCV's statistics, ``_near_backdrop``'s
and ``find``'s colour without broadcasts, ``_take`` (the edge matte's gathers in
``ClassicalSegmenter.refine``). The whole cutout's and the presets' outputs were compared by
sha256 against main (docs/PERFORMANCE.md, speed18)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from swiftshot.ops.cutout import _median_beyond


def test_median_beyond_is_numpys_median_compared():
    rng = np.random.default_rng(19)
    warnings.simplefilter("ignore", RuntimeWarning)  # np.median of an empty array
    for trial in range(6000):
        n = int(rng.integers(0, 14)) if trial % 2 else int(rng.integers(0, 4000))
        c = (1.0, 0.7)[trial % 2]
        cf = np.float32(c)
        kind = trial % 5
        if kind == 0:
            x = rng.random(n).astype(np.float32) * 2 * cf
        elif kind == 1:  # right around c: the mean of the middle values decides
            x = rng.choice(np.array([np.nextafter(cf, np.float32(0)), cf,
                                     np.nextafter(cf, np.float32(9)), cf - np.float32(1e-3),
                                     cf + np.float32(1e-3)], np.float32), n)
        elif kind == 2:
            x = rng.choice(np.array([0.0, c, np.inf, -np.inf, 2 * c, 0.5 * c], np.float32), n)
        elif kind == 3:
            x = rng.random(n).astype(np.float32) * 2 * cf
            if n:
                x[rng.integers(0, n)] = np.nan
        else:
            x = np.full(n, cf, np.float32)
            x[: n // 2] -= np.float32(1e-7) * np.float32(rng.integers(0, 3))
        assert _median_beyond(x, c, -1) == bool(np.median(x) < c), (trial, x)
        assert _median_beyond(x, c, 1) == bool(np.median(x) > c), (trial, x)
    x = np.array([0.5, 2.0, 0.9, 3.0])  # float64: numpy's median itself
    assert _median_beyond(x, 1.0, -1) == bool(np.median(x) < 1.0)


def test_neutral_sweep_is_numpys_spread_median():
    from swiftshot.ops.cutout import _NEUTRAL_SPREAD, _neutral_sweep

    rng = np.random.default_rng(20)
    for trial in range(1500):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        bg = (rng.random((h, w, 3)) * rng.choice([5, 30, 60, 255])).astype(np.float32)
        if trial % 7 == 0:
            bg = np.round(bg)  # ties at the threshold
        if trial % 11 == 0:
            bg.flat[rng.integers(bg.size)] = np.nan
        band = rng.random((h, w)) < rng.random()
        b = bg[band]
        want = (float(np.median(b.max(axis=1) - b.min(axis=1))) < _NEUTRAL_SPREAD
                if band.any() else True)
        assert _neutral_sweep(bg, band) == want, trial


def _fill_holes_reference(m, bg_like, chroma=None):
    """``_fill_holes`` as it was (main 4c14311): its hole fractions from two bincounts over
    the frame, one with float weights."""
    from swiftshot.ops.cutout import _FACE_CHROMA, _HOLE_CHROMA

    inv = (1 - m).astype(np.uint8)
    n, labels, _, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0],
                                              labels[:, -1]]))
    hole_ids = np.setdiff1d(np.arange(1, n), border_labels)
    if not len(hole_ids):
        return m
    counts = np.bincount(labels.ravel(), minlength=n)
    bg_counts = np.bincount(labels.ravel(), weights=bg_like.ravel(), minlength=n)
    frac = bg_counts / np.maximum(counts, 1)
    fill = np.zeros(n, bool)
    fill[hole_ids] = frac[hole_ids] < 0.5
    maybe = hole_ids[(frac[hole_ids] >= 0.3) & (frac[hole_ids] < 0.9)]
    if chroma is not None and len(maybe):
        far = bg_like & (cv2.dilate(m, np.ones((15, 15), np.uint8)) == 0)
        if far.sum() >= 50:
            out_c = float(np.median(chroma[far]))
            for i in maybe:
                plain = (labels == i) & bg_like
                off = float(np.median(chroma[plain])) - out_c
                if fill[i] and off < _HOLE_CHROMA:
                    fill[i] = False
                elif not fill[i] and off >= _FACE_CHROMA:
                    fill[i] = True
    return (m.astype(bool) | fill[labels]).astype(np.uint8)


def test_fill_holes_is_as_before():
    from swiftshot.ops.cutout import _fill_holes

    rng = np.random.default_rng(21)
    filled = 0
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(8, 160, 2))
        m = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            cv2.circle(m, (x, y), int(rng.integers(2, 50)), 1, int(rng.integers(1, 6)))
        bg_like = rng.random((h, w)) < rng.random()
        chroma = (rng.random((h, w)) * rng.choice([0.2, 1.0])).astype(np.float32)
        for c in (None, chroma):
            want = _fill_holes_reference(m, bg_like, c)
            got = _fill_holes(m, bg_like, c)
            assert np.array_equal(got, want), trial
            filled += int(not np.array_equal(want, m))
    assert filled > 50  # holes were there to fill or keep


def test_near_backdrop_is_as_before():
    from swiftshot.ops.cutout import _near_backdrop, _spread

    rng = np.random.default_rng(22)
    for trial in range(100):
        h, w = (int(v) for v in rng.integers(5, 200, 2))
        img = (rng.random((h, w, 3)) * 255).astype(np.float32)
        bg = (rng.random((h, w, 3)) * 255).astype(np.float32)
        hard = np.zeros((h, w), np.uint8)
        cv2.ellipse(hard, (w // 2, h // 2), (w // 3 + 1, h // 3 + 1), 0, 0, 360, 1, -1)
        if trial % 5 == 0:
            hard[:] = 1  # no clear backdrop anywhere: the fitted surface stands in
        local, den = _spread(img, cv2.dilate(hard, np.ones((5, 5), np.uint8)) == 0, 2.5)
        wt = np.clip(den * 20.0, 0.0, 1.0)
        want = (wt * local + (1.0 - wt) * bg).astype(np.float32)
        got = _near_backdrop(img, hard, bg)
        assert got.dtype == np.float32 and np.array_equal(got, want), trial


def test_take_is_fancy_indexing():
    from swiftshot.ops.cutout import _take

    rng = np.random.default_rng(24)
    for shape in ((37, 53), (37, 53, 3), (400, 400, 3)):
        img = rng.random(shape).astype(np.float32)
        ys = rng.integers(0, shape[0], 5000)
        xs = rng.integers(0, shape[1], 5000)
        assert np.array_equal(_take(img, ys * shape[1] + xs), img[ys, xs])
        view = img[::2, 1:]  # not contiguous: still the right values
        ys, xs = ys % view.shape[0], xs % view.shape[1]
        assert np.array_equal(_take(view, ys * view.shape[1] + xs), view[ys, xs])


def test_drop_specks_is_as_before():
    from swiftshot.ops.cutout import _drop_specks

    def reference(m, min_area):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        keep = np.zeros(n, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
        if keep[1:].all():
            return (labels > 0).view(np.uint8)
        return keep[labels].astype(np.uint8)

    rng = np.random.default_rng(25)
    dropped = 0
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        m = (rng.random((h, w)) < rng.random() * 0.6).astype(np.uint8)
        if trial % 3 == 0:
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        min_area = float(rng.choice([1, 3, 20, 200]))
        want = reference(m, min_area)
        got = _drop_specks(m, min_area)
        assert got.dtype == np.uint8 and np.array_equal(got, want), trial
        dropped += int(not np.array_equal(want, m))
    assert dropped > 50


def test_labels_without_stats_are_the_same_labels():
    rng = np.random.default_rng(26)
    for _trial in range(200):
        h, w = (int(v) for v in rng.integers(1, 300, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        for conn in (4, 8):
            n1, l1, s1, _ = cv2.connectedComponentsWithStats(m, connectivity=conn)
            n2, l2 = cv2.connectedComponents(m, connectivity=conn)
            assert n1 == n2 and np.array_equal(l1, l2)
            assert np.array_equal(np.bincount(l2.ravel(), minlength=n2), s1[:, cv2.CC_STAT_AREA])


def test_find_product_colour_is_as_before():
    from swiftshot.ops.cutout import ClassicalSegmenter, _weighted

    rng = np.random.default_rng(27)
    seg = ClassicalSegmenter()
    for trial in range(3):
        photo = np.clip(rng.normal(235, 2, (480, 480, 3)), 0, 255).astype(np.uint8)
        cv2.ellipse(photo, (240, 250), (90 + 20 * trial, 150), 0, 0, 360,
                    (int(rng.integers(0, 200)), 60, 90), -1)
        found = seg.find(photo)
        img = found.small.astype(np.float32)
        solid = cv2.erode(found.hard, np.ones((3, 3), np.uint8)).astype(np.float32)
        num = cv2.GaussianBlur(_weighted(img, solid), (0, 0), 1.2)
        den = cv2.GaussianBlur(solid, (0, 0), 1.2)[..., None]
        want = np.where(den > 1e-3, num / np.maximum(den, 1e-3), img).astype(np.float32)
        assert found.fg.dtype == np.float32 and np.array_equal(found.fg, want), trial
