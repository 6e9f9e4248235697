"""Predictive prefetch against real servers: likely variants encoded after a render, the
``POST /v1/prefetch`` jobs with their handle, the warm start, and bad input."""

from __future__ import annotations

import time

import httpx
import pytest

from swiftshot.delivery import negotiate
from swiftshot.prefetch import Profile, VariantStats

PHONE = {"Accept": "image/avif,image/webp,*/*", "DPR": "3", "Width": "390", "ECT": "4g"}
SLOW = {"Accept": "image/webp,*/*", "Save-Data": "on", "ECT": "3g", "DPR": "2", "Width": "360"}


# -- units -----------------------------------------------------------------------------------


def test_variant_stats_rank_and_decay():
    now = [0.0]
    stats = VariantStats(half_life_s=10.0, clock=lambda: now[0])
    a = Profile("webp", None, None, negotiate.parse_hints({}))
    b = Profile("webp", None, None, negotiate.parse_hints({k.lower(): v for k, v in PHONE.items()}))
    for _ in range(4):
        stats.observe(a)
    now[0] = 30.0  # three half-lives later: a's 4 weigh 0.5
    stats.observe(b)
    top = stats.top(3, 1.0)
    assert [p for p, _ in top] == [b, a]
    assert abs(top[0][1] - 1 / 1.5) < 1e-9
    assert [p for p, _ in stats.top(3, 0.5)] == [b]  # b alone covers half
    assert stats.top(0, 1.0) == []


def test_profile_resolves_as_delivery_does():
    from swiftshot.config import Settings
    from swiftshot.engines import FakeEngine
    from swiftshot.service import Service

    svc = Service(Settings(data_dir="/tmp/unused-prefetch-test",
                           cache={"disk_dir": None}), engine=FakeEngine())
    try:
        hints = negotiate.parse_hints({k.lower(): v for k, v in SLOW.items()})
        fmt, q, w = Profile("webp", None, None, hints).resolve(svc, 1024)
        assert fmt == "webp"
        assert q == negotiate.adapt_quality(svc.quality_for("webp", None), hints) < \
            svc.quality_for("webp", None)
        assert w == negotiate.adapt_width(1024, hints) and w < 1024
        assert Profile("png", None, 300, hints).resolve(svc, 1024) == ("png", None, 300)
    finally:
        svc.cache.close()


# -- against a server ------------------------------------------------------------------------

ENV = {"SWIFTSHOT_PREFETCH__MAX_ITEMS": "4", "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.05"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.api.conftest import start_server

    s = start_server(tmp_path_factory.mktemp("prefetch") / "var", env=ENV)
    yield s
    s.stop()


def _render(s, prompt: str) -> str:
    r = s.client.post("/v1/render", json={"prompt": prompt, "size": "512x512",
                                          "output_format": "webp"})
    assert r.status_code == 200, r.text
    return r.json()["key"]


def _fetch(s, key: str, headers: dict[str, str]) -> httpx.Response:
    r = s.client.get(f"/i/{key}.webp", headers=headers)
    assert r.status_code == 200, r.text
    return r


def _learn_then_fetch_new(s) -> list[str]:
    """Teach the server the shop's profiles on one image, render another, then fetch each
    profile's variant of the new one once: the X-Cache of those first requests."""
    taught = _render(s, f"teach {time.monotonic()}")
    for h in (PHONE, SLOW, PHONE, {"Accept": "image/webp"}):
        _fetch(s, taught, h)
    fresh = _render(s, f"fresh {time.monotonic()}")
    time.sleep(1.0)  # idle: the prefetcher encodes in the background
    return [_fetch(s, fresh, h).headers["x-cache"] for h in (PHONE, SLOW, {"Accept": "image/webp"})]


def test_likely_variants_are_ready_before_the_first_request(server):
    assert _learn_then_fetch_new(server) == ["memory", "memory", "memory"]
    assert server.metric("swiftshot_prefetched_total", kind="variant") >= 3


def test_without_prefetch_first_requests_miss(serve):
    s = serve(env={**ENV, "SWIFTSHOT_PREFETCH__ENABLED": "false"})
    assert _learn_then_fetch_new(s) == ["miss", "miss", "miss"]
    assert s.metric("swiftshot_prefetched_total") == 0


def test_prefetch_job_renders_and_reports(server):
    specs = [{"prompt": f"campaign {i}", "size": "64x64"} for i in range(3)]
    r = server.client.post("/v1/prefetch", json={"specs": specs})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["total"] == 3 and r.headers["location"] == body["url"]
    path = "/" + body["url"].split("/", 3)[3]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = server.client.get(path).json()
        if status["status"] == "completed":
            break
        time.sleep(0.1)
    assert status["status"] == "completed", status
    assert [it["state"] for it in status["items"]] == ["done"] * 3
    assert status["counts"] == {"done": 3}
    # the renders are cached: a shopper's request for one is a hit
    hit = server.client.post("/v1/render", json=specs[1])
    assert hit.headers["x-cache"] == "memory" and hit.json()["key"] == status["items"][1]["key"]
    again = server.client.post("/v1/prefetch", json={"specs": specs[:1]}).json()
    path2 = "/" + again["url"].split("/", 3)[3]
    for _ in range(100):
        st = server.client.get(path2).json()
        if st["status"] == "completed":
            break
        time.sleep(0.05)
    assert st["items"][0]["state"] == "cached"


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"specs": [{"prompt": f"p{i}"} for i in range(5)]}, "specs", ["at most 4", "got 5"]),
    ({"specs": []}, "specs", ["non-empty"]),
    ({"specs": "oak"}, "specs", ["list"]),
    ({"specs": [{"prompt": "ok"}, {"prompt": "x", "colour": "red"}]}, "specs[1].colour",
     ["specs[1]", "colour"]),
    ({"specs": [{"prompt": "x", "ops": [{"op": "cutout"}]}]}, "specs[0].product", ["photo"]),
    ({"specs": [{"prompt": "x"}], "when": "now"}, "when", ["specs"]),
])
def test_bad_prefetch_requests_are_422(server, body, param, words):
    r = server.client.post("/v1/prefetch", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == param
    for w in words:
        assert w in err["message"]


def test_unknown_handle_is_404(server):
    r = server.client.get("/v1/prefetch/0123456789abcdef")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_warm_start_fills_memory_from_disk(serve, tmp_path):
    data = tmp_path / "warm"
    s = serve(data, env=ENV)
    key = _render(s, "warm me")
    _fetch(s, key, {"Accept": "image/webp"})
    _fetch(s, key, {"Accept": "image/webp"})
    s.stop()  # SIGTERM: the popular keys are saved
    assert (data / "popular.json").exists()
    warm = serve(data, env=ENV)
    assert _fetch(warm, key, {"Accept": "image/webp"}).headers["x-cache"] == "memory"
    warm.stop()
    cold = serve(data, env={**ENV, "SWIFTSHOT_PREFETCH__WARM_BYTES": "0"})
    assert _fetch(cold, key, {"Accept": "image/webp"}).headers["x-cache"] == "disk"
