"""Real ``swiftshot serve`` processes on loopback for the HTTP tests.

Most servers run the test-only fake engine (``SWIFTSHOT_ENGINE__DEFAULT=fake``) so inference
time and failures can be set per test; one test drives the studio engine end to end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        self.client = httpx.Client(base_url=url, timeout=30)

    def wait(self, path: str = "/readyz", timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.client.get(path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} not 200 within {timeout}s:\n{self.log.read_text()}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        text = self.client.get("/metrics").text
        total = 0.0
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(data_dir: Path, *, engine: str = "fake", env: dict[str, str] | None = None,
                 wait_ready: bool = True, args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "SWIFTSHOT_DATA_DIR": str(data_dir),
                "SWIFTSHOT_ENGINE__DEFAULT": engine,
                "SWIFTSHOT_SERVER__WARMUP_SHAPES": "[[64, 64]]", "HF_HUB_OFFLINE": "1",
                **(env or {})}
    full_env.pop("SWIFTSHOT_CONFIG", None)
    log = data_dir / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftshot", "serve", "--port", str(port), *args],
        env=full_env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=data_dir)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        server.wait("/readyz" if wait_ready else "/healthz")
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@pytest.fixture
def serve(tmp_path):
    """Factory: ``serve(env={...})`` starts a server; all are stopped at the end."""
    started: list[Server] = []

    def _start(data_dir: Path | None = None, **kwargs) -> Server:
        s = start_server(data_dir or tmp_path / f"var{len(started)}", **kwargs)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One fake-engine server for tests that need no settings of their own (they compare
    metrics before and after, since others use it too)."""
    s = start_server(tmp_path_factory.mktemp("shared") / "var",
                     env={"SWIFTSHOT_SERVER__MAX_BODY_BYTES": "65536"})
    yield s
    s.stop()


@pytest.fixture(scope="session")
def studio_server(tmp_path_factory):
    """One studio-engine server (the real default engine) shared by the delivery tests."""
    s = start_server(tmp_path_factory.mktemp("studio") / "var", engine="studio")
    yield s
    s.stop()
