"""The evaluation's photo cache (``SWIFTSHOT_PHOTO_CACHE``): a cached photo is the drawn one,
bit for bit, and a changed case, size or seed never reads another's file."""

import numpy as np

from swiftshot.testing import products
from swiftshot.testing.products import eval_cases, make_photo


def _same(a, b) -> bool:
    return (np.array_equal(np.asarray(a.image), np.asarray(b.image))
            and np.array_equal(a.coverage, b.coverage) and a.coverage.dtype == b.coverage.dtype)


def test_a_cached_photo_is_the_drawn_photo(tmp_path, monkeypatch):
    case = eval_cases((3,), ("textured",))[0]
    drawn = make_photo(case, (160, 120))
    monkeypatch.setenv("SWIFTSHOT_PHOTO_CACHE", str(tmp_path))
    first = make_photo(case, (160, 120))
    files = list(tmp_path.rglob("*.npz"))
    assert len(files) == 1
    again = make_photo(case, (160, 120))
    assert _same(drawn, first) and _same(drawn, again)
    assert again.image.size == (160, 120) and again.name == case.name
    # the second call read the file: a file with other pixels under that key is what comes back
    with np.load(files[0]) as z:
        rgb, cov = z["rgb"], z["coverage"]
    np.savez_compressed(files[0], rgb=255 - rgb, coverage=cov)
    assert np.array_equal(np.asarray(make_photo(case, (160, 120)).image), 255 - rgb)


def test_case_size_seed_and_source_each_key_their_own_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTSHOT_PHOTO_CACHE", str(tmp_path))
    a, b = eval_cases((3, 4), ("textured",))
    make_photo(a, (96, 96))
    make_photo(b, (96, 96))
    make_photo(a, (96, 80))
    make_photo(a, (96, 96), seed=11)
    assert len(list(tmp_path.rglob("*.npz"))) == 4
    monkeypatch.setattr(products, "_SOURCE_DIGEST", ["another generator"])
    fresh = make_photo(a, (96, 96))
    assert len(list(tmp_path.rglob("*.npz"))) == 5  # an edited generator draws anew
    monkeypatch.delenv("SWIFTSHOT_PHOTO_CACHE")
    assert _same(fresh, make_photo(a, (96, 96)))


def test_a_torn_file_is_drawn_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTSHOT_PHOTO_CACHE", str(tmp_path))
    case = eval_cases((5,), ("holes",))[0]
    good = make_photo(case, (80, 80))
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(path.read_bytes()[:40])
    assert _same(good, make_photo(case, (80, 80)))


def test_a_shape_drawn_in_another_module_keys_on_that_modules_source(tmp_path, monkeypatch):
    from swiftshot.testing.novel import novel_case

    monkeypatch.setenv("SWIFTSHOT_PHOTO_CACHE", str(tmp_path))
    case = novel_case("holes", 22)  # a stool, drawn by testing/novel.py
    make_photo(case, (96, 96))
    make_photo(case, (96, 96))
    assert len(list(tmp_path.rglob("*.npz"))) == 1
    # an edited novel.py draws anew though products.py is unchanged
    monkeypatch.setattr(products, "_MODULE_DIGESTS", {"swiftshot.testing.novel": "edited"})
    make_photo(case, (96, 96))
    assert len(list(tmp_path.rglob("*.npz"))) == 2
    # a known shape's key is not touched by it
    known = eval_cases((3,), ("holes",))[0]
    make_photo(known, (96, 96))
    monkeypatch.setattr(products, "_MODULE_DIGESTS", {})
    make_photo(known, (96, 96))
    assert len(list(tmp_path.rglob("*.npz"))) == 3
