"""Start a server process on a free loopback port, wait until it is ready, stop it afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from swiftshot.benchmarks.http import Client

_PIDS: dict[str, int] = {}
"""Base URL → pid of the servers started here, so a phase can read their CPU time."""


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message holds the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def swiftshot_command(port: int, engine: str) -> list[str]:
    return [sys.executable, "-m", "swiftshot", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--engine", engine]


def naive_command(port: int, engine: str, size: str) -> list[str]:
    return [sys.executable, "-m", "swiftshot.benchmarks.naive_server", "--host", "127.0.0.1",
            "--port", str(port), "--engine", engine, "--warmup-size", size]


def server_env(data_dir: Path, engine: str, size: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    w, h = size.lower().split("x")
    env = {**os.environ, "SWIFTSHOT_DATA_DIR": str(data_dir), "SWIFTSHOT_ENGINE__DEFAULT": engine,
           # Warm the shape the benchmark asks for, not the 1024² default: start-up is quicker
           # and the first measured request pays no first-call cost.
           "SWIFTSHOT_SERVER__WARMUP_SHAPES": f"[[{int(w)}, {int(h)}]]",
           "HF_HUB_OFFLINE": "1"}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], port: int, *,
            ready_timeout_s: float = 180.0) -> Iterator[str]:
    """Run ``command``; yield its base URL once ``GET /readyz`` answers 200; stop it on exit."""
    with tempfile.NamedTemporaryFile("w+b", prefix="swiftshot-bench-", suffix=".log") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            asyncio.run(_wait_ready(proc, port, ready_timeout_s, Path(log.name)))
            url = f"http://127.0.0.1:{port}"
            _PIDS[url] = proc.pid
            yield url
        finally:
            _PIDS.pop(f"http://127.0.0.1:{port}", None)
            _stop(proc)


async def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float, log: Path) -> None:
    client = Client("127.0.0.1", port)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerFailed(f"server exited with code {proc.returncode} before it was ready: "
                                   f"{_tail(log)}")
            try:
                if (await client.request("GET", "/readyz")).status == 200:
                    return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise ServerFailed(f"server not ready after {timeout_s:g} s: {_tail(log)}")
    finally:
        await client.aclose()


def _tail(log: Path, n: int = 3) -> str:
    """The last lines of the server's log, on one line (the CLI reports errors as one line)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return " | ".join(lines[-n:])[-600:] or "(empty log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # Only this process (its own session): SIGTERM, then SIGKILL if it does not drain in time.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def pid_of(url: str) -> int | None:
    return _PIDS.get(url.rstrip("/"))


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, all threads) of ``pid`` and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ...
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    if pid not in stats:
        return None
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats[p][1]
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total
