"""White on white with thin or faint parts (issue 10): a strap under a watch's case, a
headband arching over the sweep, a lamp shade's lit side. The classical cutout closes a white
product from its outline; these parts were cut away as a shadow on the floor, as a hole walled
in by the outline, or never joined the body (novel white on white seeds 0-119 at 640²:
headphones 0.61, watches 0.65, lamps 0.90 mean)."""

import cv2
import numpy as np
import pytest

from swiftshot.ops import cutout as C
from swiftshot.ops.cutout import ClassicalSegmenter
from swiftshot.testing.novel import novel_case
from swiftshot.testing.products import iou, make_photo


@pytest.mark.parametrize("seed,product,floor", [
    (73, "watch", 0.95),   # a strap the sweep's own hue, flat, outlined: was 0.70
    (5, "watch", 0.93),    # a strap off the sweep's hue: was 0.67
    (11, "lamp", 0.95),    # the shade's lit side, a few levels over the sweep: was 0.25
    (59, "headphones", 0.80),  # the band over the sweep, the floor seen under it: was 0.59
])
def test_white_parts_of_a_white_product_are_kept(seed, product, floor):
    case = novel_case("white_on_white", seed)
    assert case.product == product
    photo = make_photo(case, (640, 640))
    assert iou(ClassicalSegmenter().mask(photo.image), photo.coverage) >= floor


def _strap_scene(shadow: bool):
    """A work-size mask ``before`` (a body and a strap under it, or a body and a cast shadow
    beside its foot), ``after`` (the cast-shadow cut took the lower part), the outline edges
    and the evidence a white sweep gives."""
    h, w = 120, 120
    before = np.zeros((h, w), np.uint8)
    before[20:60, 40:80] = 1                       # the body
    ratio = np.ones((h, w), np.float32)
    edges = np.zeros((h, w), bool)
    if shadow:
        before[60:100, 30:90] = 1                  # a shadow on the floor, graded
        ramp = np.linspace(0.75, 0.97, 40, dtype=np.float32)[:, None]
        ratio[60:100, 30:90] = ramp
    else:
        before[60:100, 50:70] = 1                  # a strap, flat, a step off the sweep
        ratio[60:100, 50:70] = 0.95
        edges[60:101, 49] = edges[60:101, 70] = True
        edges[100, 49:71] = True
    after = before.copy()
    after[60:, :] = 0
    ev = C.Evidence(product=np.zeros((h, w), bool), bg_like=ratio > 0.99,
                    shadow_like=ratio <= 0.99, ratio=ratio,
                    chroma=np.zeros((h, w), np.float32),
                    tol=np.full((h, w), 0.03, np.float32))
    return before, after, edges, ev


def test_an_outlined_flat_strap_is_given_back_and_a_shadow_is_not():
    faces = np.zeros((120, 120), bool)
    before, after, edges, ev = _strap_scene(shadow=False)
    kept = C._keep_white_faces(before, after, faces, edges, ev, 50)
    assert kept[60:100, 50:70].all()
    before, after, edges, ev = _strap_scene(shadow=True)
    kept = C._keep_white_faces(before, after, faces, edges, ev, 50)
    assert not kept[60:, :].any()
    # A tinted face is given back whatever its outline.
    faces[60:100, 50:70] = True
    kept = C._keep_white_faces(before, after, faces, edges, ev, 50)
    assert kept[60:100, 50:70].all() and not kept[60:100, 30:45].any()


def test_the_tint_of_a_white_face_is_found_and_the_sweep_is_not():
    rng = np.random.default_rng(0)
    h, w = 160, 160
    sweep = np.array((247.0, 246.0, 243.0), np.float32)
    bg = np.broadcast_to(sweep, (h, w, 3)).astype(np.float32)
    img = bg + rng.normal(0, 0.8, (h, w, 3)).astype(np.float32)
    img[40:120, 70:90] = np.array((244.0, 244.0, 244.0)) + rng.normal(0, 0.8, (80, 20, 3))
    lum = img.mean(2) + 1
    ev = C.Evidence(product=np.zeros((h, w), bool), bg_like=np.ones((h, w), bool),
                    shadow_like=np.zeros((h, w), bool),
                    ratio=(lum / (bg.mean(2) + 1)).astype(np.float32),
                    chroma=np.zeros((h, w), np.float32),
                    tol=np.full((h, w), 0.03, np.float32))
    band = C._border_sel(h, w, 8)
    face = C._white_tint(img, bg, ev, band, 7.0)
    assert face[50:110, 75:85].mean() > 0.95
    away = cv2.dilate(np.pad(np.ones((80, 20), np.uint8), ((40, 40), (70, 70))),
                      np.ones((9, 9), np.uint8)) == 0
    assert face[away].mean() < 0.01
