"""The cache seen through HTTP: memory, disk (across a restart), Redis (across servers), and
single-flight (identical concurrent requests → one generation)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

BODY = {"prompt": "grey linen, top light", "size": "64x64", "seed": 3}


def _post(server, body=BODY):
    r = server.client.post("/v1/render", json=body)
    assert r.status_code == 200, r.text
    return r


def test_second_identical_request_hits_memory(shared_server):
    s = shared_server
    generated = s.metric("swiftshot_generations_total")
    body = {**BODY, "prompt": "grey linen, top light (memory test)"}
    first, second = _post(s, body), _post(s, body)
    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "memory"
    assert first.json()["key"] == second.json()["key"]
    # same meaning, different spelling: whitespace and size vs width/height
    third = _post(s, {"prompt": "  grey   linen, top light   (memory test) ", "width": 64,
                      "height": 64, "seed": 3})
    assert third.headers["x-cache"] == "memory"
    assert s.metric("swiftshot_generations_total") == generated + 1
    timing = second.headers["server-timing"]
    assert "cache;dur=" in timing and "total;dur=" in timing and "infer" not in timing
    assert all(st in first.headers["server-timing"] for st in ("cache", "queue", "infer", "total"))


def test_restart_serves_from_disk(serve, tmp_path):
    data = tmp_path / "shared-var"
    a = serve(data)
    key = _post(a).json()["key"]
    assert a.stop() == 0
    b = serve(data)
    r = _post(b)
    assert r.headers["x-cache"] == "disk" and r.json()["key"] == key
    assert b.metric("swiftshot_generations_total") == 0
    img = b.client.get(f"/i/{key}.png")
    assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.redis
def test_two_servers_share_redis(serve, redis_url):
    env = {"SWIFTSHOT_REDIS_URL": redis_url}
    a = serve(env=env)
    b = serve(env=env)  # its own data dir: nothing on disk
    key = _post(a).json()["key"]
    r = _post(b)
    assert r.headers["x-cache"] == "redis" and r.json()["key"] == key
    assert b.metric("swiftshot_generations_total") == 0
    assert _post(b).headers["x-cache"] == "memory"  # promoted


def test_fifty_identical_concurrent_requests_make_one_generation(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.5"})

    async def burst():
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            return await asyncio.gather(*(c.post("/v1/images/generations", json={
                "prompt": "black slate", "size": "64x64", "response_format": "b64_json"})
                for _ in range(50)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:2]
    caches = sorted(r.headers["x-cache"] for r in responses)
    assert caches.count("miss") == 1 and set(caches) <= {"miss", "coalesced", "memory"}
    assert len({r.json()["data"][0]["b64_json"] for r in responses}) == 1
    assert s.metric("swiftshot_generations_total") == 1
    assert s.metric("swiftshot_coalesced_total") == caches.count("coalesced")
