"""Real daemons for tests, started on free loopback ports and stopped afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> int:
    """SIGTERM ``proc``, wait ``grace_s`` for it to exit, then SIGKILL it; return its exit code.

    For a plain child (not a process group: a server that runs in its own session and has
    children of its own wants ``os.killpg``, see ``benchmarks.procs``)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=grace_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProc:
    """A ``redis-server`` child process on 127.0.0.1 (no persistence, no password)."""

    port: int
    directory: Path
    proc: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, 5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def services_required() -> bool:
    """Under CI (``CI=true``) or ``make test`` (``SWIFTSHOT_REQUIRE_SERVICES=1``) a missing real
    service is a failure: the suite exists to prove the real Redis/nginx/Chromium paths."""
    return (os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
            or os.environ.get("SWIFTSHOT_REQUIRE_SERVICES", "").strip() == "1")


def missing_service(message: str) -> NoReturn:
    """``pytest.skip(message)`` on a developer's machine; ``pytest.fail`` where services are
    required (see :func:`services_required`)."""
    import pytest

    if services_required():
        pytest.fail(f"{message}; a real service may not be skipped under CI=true / make test "
                    "(install it: .ci/system-deps)", pytrace=False)
    pytest.skip(message)


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def start_redis(tmp_dir: Path, *, attempts: int = 3, timeout_s: float = 10.0,
                port: int | None = None) -> RedisProc:
    """Start redis-server on a free loopback port and wait until it answers PING.

    Calls :func:`missing_service` when the binary is absent (skip, or fail under CI); any
    other failure raises.
    ``port`` restarts a server on a known port (to test a Redis that comes back).
    """
    binary = redis_binary()
    if binary is None:
        missing_service("redis-server is not installed (Debian package redis-server)")
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(1 if port is not None else attempts):
        p = port if port is not None else free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(tmp_dir), "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", ""],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        server = RedisProc(p, tmp_dir, proc)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and server.alive():
            if _ping(p):
                return server
            time.sleep(0.02)
        # Lost a race for the port, or failed to start: collect why and try another port.
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate(timeout=5)
        last_error = (out + err).decode(errors="replace")[-500:]
    raise RuntimeError(f"redis-server did not start on 127.0.0.1: {last_error}")


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
