"""Shared fixtures. Servers and daemons used by tests are real processes on loopback."""

from __future__ import annotations

import os
import socket

import pytest

# Servers the tests start run their engine inline (a thread) unless a test asks for worker
# processes (SWIFTSHOT_ENGINE__EXECUTOR=process): `swiftshot serve`'s own default is the process
# executor, which would spawn a worker per core for every server of the suite.
os.environ.setdefault("SWIFTSHOT_ENGINE__EXECUTOR", "inline")

# Servers the tests spawn run in a temporary working directory: a relative PYTHONPATH entry
# (`PYTHONPATH=src pytest`, run from a worktree) would resolve to nothing there, and the server
# and its workers would silently import whatever swiftshot is installed instead of the code
# under test. Made absolute here, once, before any test spawns anything.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        os.path.abspath(p) if p else p for p in os.environ["PYTHONPATH"].split(os.pathsep))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _openvino_cache_dir(tmp_path_factory):
    """Converted OpenVINO models go to one session folder (never the repo's var/), so a tiny
    pipeline is converted once per run whichever test loads it first."""
    import os

    key = "SWIFTSHOT_ENGINE__DIFFUSION__OPENVINO_DIR"
    if key not in os.environ:
        os.environ[key] = str(tmp_path_factory.mktemp("openvino"))
    yield


@pytest.fixture
def settings(tmp_path):
    """Settings whose files all live in the test's tmp folder."""
    from swiftshot.config import Settings

    return Settings(data_dir=tmp_path / "var")


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A tiny random StableDiffusionPipeline folder, built offline once per test run."""
    pytest.importorskip("diffusers")
    from swiftshot.testing.tiny_pipeline import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """A tiny random StableDiffusionXLPipeline folder, built once per run (torch and OpenVINO
    tests share it, and so share its converted IR)."""
    pytest.importorskip("diffusers")
    from swiftshot.testing.tiny_pipeline import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def tiny_taesd_dir(tmp_path_factory):
    """A tiny random AutoencoderTiny folder that decodes tiny_sd_dir's latents."""
    pytest.importorskip("diffusers")
    from swiftshot.testing.tiny_pipeline import build_tiny_taesd

    return build_tiny_taesd(tmp_path_factory.mktemp("tiny-taesd"))


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on a free loopback port (skips only when the binary is absent)."""
    from swiftshot.testing.services import start_redis

    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server):
    """URL of a fresh real redis-server, e.g. redis://127.0.0.1:PORT/0."""
    return redis_server.url


@pytest.fixture(scope="session")
def ray_cluster():
    """A real two-node Ray cluster on loopback (``ray.cluster_utils.Cluster``, 2 logical CPUs
    per node), this process its driver, Serve started without an HTTP proxy. Session-wide: the
    Ray tests and the executor suite's ``ray`` case deploy their applications onto it."""
    pytest.importorskip("ray.serve")
    from swiftshot.testing.ray_cluster import LoopbackCluster

    cluster = LoopbackCluster(nodes=2, cpus_per_node=2)
    try:
        yield cluster
    finally:
        cluster.shutdown()
