"""RenderSpec: normalisation, validation messages, and the cache key in both directions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from swiftshot.spec import RenderSpec, parse_size

sides = st.integers(8, 256).map(lambda k: k * 8)
words = st.lists(st.text(alphabet="abcdefghij", min_size=1, max_size=6), min_size=1, max_size=6)
spaces = st.sampled_from([" ", "  ", "\t", "\n", " \t "])


@given(words, st.lists(spaces, min_size=7, max_size=7), sides, sides)
def test_same_meaning_same_key(ws, seps, w, h):
    tidy = " ".join(ws)
    messy = seps[0] + "".join(word + seps[i + 1] for i, word in enumerate(ws))
    a = RenderSpec(prompt=tidy, width=w, height=h)
    b = RenderSpec(prompt=messy, size=f"{w}x{h}", steps=4, guidance=7.5)  # studio ignores these
    assert a.cache_key() == b.cache_key()
    # unseeded is deterministic, and equals the explicit derived seed
    c = RenderSpec(prompt=tidy, width=w, height=h, seed=a.normalized().seed)
    assert c.cache_key() == a.cache_key()
    # delivery-only fields do not split the cache
    d = RenderSpec(prompt=tidy, width=w, height=h, output_format="avif", quality=40, category="catalog")
    assert d.cache_key() == a.cache_key()


@given(words, sides, sides, st.integers(0, 2**32 - 1), st.sampled_from(
    ["prompt", "width", "seed", "engine", "steps", "negative", "ops", "engine_version"]))
def test_pixel_change_changes_key(ws, w, h, seed, what):
    base = dict(prompt=" ".join(ws), width=w, height=h, seed=seed, engine="diffusion")
    a = RenderSpec(**base)
    key_a = a.cache_key(engine_version="1")
    changed = dict(base)
    version = "1"
    if what == "prompt":
        changed["prompt"] = base["prompt"] + " x"
    elif what == "width":
        changed["width"] = w + 8 if w < 2048 else w - 8
    elif what == "seed":
        changed["seed"] = (seed + 1) % 2**32
    elif what == "engine":
        changed["engine"] = "studio"
    elif what == "steps":
        changed["steps"] = 2
    elif what == "negative":
        changed["negative_prompt"] = "blurry"
    elif what == "ops":
        changed["ops"] = [{"op": "cutout"}]
    elif what == "engine_version":
        version = "2"
    assert RenderSpec(**changed).cache_key(engine_version=version) != key_a


def test_diffusion_defaults_filled_so_explicit_default_shares_key():
    a = RenderSpec(prompt="shoe", engine="diffusion")
    b = RenderSpec(prompt="shoe", engine="diffusion", steps=1, guidance=0.0)
    assert a.cache_key() == b.cache_key()


def test_random_seed_is_fresh_and_marked_uncacheable():
    s = RenderSpec(prompt="x", seed=-1)
    assert not s.cacheable
    assert s.normalized().seed != -1


@pytest.mark.parametrize("size", ["1024", "1001x1000", "32x32", "4096x4096", "axb", "1024x"])
def test_bad_sizes_say_what_is_allowed(size):
    with pytest.raises(ValidationError) as e:
        RenderSpec(prompt="x", size=size)
    msg = str(e.value)
    assert "64" in msg and "2048" in msg and "8" in msg


def test_parse_size_accepts_common_spellings():
    assert parse_size("512x768") == (512, 768)
    assert parse_size(" 512 X 768 ") == (512, 768)


@pytest.mark.parametrize("fields,needle", [
    ({"steps": 0}, "steps"), ({"steps": 500}, "steps"), ({"output_format": "gif"}, "output_format"),
    ({"bogus": 1}, "bogus"), ({"quality": 101}, "quality"), ({"engine": "No Such!"}, "engine"),
    ({"prompt": "x" * 5000}, "prompt"),
])
def test_bad_fields_are_named(fields, needle):
    with pytest.raises(ValidationError) as e:
        RenderSpec(**fields)
    assert needle in str(e.value)


def test_jpg_alias():
    assert RenderSpec(output_format="jpg").output_format == "jpeg"
