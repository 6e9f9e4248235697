"""``cutout._max3``: the largest channel of (..., 3) residuals with the same values as
``.max(-1)`` (numpy reduces a last axis of 3 several times slower), NaN included; likewise
``_sum3`` / ``_dot`` against ``.sum(1)``, ``_row_median`` against ``np.nanmedian`` and
``_weighted`` against ``img * w[..., None]``: the same float32 bits, so the cutout's
decisions cannot move."""

from __future__ import annotations

import numpy as np

from swiftshot.ops.cutout import _dot, _max3, _row_median, _sum3, _weighted


def test_max3_is_max_over_the_last_axis():
    rng = np.random.default_rng(5)
    for shape in ((7, 3), (40, 30, 3), (0, 3)):
        x = rng.normal(size=shape).astype(np.float32)
        assert np.array_equal(_max3(x), x.max(-1)) and _max3(x).dtype == np.float32
    x = np.array([[1.0, np.nan, 0.0], [np.nan, 2.0, 3.0], [0.5, 0.25, 4.0]])
    assert np.array_equal(_max3(x), x.max(-1), equal_nan=True)
    y = rng.normal(size=(5, 4))
    assert np.array_equal(_max3(y), y.max(-1))  # not 3 channels: numpy's own


def test_sum3_and_dot_are_numpys_row_sums_bit_for_bit():
    rng = np.random.default_rng(6)
    x = (rng.random((50_000, 3), dtype=np.float32) * 255) * np.float32(1.37)
    y = rng.normal(size=(50_000, 3)).astype(np.float32) * 40
    assert np.array_equal(_sum3(x), x.sum(1)) and _sum3(x).dtype == np.float32
    assert np.array_equal(_dot(x, y), (x * y).sum(1))


def test_row_median_is_nanmedian_of_the_kept_values():
    rng = np.random.default_rng(7)
    for trial in range(60):
        rows, cols = int(rng.integers(1, 90)), int(rng.integers(20, 260))
        vals = (rng.random((rows, cols), dtype=np.float32) * rng.choice([1.0, 9.0, 40.0]))
        if trial % 3 == 0:
            vals = np.round(vals, 1)  # ties
        keep = rng.random((rows, cols)) > rng.random()
        keep[:, :20] = True
        want = np.nanmedian(np.where(keep, vals, np.nan), axis=1)
        got = _row_median(vals, keep)
        assert got.dtype == want.dtype and np.array_equal(got, want), trial


def test_weighted_is_numpys_broadcast_product():
    rng = np.random.default_rng(8)
    img = rng.random((61, 47, 3), dtype=np.float32) * 255
    for w in (rng.random((61, 47), dtype=np.float32), (rng.random((61, 47)) > 0.5).astype(np.float32)):
        assert np.array_equal(_weighted(img, w), img * w[..., None])
    box = (slice(5, 40), slice(3, 30))  # a crop of the work copy, as the callers pass
    assert np.array_equal(_weighted(img[box], w[box]), img[box] * w[box][..., None])
