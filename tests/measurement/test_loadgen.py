"""The open-loop runner (fake clock), the loopback-only rule, and the raw HTTP client."""

from __future__ import annotations

import asyncio

import pytest

from swiftshot.benchmarks.http import Client, NotLoopback, loopback_target
from swiftshot.benchmarks.loadgen import run_open_loop
from swiftshot.benchmarks.mix import Mix, MixConfig


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, t: float) -> None:
        # Let tasks that are ready run at the current time first, as a real sleep would.
        for _ in range(3):
            await asyncio.sleep(0)
        self.t = max(self.t, t)


async def test_open_loop_sends_on_schedule_even_when_the_server_never_answers():
    clock = FakeClock()
    never = asyncio.Event()
    mix = Mix(MixConfig(seed=1))
    schedule = [0.0, 0.5, 0.6, 2.0, 7.25]
    requests = [mix.next() for _ in schedule]
    sent_at: list[float] = []

    async def send(req, out, record):
        out.sent = clock.now()
        sent_at.append(out.sent)
        await never.wait()  # a server that hangs: a closed loop would stop after the first

    outs = await run_open_loop(schedule, requests, send, clock=clock, drain_s=0.05)
    assert sent_at == [100.0 + t for t in schedule]
    assert [o.scheduled for o in outs] == sent_at
    assert all(o.status == 0 and o.error == "unfinished" for o in outs)
    assert [o.priority for o in outs] == [r.priority for r in requests]


async def test_open_loop_records_answers_follow_ups_and_failures():
    clock = FakeClock()
    mix = Mix(MixConfig(seed=2))
    schedule = [0.0, 1.0, 2.0]
    requests = [mix.next() for _ in schedule]

    async def send(req, out, record):
        out.sent = clock.now()
        if out.scheduled == 101.0:
            raise ConnectionRefusedError("refused")
        out.status, out.done = 200, clock.now() + 0.25
        from swiftshot.benchmarks.stats import Outcome
        record(Outcome(kind="fetch", priority=req.priority, scheduled=out.done, status=200))

    outs = await run_open_loop(schedule, requests, send, clock=clock, drain_s=1)
    gens = [o for o in outs if o.kind != "fetch"]
    assert [o.status for o in gens] == [200, 0, 200]
    assert "refused" in gens[1].error and gens[1].done == gens[1].done  # stamped, not NaN
    assert sum(o.kind == "fetch" for o in outs) == 2
    assert gens[0].latency_ms == pytest.approx(250)


async def test_open_loop_times_out_slow_requests():
    async def send(req, out, record):
        await asyncio.sleep(10)

    mix = Mix(MixConfig())
    outs = await run_open_loop([0.0], [mix.next()], send, timeout_s=0.05, drain_s=2)
    assert outs[0].status == 0 and "timeout" in outs[0].error


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9", "http://[::1]:80",
                                 "http://127.0.0.2:8000/"])
def test_loopback_targets_are_accepted(url):
    host, port = loopback_target(url)
    assert port in (8000, 9, 80)


@pytest.mark.parametrize("url, message", [
    ("http://10.0.0.1:8000", "only targets loopback"),
    ("http://8.8.8.8", "only targets loopback"),
    ("https://127.0.0.1:8000", "http:// URL"),
    ("127.0.0.1:8000", "http:// URL"),
    ("http://no-such-host.invalid", "cannot resolve"),
])
def test_other_targets_are_refused(url, message):
    with pytest.raises(NotLoopback, match=message):
        loopback_target(url)


def test_cli_refuses_a_remote_target_with_exit_code_2(capsys):
    from swiftshot.cli import main

    assert main(["bench", "serve", "--url", "http://192.0.2.1:8000", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("swiftshot: error:") and "loopback" in err and "\n" not in err


@pytest.mark.parametrize("argv, message", [
    (["--slo-ms", "fast"], "--slo-ms"),
    (["--priority-mix", "vip=1"], "vip"),
    (["--prompts", "0"], "--prompts"),
    (["--load", "0"], "--load"),
])
def test_cli_bad_arguments_are_named(capsys, argv, message):
    from swiftshot.cli import main

    assert main(["bench", "serve", "--url", "http://127.0.0.1:9", *argv]) == 2
    assert message in capsys.readouterr().err


async def _serve_once(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_client_reads_chunked_and_sized_bodies_over_one_connection():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"/chunked" in head:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Cache: miss\r\n\r\n"
                             b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
            else:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body.upper()))
            await writer.drain()

    server, port = await _serve_once(handler)
    client = Client("127.0.0.1", port)
    try:
        r1 = await client.request("GET", "/chunked")
        r2 = await client.request("POST", "/echo", {"Content-Type": "text/plain"}, b"abc")
        r3 = await client.request("GET", "/chunked")
    finally:
        await client.aclose()
        server.close()
    assert (r1.status, r1.body, r1.headers["x-cache"]) == (200, b"hello world", "miss")
    assert (r2.status, r2.body) == (201, b"ABC")
    assert r3.body == b"hello world"
    assert connections == 1  # kept alive


async def test_client_retries_once_when_an_idle_connection_was_closed():
    async def handler(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # closes the kept-alive connection behind the client's back

    server, port = await _serve_once(handler)
    client = Client("127.0.0.1", port)
    try:
        assert (await client.request("GET", "/")).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await client.request("GET", "/")).body == b"ok"
    finally:
        await client.aclose()
        server.close()


def test_cpu_seconds_counts_a_process_and_its_children():
    import subprocess
    import sys

    from swiftshot.benchmarks.procs import cpu_seconds

    # A parent that sleeps while its child burns CPU: the child's time must be counted.
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time\\nt=time.process_time()\\nwhile time.process_time()-t<0.6: pass\\n"
            "time.sleep(5)'])")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 30
        used = 0.0
        while time.monotonic() < deadline and used < 0.5:
            time.sleep(0.1)
            used = cpu_seconds(proc.pid) or 0.0
        assert used >= 0.5
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGKILL)  # its own session: the child goes too
        proc.wait()
    assert cpu_seconds(proc.pid) is None
