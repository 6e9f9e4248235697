"""Start-up and shutdown of a real server: /readyz before warm-up, drain on SIGTERM."""

from __future__ import annotations

import signal
import threading
import time

import httpx


def test_readyz_is_503_until_warmed_up(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__WARMUP_S": "2"}, wait_ready=False)
    r = s.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "warming_up" and int(r.headers["retry-after"]) >= 1
    assert s.client.get("/healthz").status_code == 200  # alive, just not ready
    gen = s.client.post("/v1/render", json={"prompt": "too early", "size": "64x64"})
    assert gen.status_code == 503 and "retry-after" in gen.headers
    s.wait("/readyz", timeout=30)
    assert s.client.post("/v1/render", json={"prompt": "now", "size": "64x64"}).status_code == 200


def test_sigterm_drains_in_flight_requests_then_exits_0(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "1.5",
                   "SWIFTSHOT_SERVER__DRAIN_TIMEOUT_S": "20"})
    results: dict[int, httpx.Response | Exception] = {}

    def call(i: int) -> None:
        try:
            results[i] = httpx.post(f"{s.url}/v1/render", timeout=30,
                                    json={"prompt": f"in flight {i}", "size": "64x64"})
        except Exception as e:  # noqa: BLE001 - recorded and asserted on below
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    end = time.monotonic() + 20
    # all four are in the server (the /metrics request itself is the fifth)
    while s.metric("swiftshot_http_requests_in_flight") < 5 and time.monotonic() < end:
        time.sleep(0.05)
    stop_probes = threading.Event()

    def probe() -> None:
        # a load balancer keeps probing during the drain; that must not hold the drain open
        with httpx.Client(base_url=s.url, timeout=2) as c:
            while not stop_probes.is_set():
                try:
                    c.get("/readyz")
                except httpx.TransportError:
                    return
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    s.proc.send_signal(signal.SIGTERM)
    t_term = time.monotonic()
    prober.start()
    time.sleep(0.2)
    ready = s.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining"
    late = s.client.post("/v1/render", json={"prompt": "late", "size": "64x64"})
    assert late.status_code == 503 and "retry-after" in late.headers
    for t in threads:
        t.join(30)
    assert s.proc.wait(30) == 0
    stop_probes.set()
    prober.join(5)
    # exits once the requests it had are done, not at the 20 s drain timeout
    assert time.monotonic() - t_term < 15
    assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in results.values()), results
    assert len(results) == 4
