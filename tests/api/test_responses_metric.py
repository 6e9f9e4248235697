"""``swiftshot_responses_total``: every answer counted once, by route template and status class."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot import telemetry
from swiftshot.api.middleware import InFlight, ServiceMiddleware

NAME = "swiftshot_responses_total"


def _counts(s, route: str) -> dict[str, float]:
    return {c: s.metric(NAME, route=route, code=c) for c in ("2xx", "4xx", "5xx")}


def test_responses_counted_by_route_template_and_class(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__FAIL_PROMPT": "explode"})
    before_render = _counts(s, "/v1/render")
    before_image = _counts(s, "/i/{name}")

    ok = s.client.post("/v1/render", json={"prompt": "paper sweep", "size": "64x64"})
    assert ok.status_code == 200
    assert s.client.post("/v1/render", json={"prompt": "x", "width": 65}).status_code == 422
    assert s.client.post("/v1/render", json={"prompt": "explode", "size": "64x64"}).status_code == 502
    key = ok.json()["key"]
    assert s.client.get(f"/i/{key}.png").status_code == 200
    assert s.client.get(f"/i/{'0' * 64}.png").status_code == 404

    after_render = _counts(s, "/v1/render")
    after_image = _counts(s, "/i/{name}")
    assert {c: after_render[c] - before_render[c] for c in after_render} == \
        {"2xx": 1, "4xx": 1, "5xx": 1}
    assert {c: after_image[c] - before_image[c] for c in after_image} == \
        {"2xx": 1, "4xx": 1, "5xx": 0}
    # route templates, never raw keys: no label carries the key
    assert key not in s.client.get("/metrics").text.split("swiftshot_responses_total", 1)[1]


def _sample(route: str, code: str) -> float:
    value = telemetry.REGISTRY.get_sample_value(NAME, {"route": route, "code": code})
    return value or 0.0


async def _call(app, path: str) -> list[dict]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    mw = ServiceMiddleware(app, max_body_bytes=1024, inflight=InFlight())
    await mw({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return sent


def test_escaped_exception_counts_as_5xx_even_after_a_start():
    async def broken(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("boom mid-body")

    before = _sample("/healthz", "5xx"), _sample("/healthz", "2xx")
    with pytest.raises(RuntimeError):
        asyncio.run(_call(broken, "/healthz"))
    assert (_sample("/healthz", "5xx") - before[0], _sample("/healthz", "2xx") - before[1]) == (1, 0)


def test_raw_unknown_paths_share_one_label():
    async def not_found(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    before = _sample("unmatched", "4xx")
    for i in range(3):
        asyncio.run(_call(not_found, f"/no/such/{i}"))
    assert _sample("unmatched", "4xx") - before == 3
    assert _sample("/no/such/0", "4xx") == 0
