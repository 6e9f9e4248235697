"""``cutout._max3``: the largest channel of (..., 3) residuals with the same values as
``.max(-1)`` (numpy reduces a last axis of 3 several times slower), NaN included."""

from __future__ import annotations

import numpy as np

from swiftshot.ops.cutout import _max3


def test_max3_is_max_over_the_last_axis():
    rng = np.random.default_rng(5)
    for shape in ((7, 3), (40, 30, 3), (0, 3)):
        x = rng.normal(size=shape).astype(np.float32)
        assert np.array_equal(_max3(x), x.max(-1)) and _max3(x).dtype == np.float32
    x = np.array([[1.0, np.nan, 0.0], [np.nan, 2.0, 3.0], [0.5, 0.25, 4.0]])
    assert np.array_equal(_max3(x), x.max(-1), equal_nan=True)
    y = rng.normal(size=(5, 4))
    assert np.array_equal(_max3(y), y.max(-1))  # not 3 channels: numpy's own
