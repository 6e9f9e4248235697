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


def _environ_of(pid: int) -> dict[str, str]:
    raw = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw if b"=" in e)


def test_serve_reexecutes_once_with_malloc_on_huge_pages(serve):
    """server.malloc_huge_pages on: the command re-executes itself (same PID) with glibc's
    hugetlb tunable, which only applies from a process's start; off (the default), the
    environment is left as it was."""
    import os

    import pytest

    from swiftshot.cli.serve import huge_pages_env

    if huge_pages_env({}) is None:
        pytest.skip("not Linux with glibc >= 2.35: the setting does nothing here")
    on = serve(env={"SWIFTSHOT_SERVER__MALLOC_HUGE_PAGES": "true"})
    assert on.client.get("/readyz").status_code == 200  # the process Popen started serves
    assert "glibc.malloc.hugetlb=1" in _environ_of(on.proc.pid).get("GLIBC_TUNABLES", "")
    off = serve()  # the default: off
    assert off.client.get("/readyz").status_code == 200
    assert _environ_of(off.proc.pid).get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES")


def test_huge_pages_env_keeps_other_tunables_and_never_loops():
    import pytest

    from swiftshot.cli.serve import huge_pages_env

    if huge_pages_env({}) is None:
        pytest.skip("not Linux with glibc >= 2.35")
    env = huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
    assert env == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "X": "1"}
    assert huge_pages_env(env) is None  # set already: no second exec
    assert huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # the user's word
