"""The serving fast path (api/fast_path.py) answers exactly as the full app does.

One app, one service, one memory tier: every request of a matrix is sent through
``HitFastPath`` with the fast path on and again with it off (everything through the FastAPI app
and the service middleware), and status, every header and the body must be equal, and so must
the metrics and prefetch statistics each request moved. Which requests the fast path answered
itself is asserted too, so a fast path that silently fell through for everything would fail.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from swiftshot import telemetry
from swiftshot.api.app import create_app, serving_entry
from swiftshot.api.fast_path import ROUTE, HitFastPath
from swiftshot.config import Settings
from swiftshot.spec import variant_key


class _Counting:
    """The full app, counting the requests that reached it."""

    def __init__(self, app) -> None:
        self.app = app
        self.state = app.state
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("fast") / "var",
                        engine={"default": "fake"}, server={"warmup_shapes": [(64, 64)]})
    app = create_app(settings)
    entry = HitFastPath(app)
    full = entry.app = _Counting(app)
    prefetcher = app.state.service.prefetcher
    learn = prefetcher.observe

    def observe(profile) -> None:  # the delivery profiles learned, in order (and learned)
        full.profiles.append(profile)
        learn(profile)

    full.profiles = []
    prefetcher.observe = observe
    with TestClient(entry) as client:
        # Warm-up runs beside the app's start: until it is done a render is a 503 "still
        # loading" (a CI run on a busy box caught that race), so wait for /readyz first.
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.05)
        r = client.post("/v1/render", json={"prompt": "fast path sweep", "size": "64x64"})
        assert r.status_code == 200, r.text
        yield client, entry, full, r.json()["key"]


def _metrics(state, key: str) -> dict[str, float]:
    def sample(name: str, labels: dict[str, str]) -> float:
        return telemetry.REGISTRY.get_sample_value(name, labels) or 0.0

    prefetcher = state.service.prefetcher
    out = {f"responses {c}": sample("swiftshot_responses_total", {"route": ROUTE, "code": c})
           for c in ("2xx", "3xx", "4xx", "5xx")}
    out["duration count"] = sample("swiftshot_request_duration_seconds_count",
                                   {"route": ROUTE, "priority": "none"})
    for tier in ("memory", "disk"):
        for result in ("hit", "miss"):
            out[f"cache {tier} {result}"] = sample("swiftshot_cache_requests_total",
                                                   {"tier": tier, "result": result})
    out["popular"] = sum(v for k, v in prefetcher.popular.items() if k.startswith(key))
    return out


def _send(client, entry, full, fast: bool, method: str, url: str, headers: dict[str, str]):
    entry.enabled = fast
    before_calls = len(full.paths)
    before = _metrics(full.state, url[3:67])
    learned = len(full.profiles)
    r = client.request(method, url, headers=headers)
    moved = {k: v - before[k] for k, v in _metrics(full.state, url[3:67]).items()}
    moved["profiles learned"] = full.profiles[learned:]
    return r, len(full.paths) > before_calls, moved


def _answer(r) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in r.headers.multi_items())
    return r.status_code, headers, r.content


HITS = [  # (method, path after the key, headers): answered by the fast path once warm
    ("GET", ".webp", {}),
    ("HEAD", ".webp", {}),
    ("GET", ".jpg", {}),
    ("GET", ".jpeg", {}),
    ("GET", ".png", {}),
    ("GET", ".avif", {}),
    ("GET", ".WebP", {}),
    ("GET", ".webp?q=40", {}),
    ("GET", ".jpg?w=32", {}),
    ("GET", ".webp?q=55&w=48", {}),
    ("GET", ".webp?other=1", {}),
    ("GET", "", {"Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}),
    ("GET", "", {"Accept": "image/webp,*/*"}),
    ("GET", "", {"Accept": "*/*"}),
    ("GET", "", {}),
    ("HEAD", "", {"Accept": "image/png"}),
    ("GET", ".webp", {"Save-Data": "on"}),
    ("GET", ".jpg", {"ECT": "2g", "Downlink": "0.4"}),
    ("GET", ".webp", {"DPR": "2"}),
    ("GET", ".webp", {"Range": "bytes=0-9"}),  # no range support: the whole image, as today
    ("GET", ".webp", {"Accept-Encoding": "gzip", "X-Forwarded-For": "10.0.0.1",
                      "Authorization": "Bearer sk-anything"}),
]

FALL_THROUGH = [  # never answered by the fast path
    ("GET", ".gif", {}),  # unknown extension: 404 JSON
    ("GET", "", {"Accept": "text/html"}),  # 406 JSON
    ("GET", ".webp?q=0", {}),  # 400 JSON
    ("GET", ".webp?w=abc", {}),
    ("GET", ".jpg", {"Width": "40"}),  # needs the master's size (an await)
    ("GET", ".jpg", {"Sec-CH-Width": "33", "Sec-CH-DPR": "1.5"}),
    ("POST", ".webp", {}),  # 405 from the router
    ("DELETE", ".webp", {}),
    ("OPTIONS", ".webp", {}),
]

BAD_NAMES = ["", "abc.webp", "z" * 64 + ".webp", "A" * 64 + ".webp", "0" * 64 + ".webp",
             "0" * 64, "a/b.webp", "0" * 63 + ".webp", "%zz"]


def _check_same(served, method, url, headers, *, fast_answers: bool):
    client, entry, full, _ = served
    client.request(method, url, headers=headers)  # warm: an encode of a new variant is a miss
    fast, fell, fast_moved = _send(client, entry, full, True, method, url, headers)
    slow, _, slow_moved = _send(client, entry, full, False, method, url, headers)
    assert _answer(fast) == _answer(slow), (method, url, headers)
    assert fast_moved == slow_moved, (method, url, headers)
    assert fell is not fast_answers, f"{method} {url} {headers}: fast path answered={not fell}"
    return fast


@pytest.mark.parametrize("method,suffix,headers", HITS)
def test_hits_answered_by_the_fast_path_exactly_as_by_the_full_app(served, method, suffix,
                                                                   headers):
    key = served[3]
    url = f"/i/{key}{suffix}"
    r = _check_same(served, method, url, headers, fast_answers=True)
    assert r.status_code == 200 and r.headers["x-cache"] == "memory"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = r.headers["etag"]
    # conditional GET: 304 with the same headers, no body, on both paths
    for inm in (etag, f'W/{etag}', f'"nope", {etag}', "*"):
        r304 = _check_same(served, method, url, {**headers, "If-None-Match": inm},
                           fast_answers=True)
        assert r304.status_code == 304 and r304.content == b""
    assert _check_same(served, method, url, {**headers, "If-None-Match": '"nope"'},
                       fast_answers=True).status_code == 200


@pytest.mark.parametrize("method,suffix,headers", FALL_THROUGH)
def test_what_the_fast_path_does_not_handle_falls_through(served, method, suffix, headers):
    r = _check_same(served, method, f"/i/{served[3]}{suffix}", headers, fast_answers=False)
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["message"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_keys_give_todays_4xx_json(served, name):
    r = _check_same(served, "GET", f"/i/{name}", {}, fast_answers=False)
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if "/" not in name[:-1] and name:  # a name with a slash is not a key at all
        assert "keys come from POST /v1/render" in err["message"] or err["param"] == "ext"


def test_a_miss_falls_through_and_the_next_ask_is_a_fast_hit(served):
    client, entry, full, key = served
    url = f"/i/{key}.jpg?q=23"  # a variant nobody asked for yet
    first, fell, _ = _send(client, entry, full, True, "GET", url, {})
    assert fell and first.status_code == 200 and first.headers["x-cache"] == "miss"
    second, fell, _ = _send(client, entry, full, True, "GET", url, {})
    assert not fell and second.headers["x-cache"] == "memory"
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]
    # only in the disk tier: the full path answers it (and promotes it), then the fast path
    svc = full.state.service
    # the disk tier is written behind the answer: wait for that write before looking there
    client.portal.call(svc.cache.flush)
    svc.cache.tiers[0].delete(variant_key(key, "jpeg", 23))
    disk, fell, moved = _send(client, entry, full, True, "GET", url, {})
    assert fell and disk.headers["x-cache"] == "disk" and disk.content == first.content
    assert moved["cache memory miss"] == 1 and moved["cache memory hit"] == 0, moved
    again, fell, _ = _send(client, entry, full, True, "GET", url, {})
    assert not fell and again.headers["x-cache"] == "memory"


def test_a_purged_image_is_not_served_by_the_fast_path(served):
    client, entry, full, _ = served
    r = client.post("/v1/render", json={"prompt": "to be purged", "size": "64x64"})
    key = r.json()["key"]
    url = f"/i/{key}.webp"
    client.get(url)
    assert _send(client, entry, full, True, "GET", url, {})[0].status_code == 200
    # as DELETE /v1/cache/{key} does (over HTTP it wants a loopback peer or an admin key)
    assert client.portal.call(full.state.service.purge, key) > 0
    gone, fell, _ = _send(client, entry, full, True, "GET", url, {})
    assert fell and gone.status_code == 404


def test_serve_hands_uvicorn_the_fast_path_unless_turned_off(tmp_path):
    on = create_app(Settings(data_dir=tmp_path / "a", engine={"default": "fake"}))
    assert isinstance(serving_entry(on), HitFastPath)
    off = create_app(Settings(data_dir=tmp_path / "b", engine={"default": "fake"},
                              server={"fast_hits": False}))
    assert serving_entry(off) is off
