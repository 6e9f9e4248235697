"""``swiftshot serve --executor ray``: a real server process that joins the loopback Ray cluster
and serves HTTP through replicas on it; and an unreachable cluster is a clear, quick error."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.api.conftest import start_server
from tests.conftest import free_port

pytestmark = pytest.mark.ray


def test_unreachable_cluster_is_a_clear_error_not_a_hang(tmp_path):
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "swiftshot", "serve", "--port", "0",
                        "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env={**os.environ, "SWIFTSHOT_DATA_DIR": str(tmp_path / "var")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"127.0.0.1:{port} is not reachable" in r.stderr and "ray start" in r.stderr
    assert time.monotonic() - t0 < 60


def test_ray_address_without_ray_executor_is_refused(tmp_path):
    r = subprocess.run([sys.executable, "-m", "swiftshot", "serve", "--port", "0",
                        "--ray-address", "auto"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, env={**os.environ, "SWIFTSHOT_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "--executor ray" in r.stderr


def test_serve_joins_the_cluster_and_answers_through_replicas(ray_cluster, tmp_path):
    from ray import serve

    prefix = f"cli{os.getpid()}"
    # --workers 2 is the replica count (over ray.min/max_replicas = 1)
    server = start_server(tmp_path / "var", env={
        "SWIFTSHOT_RAY__APP_PREFIX": prefix, "SWIFTSHOT_RAY__MIN_REPLICAS": "1",
        "SWIFTSHOT_RAY__MAX_REPLICAS": "1", "SWIFTSHOT_RAY__REPLICA_CPUS": "0.25"},
        args=("--executor", "ray", "--ray-address", ray_cluster.address, "--workers", "2"))
    try:
        ready = server.client.get("/readyz").json()
        assert ready["executor"] == "ray"
        (engine,) = ready["engines"]
        assert engine["name"] == "fake" and engine["workers"] == 2 and engine["warm"] == 2
        r = server.client.post("/v1/render", json={"prompt": "linen backdrop", "size": "64x64"})
        assert r.status_code == 200, r.text
        img = server.client.get(f"/i/{r.json()['key']}.png")
        assert img.status_code == 200 and img.content[:4] == b"\x89PNG"
        assert server.metric("swiftshot_worker_batches_total") >= 1
        workers = {w["name"] for w in server.client.get("/readyz").json()["engines"][0]["detail"]}
        assert any(w.startswith("replica-") and "@" in w for w in workers), workers
    finally:
        assert server.stop() == 0, server.log.read_text()
        serve.delete(f"{prefix}-fake", _blocking=False)
