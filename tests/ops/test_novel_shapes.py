"""The novel-shapes set (`testing.novel`): products no cutout pass was written for, drawn in
the evaluation set's scenes."""

import numpy as np
import pytest

from swiftshot.testing import novel, products
from swiftshot.testing.products import CATEGORIES, make_photo


def test_every_category_gets_a_novel_product_in_its_own_scene():
    for cat in CATEGORIES:
        for seed in range(6):
            case = novel.novel_case(cat, seed)
            base = products._eval_case(cat, seed)
            assert case.product in novel.NOVEL_PRODUCTS
            assert case.product not in ("bottle", "box", "mug", "sneaker", "bag")
            assert (case.backdrop, case.frame, case.shadow, case.noise, case.jpeg) == \
                (base.backdrop, base.frame, base.shadow, base.noise, base.jpeg)
            assert case.category == cat and case.name.startswith(f"novel_{cat}_{seed}_")
    assert novel.novel_case("holes", 3) == novel.novel_case("holes", 3)
    used = {novel.novel_case(c, s).product for c in CATEGORIES for s in range(20)}
    assert used == set(novel.NOVEL_PRODUCTS)


@pytest.mark.parametrize("product", sorted(novel.NOVEL_PRODUCTS))
def test_each_shape_draws_a_product_with_the_backdrop_around_it(product):
    cat = next(c for c, names in novel._BY_CATEGORY.items() if product in names)
    seed = next(s for s in range(200) if novel.novel_case(cat, s).product == product)
    case = novel.novel_case(cat, seed)
    photo = make_photo(case, (200, 200))
    cov = photo.coverage
    assert cov.shape == (200, 200) and cov.dtype == np.float32
    assert 0.0 <= cov.min() and cov.max() <= 1.0
    frac = float((cov >= 0.5).mean())
    assert 0.01 < frac < 0.5, (product, frac)
    # anti-aliased edges: some pixels are partly covered
    assert ((cov > 0.05) & (cov < 0.95)).sum() > 20
    rgb = np.asarray(photo.image, np.float32)
    inside, outside = rgb[cov >= 0.99].mean(0), rgb[cov <= 0.0].mean(0)
    assert np.isfinite(inside).all() and np.isfinite(outside).all()


def test_shapes_with_gaps_show_the_backdrop_through_them():
    # a stool between its legs, headphones under the band: pixels enclosed by the product's
    # outline (its filled convex hull) that the product does not cover
    import cv2

    for product, cat in (("stool", "thin_parts"), ("headphones", "holes")):
        seed = next(s for s in range(200) if novel.novel_case(cat, s).product == product)
        cov = make_photo(novel.novel_case(cat, seed), (240, 240)).coverage
        m = (cov >= 0.5).astype(np.uint8)
        hull = cv2.convexHull(cv2.findNonZero(m))
        filled = np.zeros_like(m)
        cv2.fillConvexPoly(filled, hull, 1)
        assert (filled & (1 - m)).sum() > 0.3 * m.sum(), product
