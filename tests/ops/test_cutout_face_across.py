"""Sneakers on two planes (issue 10, seventeenth session, plane19): a light sole's strip seen
above a table's horizon against a light wall is a face of the sole running on across the
change of backdrop, not a bay of the wall (``_face_across``, asked by ``_open_pockets`` and
``_fill_sandwiched``); and a lit step beyond the outline on a grained table is doubted
(``lit_grain``: a light sole lost on light stone, said high before); a label straight across
a bottle, of the table's colour, is kept (``_band_across``). Real cases are tuning
seeds (the lead's sweep 19000-19099, open since the sixteenth session, and 13000-17999,
5000-5499); each fails on main
f9a657b (OPS 50)."""

from __future__ import annotations

import numpy as np
import pytest

from swiftshot.ops.cutout import (
    ClassicalSegmenter,
    _confidence_from,
    _face_across,
    confidence_label,
)
from swiftshot.testing.products import _eval_case, case_iou, iou, make_photo


def _cut(category: str, seed: int, side: int = 640) -> tuple[float, float, tuple[str, ...]]:
    photo = make_photo(_eval_case(category, seed), (side, side))
    rgb = np.asarray(photo.image)
    seg = ClassicalSegmenter()
    found = seg.find(rgb)
    signals = dict(found.signals or {})
    alpha = seg.refine(found, rgb, signals).astype(np.float32) / 255.0
    conf, why = _confidence_from(signals)
    return iou(alpha, photo.coverage), conf, why


def _strip_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A blue solid band over a light strip over the same light colour as solid (the sole on
    the table), and a second light strip over green solid (a bay between leaves)."""
    ib = np.zeros((40, 60, 3), np.float32)
    ib[:] = (230.0, 226.0, 220.0)  # the wall (and the bays' colour)
    solid = np.zeros((40, 60), np.uint8)
    lab = np.zeros((40, 60), np.int32)
    ib[2:10, 5:55] = (40.0, 70.0, 150.0)      # the upper, solid
    solid[2:10, 5:55] = 1
    lab[10:13, 5:55] = 1                      # the sole's strip against the wall
    ib[13:20, 5:55] = (228.0, 224.0, 216.0)   # the sole on the table, solid there
    solid[13:20, 5:55] = 1
    ib[24:30, 5:55] = (60.0, 140.0, 60.0)     # leaves
    solid[24:30, 5:55] = 1
    lab[30:33, 5:55] = 2                      # a bay of the wall between leaves
    ib[33:38, 5:55] = (60.0, 140.0, 60.0)
    solid[33:38, 5:55] = 1
    st = np.array([[0, 0, 60, 40, 0], [5, 10, 50, 3, 150], [5, 30, 50, 3, 150]], np.int32)
    lum_bg = np.full((40, 60), 226.0, np.float32)  # the wall...
    lum_bg[13:24] = 150.0                           # ...and the table under the sole
    return ib, lab, st, solid, lum_bg


def test_a_strip_of_the_solid_parts_colour_is_a_face_a_bay_is_not():
    ib, lab, st, solid, lum_bg = _strip_scene()
    face = _face_across(ib, lab, st, np.array([False, True, True]), solid, lum_bg)
    assert face.tolist() == [False, True, False]


def test_no_face_across_where_the_backdrop_does_not_change():
    """On one backdrop a part of the solid product's colour is no face of it across a change
    of backdrop (a shaded sweep beside a light grey headband, novel cast shadows 414)."""
    ib, lab, st, solid, _ = _strip_scene()
    flat = np.full(lab.shape, 226.0, np.float32)
    face = _face_across(ib, lab, st, np.array([False, True, True]), solid, flat)
    assert not face.any()


def test_a_strip_in_pieces_is_found_through_its_found_neighbour():
    """The strip's second piece touches only the upper and the first piece: found once the
    first is."""
    ib, lab, st, solid, lum_bg = _strip_scene()
    lab[lab == 1] = 0
    lab[10:13, 5:30] = 1
    lab[7:10, 30:55] = 3  # a piece higher up, beside the first one only
    solid[7:10, 30:55] = 0
    ib[7:13, 30:55] = (228.0, 224.0, 216.0)
    lab[10:13, 30:55] = 1
    st = np.array([[0, 0, 60, 40, 0], [5, 10, 50, 3, 150], [5, 30, 50, 3, 150],
                   [30, 7, 25, 3, 75]], np.int32)
    face = _face_across(ib, lab, st, np.array([False, True, True, True]), solid, lum_bg)
    assert face.tolist() == [False, True, False, True]


def test_a_light_sole_against_a_white_wall_is_kept():
    """textured 19099 (a blue sneaker on wood, its light sole's top above the horizon against
    a white wall): the strip was cut as a bay of the wall, IoU 0.898 said high."""
    assert case_iou("textured", 19099) >= 0.97


def test_a_light_sole_against_a_light_wall_is_kept_and_said_high():
    """two plane 19053 (a grey table under a light wall): IoU 0.887 before; the strip kept is
    product on its own evidence, not doubted as backdrop kept in a gap."""
    got, conf, _ = _cut("two_plane", 19053)
    assert got >= 0.97
    assert confidence_label(conf) == "high"


def test_a_sole_lost_on_light_stone_is_said_low():
    """textured 19012 (a light sole on light stone, lost whole: IoU 0.685): said high at 0.955
    before, its lower edge's step found over 9 % of the outline past the stone's grain."""
    got, conf, why = _cut("textured", 19012)
    assert got < 0.9  # (still lost: when this fails, the sole was found; keep the case)
    assert confidence_label(conf) == "low"
    assert any("grained table" in w for w in why)


@pytest.mark.parametrize("category, seed, floor", [
    ("textured", 17213, 0.98),  # a cream label on light stone under a wall: 0.697 said high
    ("textured", 13024, 0.95),  # on stone: 0.841
    ("textured", 5399, 0.975),  # on stone: 0.967
    ("textured", 19175, 0.975),  # on stone, the label's left half cut: 0.868 (lead's sweep)
])
def test_a_label_straight_across_a_bottle_is_kept(category, seed, floor):
    """A label of the table's colour cut away whole, the bottle in two (``_band_across``:
    the bottle's sides run straight on through it)."""
    assert case_iou(category, seed) >= floor


def test_a_label_straight_across_is_said_high():
    got, conf, _ = _cut("textured", 17213)
    assert got >= 0.98 and confidence_label(conf) == "high"


@pytest.mark.parametrize("category, seed", [
    ("framing", 19072),  # a mug's handle cut by the frame's edge: its hole stays open
    ("framing", 5018),
])
def test_a_hole_open_to_the_frames_edge_is_no_band(category, seed):
    assert case_iou(category, seed) >= 0.99
