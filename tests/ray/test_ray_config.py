"""Bad Ray settings and addresses are clear errors before anything starts (no cluster here)."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from swiftshot.config import RaySettings


def test_replica_bounds_are_checked():
    with pytest.raises(ValidationError, match=r"max_replicas \(1\) must be >= ray.min_replicas \(2\)"):
        RaySettings(min_replicas=2, max_replicas=1)
    with pytest.raises(ValidationError, match="initial_replicas must lie between"):
        RaySettings(min_replicas=1, max_replicas=3, initial_replicas=5)
    with pytest.raises(ValidationError):
        RaySettings(object_store_bytes=10 * 1024**2)  # under Ray's minimum


@pytest.mark.parametrize("address", ["nonsense", "host:", ":6379", "ray://host", "host:port"])
def test_malformed_address_is_refused(address):
    pytest.importorskip("ray")
    from swiftshot.runtime.ray_executor import RayUnavailable, resolve_address

    with pytest.raises(RayUnavailable, match="HOST:PORT"):
        resolve_address(address)


def test_fixed_or_autoscaled_deployment_options():
    pytest.importorskip("ray.serve")
    from swiftshot.runtime.ray_executor import deployment_options

    fixed = deployment_options(RaySettings(min_replicas=3, max_replicas=3))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    auto = deployment_options(RaySettings(min_replicas=1, max_replicas=4, upscale_delay_s=2,
                                          downscale_delay_s=9, target_queue_per_replica=3))
    asc = auto["autoscaling_config"]
    assert "num_replicas" not in auto and asc["min_replicas"] == 1 and asc["max_replicas"] == 4
    assert asc["upscale_delay_s"] == 2 and asc["downscale_delay_s"] == 9
    assert asc["target_ongoing_requests"] == 3
    assert asc["policy"]["policy_function"].endswith("ray_executor:queue_depth_policy")
    from ray.serve.config import AutoscalingConfig

    AutoscalingConfig(**asc)  # Serve accepts it as is


@pytest.mark.parametrize("optimized", [True, False])
def test_a_driver_sets_serve_settings_before_it_joins(monkeypatch, optimized):
    """`swiftshot serve --executor ray` sets Serve's settings in its own environment before
    ray.init (a local Ray's processes inherit it): throughput-optimised Serve without its
    direct ingress, which held every stopping replica 30 s. A value the user set wins."""
    ray = pytest.importorskip("ray")
    from swiftshot.runtime import ray_executor
    from swiftshot.runtime.ray_executor import RayUnavailable, connect

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    for name in ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "RAY_SERVE_ENABLE_DIRECT_INGRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "1")
    monkeypatch.setattr(ray_executor, "_probe", lambda *a: (_ for _ in ()).throw(
        RayUnavailable("nothing listens")))  # stop before any real ray.init
    with pytest.raises(RayUnavailable):
        connect(RaySettings(address="127.0.0.1:1", throughput_optimized=optimized))
    got = {k: os.environ.get(k) for k in ("RAY_SERVE_THROUGHPUT_OPTIMIZED",
                                          "RAY_SERVE_ENABLE_DIRECT_INGRESS")}
    if optimized:
        assert got == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
    else:
        assert got == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": None, "RAY_SERVE_ENABLE_DIRECT_INGRESS": None}
    monkeypatch.setenv("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1")  # the user's own choice
    with pytest.raises(RayUnavailable):
        connect(RaySettings(address="127.0.0.1:1"))
    assert os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
