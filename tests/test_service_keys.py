"""Service.normalise_and_key: the memo on the cache-hit path never changes a key."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from swiftshot import pipeline
from swiftshot import service as service_mod
from swiftshot.engines import FakeEngine
from swiftshot.service import Service
from swiftshot.spec import RenderSpec


@pytest.fixture
def svc(settings):
    s = Service(settings, engine=FakeEngine(), cache=object())
    yield s
    s._pool.shutdown()
    s._master_pool.shutdown()


def _plain(svc: Service, spec: RenderSpec) -> tuple[RenderSpec, str]:
    n = spec.normalized()
    return n, n.cache_key(svc.engine.name, svc.engine.version, pipeline.OPS_VERSION)


@given(prompt=st.text(alphabet="ab ", max_size=8), seed=st.one_of(st.none(), st.integers(0, 9)),
       tags=st.lists(st.sampled_from(["x", "y"]), max_size=3))
@hsettings(max_examples=60, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_memo_gives_the_plain_paths_key_every_time(svc, prompt, seed, tags):
    # one service across examples on purpose: the memo fills up as it would in a server
    spec = RenderSpec(engine="fake", prompt=prompt, seed=seed, width=64, height=64,
                      tags=tuple(tags))
    first = svc.normalise_and_key(spec)
    again = svc.normalise_and_key(RenderSpec(**spec.model_dump()))  # equal, not identical
    assert first == again == _plain(svc, spec)


def test_fresh_random_seed_is_never_memoised(svc):
    spec = RenderSpec(engine="fake", prompt="p", seed=-1, width=64, height=64)
    seeds = {svc.normalise_and_key(spec)[0].seed for _ in range(5)}
    assert len(seeds) == 5
    assert not svc._keys


def test_ops_parameters_that_compare_equal_but_dump_differently_keep_their_keys(svc):
    a = RenderSpec(engine="fake", prompt="p", ops=({"op": "shadow", "strength": 1},))
    b = RenderSpec(engine="fake", prompt="p", ops=({"op": "shadow", "strength": 1.0},))
    assert a == b  # pydantic equality: why such specs stay out of the memo
    assert svc.normalise_and_key(a)[1] == _plain(svc, a)[1]
    assert svc.normalise_and_key(b)[1] == _plain(svc, b)[1] != _plain(svc, a)[1]


def test_memo_is_bounded(svc, monkeypatch):
    monkeypatch.setattr(service_mod, "KEY_MEMO_SIZE", 8)
    for i in range(20):
        svc.normalise_and_key(RenderSpec(engine="fake", prompt=f"p{i}", width=64, height=64))
    assert len(svc._keys) == 8
