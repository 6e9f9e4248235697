"""Behaviour under load against real servers: refusals, hang-ups, failing batches."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest


async def _many(url: str, bodies: list[dict], timeout: float = 60, headers=None) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=300)) as c:
        return await asyncio.gather(*(c.post("/v1/render", json=b, headers=headers) for b in bodies))


def test_overload_gives_429_with_retry_after(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.3",
                   "SWIFTSHOT_SCHEDULER__MAX_BATCH_SIZE": "1",
                   "SWIFTSHOT_SCHEDULER__QUEUE_LIMIT": '{"realtime": 2, "standard": 2, "batch": 2, "prefetch": 2}'})
    bodies = [{"prompt": f"tile {i}", "size": "64x64"} for i in range(12)]
    responses = asyncio.run(_many(s.url, bodies))
    codes = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    assert refused and codes.count(200) >= 2, codes
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1
        err = r.json()["error"]
        assert err["type"] == "rate_limit_error" and err["message"]
    assert s.metric("swiftshot_rejected_total") >= len(refused)


@pytest.mark.slow
def test_abandoned_requests_free_their_capacity(serve):
    """200 clients hang up after 0.5 s; the queue empties at once and the next request gets
    through, instead of waiting behind 200 renders nobody will read."""
    # the work gate would refuse most of them at once; this is about the ones it lets in
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.4", "SWIFTSHOT_ENGINE__FAKE__STEPS": "4",
                   "SWIFTSHOT_SCHEDULER__MAX_BATCH_SIZE": "4", "SWIFTSHOT_SERVER__MAX_WORK": "400"})
    bodies = [{"prompt": f"abandoned {i}", "size": "64x64"} for i in range(200)]

    async def abandon():
        async with httpx.AsyncClient(base_url=s.url, timeout=0.5,
                                     limits=httpx.Limits(max_connections=250)) as c:
            return await asyncio.gather(*(c.post("/v1/render", json=b) for b in bodies),
                                        return_exceptions=True)

    results = asyncio.run(abandon())
    assert sum(isinstance(r, httpx.TimeoutException) for r in results) >= 190
    t0 = time.monotonic()
    # The hang-ups reach the server as disconnects it handles one by one: on a loaded box the
    # last of them may still be on their way when the client has given up. 200 renders at 4
    # per 0.4 s would keep the queue busy for 20 s; cancelled, it is empty within seconds.
    while (depth := s.metric("swiftshot_queue_depth")) > 0 and time.monotonic() - t0 < 8:
        time.sleep(0.05)
    assert depth == 0, f"{depth:g} abandoned requests still queued after 8 s"
    r = s.client.post("/v1/render", json={"prompt": "the one that stayed", "size": "64x64"})
    waited = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["x-cache"] == "miss", (r.status_code, r.text[:300])
    assert waited < 8, waited
    # the abandoned ones never reached the engine
    generated = s.metric("swiftshot_generations_total")
    assert generated <= 20, generated
    assert s.metric("swiftshot_queue_depth") == 0


def test_engine_failure_fails_only_its_batch(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__FAIL_PROMPT": "explode",
                   "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.2",
                   "SWIFTSHOT_ENGINE__DEFAULT": "fake"})
    bodies = ([{"prompt": "explode please", "size": "64x64"}]
              + [{"prompt": f"fine {i}", "size": "128x128"} for i in range(3)])
    responses = asyncio.run(_many(s.url, bodies))
    bad, *good = responses
    assert bad.status_code == 502
    assert "engine" in bad.json()["error"]["message"] and "Traceback" not in bad.text
    assert [r.status_code for r in good] == [200, 200, 200]
    # the server is fine afterwards, and the failure was not cached
    assert s.client.post("/v1/render", json={"prompt": "fine after", "size": "64x64"}).status_code == 200
    assert s.client.post("/v1/render", json=bodies[0]).status_code == 502


def test_work_past_capacity_is_refused_at_once_and_hits_still_served(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.5",
                   "SWIFTSHOT_SCHEDULER__MAX_BATCH_SIZE": "1",
                   "SWIFTSHOT_SERVER__MAX_WORK": "2", "SWIFTSHOT_SERVER__REALTIME_RESERVE": "0.5",
                   "SWIFTSHOT_AUTH__ANONYMOUS_TIER": "realtime"})
    first = s.client.post("/v1/render", json={"prompt": "popular", "size": "64x64"})
    assert first.status_code == 200
    avif = f"/i/{first.json()['key']}.avif"

    async def burst():
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as c:
            std = {"X-Priority": "standard"}
            misses = [asyncio.ensure_future(c.post("/v1/render", json={"prompt": f"m{i}", "size": "64x64"}, headers=std))
                      for i in range(6)]
            await asyncio.sleep(0.2)  # the first miss holds the only standard place now
            hit = await c.post("/v1/render", json={"prompt": "popular", "size": "64x64"},
                               headers={"X-Priority": "batch"})
            encode = await c.get(avif)  # a variant not encoded yet: work past the cache
            urgent = await c.post("/v1/render", json={"prompt": "urgent", "size": "64x64"},
                                  headers={"X-Priority": "realtime"})
            return await asyncio.gather(*misses), hit, encode, urgent

    misses, hit, encode, urgent = asyncio.run(burst())
    codes = sorted(r.status_code for r in misses)
    assert codes == [200] + [503] * 5, codes
    for r in misses:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "overloaded" and int(r.headers["retry-after"]) >= 1
    assert hit.status_code == 200 and hit.headers["x-cache"] == "memory"
    assert urgent.status_code == 200 and urgent.headers["x-cache"] == "miss", urgent.text  # the reserve
    assert encode.status_code == 503 and encode.json()["error"]["code"] == "overloaded"
    assert int(encode.headers["retry-after"]) >= 1
    assert s.metric("swiftshot_rejected_total", reason="overloaded") == 6
    assert s.client.get(avif).status_code == 200  # the places are free again
