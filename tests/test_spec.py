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


# -- the one-pass key (the cache-hit path) against the plain two-pass one ----------------------

import hashlib  # noqa: E402

import orjson  # noqa: E402

_engines = st.sampled_from(["studio", "diffusion", "fake"])
_json_scalars = st.one_of(st.integers(-5, 5), st.floats(-2, 2, allow_nan=False), st.booleans(),
                          st.text(alphabet="xyz", max_size=3), st.none())
_ops = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["cutout", "shadow", "compose"])},
    optional={"strength": _json_scalars, "pts": st.lists(_json_scalars, max_size=3)}), max_size=3)
specs = st.builds(
    lambda ws, neg, w, h, seed, steps, guidance, engine, model, tags, ops, fmt, q: RenderSpec(
        prompt=" ".join(ws), negative_prompt=neg, width=w, height=h, seed=seed, steps=steps,
        guidance=guidance, engine=engine, model=model, tags=tuple(tags), ops=tuple(ops),
        output_format=fmt, quality=q),
    words, st.sampled_from(["", "blurry", " low  res "]), sides, sides,
    st.one_of(st.none(), st.integers(0, 2**32 - 1)), st.one_of(st.none(), st.integers(1, 100)),
    st.one_of(st.none(), st.floats(0, 30, allow_nan=False)), _engines,
    st.one_of(st.none(), st.sampled_from(["sd-turbo", " m "])),
    st.lists(st.sampled_from(["b", "a", "sku-1"]), max_size=4), _ops,
    st.sampled_from(["png", "webp"]), st.one_of(st.none(), st.integers(1, 100)))
_versions = st.tuples(st.sampled_from([None, "studio", "diffusion"]), st.sampled_from(["0", "4"]),
                      st.sampled_from(["0", "3"]))


def _reference_key(spec: RenderSpec, engine: str | None, ev: str, ov: str) -> tuple[dict, str]:
    """The key as first defined (model_dump twice, seed from its own hash): cached images made
    before the one-pass rewrite must keep their keys."""
    def dump(s: RenderSpec) -> dict:
        d = s.model_dump(mode="json", exclude={"output_format", "quality", "category", "tags"})
        d["ops"] = [op.model_dump(mode="json") for op in s.ops]
        return d

    n = spec.normalized()
    if spec.seed is None:  # the derived seed, recomputed the old way
        no_seed = dump(n)
        no_seed.pop("seed")
        digest = hashlib.sha256(orjson.dumps(no_seed, option=orjson.OPT_SORT_KEYS)).digest()
        assert n.seed == int.from_bytes(digest[:4], "big")
    payload = {"v": "1", "engine": engine or spec.engine, "engine_version": ev,
               "ops_version": ov, "spec": dump(n)}
    return dump(n), hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


@given(specs, _versions)
def test_one_pass_key_equals_plain_path_and_first_definition(spec, versions):
    fast_spec, fast_key = spec.normalized_and_key(*versions)
    assert fast_spec == spec.normalized()
    assert fast_key == spec.normalized().cache_key(*versions) == spec.cache_key(*versions)
    canonical, ref_key = _reference_key(spec, *versions)
    assert fast_key == ref_key
    assert list(spec.canonical().items()) == list(canonical.items())  # order too (FakeEngine)


@given(specs)
def test_random_seed_one_pass_is_fresh_and_consistent(spec):
    fresh = spec.model_copy(update={"seed": -1})
    n, key = fresh.normalized_and_key()
    assert n.seed != -1 and key == n.cache_key()


def test_negative_zero_guidance_is_zero():
    a = RenderSpec(prompt="shoe", engine="diffusion", guidance=-0.0)
    assert a.cache_key() == RenderSpec(prompt="shoe", engine="diffusion", guidance=0.0).cache_key()
