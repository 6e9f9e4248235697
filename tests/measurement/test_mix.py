"""The request mix: Zipf popularity, priority and upload shares, header profiles."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from swiftshot.benchmarks.mix import (
    HEADER_PROFILES,
    Mix,
    MixConfig,
    ZipfSampler,
    default_prompts,
    parse_shares,
)


def _chi_square(observed: list[int], probabilities: list[float]) -> float:
    n = sum(observed)
    return sum((o - n * p) ** 2 / (n * p) for o, p in zip(observed, probabilities, strict=True))


@pytest.mark.parametrize("s", [0.0, 0.8, 1.1, 1.5])
def test_zipf_sampler_matches_the_zipf_law(s):
    n, draws = 20, 40_000
    sampler = ZipfSampler(n, s, random.Random(3))
    counts = Counter(sampler.sample() for _ in range(draws))
    assert set(counts) <= set(range(n))
    expected = [1 / (k + 1) ** s for k in range(n)]
    total = sum(expected)
    expected = [e / total for e in expected]
    # 19 degrees of freedom: the 99.9th percentile of chi-square is 43.8.
    assert _chi_square([counts[k] for k in range(n)], expected) < 43.8
    if s > 0:
        assert counts[0] > counts[n - 1] * 2 ** s


def test_zipf_sampler_detects_a_wrong_law():
    # The same test must reject samples from another exponent, or it proves nothing.
    n = 20
    sampler = ZipfSampler(n, 0.5, random.Random(3))
    counts = Counter(sampler.sample() for _ in range(40_000))
    wrong = ZipfSampler(n, 1.1, random.Random(0)).probabilities
    assert _chi_square([counts[k] for k in range(n)], wrong) > 43.8


def test_zipf_rejects_bad_parameters():
    with pytest.raises(ValueError, match="at least one"):
        ZipfSampler(0, 1.0, random.Random())
    with pytest.raises(ValueError, match="≥ 0"):
        ZipfSampler(5, -1.0, random.Random())


def test_prompts_are_distinct_and_the_head_repeats():
    prompts = default_prompts()
    assert len(prompts) == len(set(prompts)) == 600
    mix = Mix(MixConfig(seed=1))
    drawn = [mix.next().body["prompt"] for _ in range(2000)]
    repeats = 1 - len(set(drawn)) / len(drawn)
    # With s=1.1 over 600 prompts most requests repeat an earlier prompt: the cache's chance.
    assert repeats > 0.6
    assert Counter(drawn).most_common(1)[0][0] == prompts[0]


def test_priority_and_upload_shares_are_honoured():
    mix = Mix(MixConfig(priority_mix="realtime=1,standard=3", upload_share=0.25,
                        fetch_share=0.5, seed=2))
    reqs = [mix.next() for _ in range(8000)]
    classes = Counter(r.priority for r in reqs)
    assert set(classes) == {"realtime", "standard"}
    assert classes["realtime"] / len(reqs) == pytest.approx(0.25, abs=0.02)
    assert sum(r.kind == "upload" for r in reqs) / len(reqs) == pytest.approx(0.25, abs=0.02)
    fetches = [r.fetch_headers for r in reqs if r.fetch_headers is not None]
    generations = [r for r in reqs if r.kind == "generate"]
    # Only generations are followed by a fetch (an upload's answer is the image itself).
    assert len(fetches) / len(generations) == pytest.approx(0.5, abs=0.02)
    assert all(r.fetch_headers is None for r in reqs if r.kind == "upload")
    profiles = [p for _, p in HEADER_PROFILES]
    assert all(f in profiles for f in fetches)
    assert any("Save-Data" in f for f in fetches) and any("DPR" in f for f in fetches)
    assert all(r.headers == {"X-Priority": r.priority} for r in reqs[:50])


def test_mix_is_reproducible_from_its_seed():
    a = [Mix(MixConfig(seed=5)).next() for _ in range(1)]
    m1, m2, m3 = Mix(MixConfig(seed=5)), Mix(MixConfig(seed=5)), Mix(MixConfig(seed=6))
    s1 = [m1.next() for _ in range(100)]
    assert s1 == [m2.next() for _ in range(100)]
    assert s1 != [m3.next() for _ in range(100)]
    assert a[0] == s1[0]


def test_unique_requests_never_repeat():
    mix = Mix(MixConfig())
    bodies = [mix.unique(i).body for i in range(500)]
    assert len({b["seed"] for b in bodies}) == 500
    # The engine's cost is the mix's: prompts come from the same list, not a special one.
    assert {b["prompt"] for b in bodies} <= set(mix.config.prompts)


@pytest.mark.parametrize("text, message", [
    ("realtime=0.5,urgent=0.5", "urgent"),
    ("realtime", "NAME=SHARE"),
    ("realtime=lots", "must be a number"),
    ("realtime=-1,standard=2", "≥ 0"),
    ("realtime=0", "more than 0"),
])
def test_bad_priority_mix_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shares(text, ("realtime", "standard", "batch", "prefetch"), "priority mix")


def test_shares_are_normalised():
    assert parse_shares("realtime=2,batch=6", ("realtime", "batch"), "x") == {"realtime": 0.25,
                                                                              "batch": 0.75}


def test_mix_config_checks_share_bounds():
    with pytest.raises(ValueError, match="upload_share"):
        MixConfig(upload_share=1.5)
