"""A multi-node Ray cluster on loopback for tests and benchmarks (``ray.cluster_utils.Cluster``).

Every node is a separate raylet with its own object store, on 127.0.0.1 with ports Ray picks;
this process is the driver. Ray's own start-up costs ~20 s on a 2-core machine, so tests share
one cluster (a session fixture) and deploy their applications onto it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ENV = {
    # bind every Ray process to 127.0.0.1 (Ray otherwise resolves "localhost" to the
    # machine's address, and the nodes would not find a GCS bound to loopback)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # replicas push autoscaling metrics every 0.5 s (Serve's default is 10 s)
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    # as `swiftshot serve --executor ray` runs it (ray.throughput_optimized)
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # but not Serve's direct ingress, which that turns on: we serve no HTTP through Serve,
    # and it held every stopping replica open 30 s (runtime/ray_executor.py serve_env)
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def bounded(step: Callable[[], object], timeout_s: float) -> bool:
    """Run ``step`` in a daemon thread and wait at most ``timeout_s``: True when it returned
    (or raised: logged), False when it is still running (it is left behind)."""

    def run() -> None:
        try:
            step()
        except Exception:  # noqa: BLE001 - a failed teardown step must not stop the next
            log.exception("teardown step %s failed", getattr(step, "__name__", step))

    t = threading.Thread(target=run, name="swiftshot-ray-teardown", daemon=True)
    t.start()
    t.join(timeout_s)
    return not t.is_alive()


class LoopbackCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: float = 2,
                 object_store_bytes: int = 80 * 1024**2, namespace: str = "swiftshot") -> None:
        os.environ.update(ENV)
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster

        t0 = time.monotonic()
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": cpus_per_node, "include_dashboard": False,
            "object_store_memory": object_store_bytes})
        self.address: str = self.cluster.address
        ray.init(address=self.address, namespace=namespace, logging_level="warning",
                 configure_logging=False, log_to_driver=False)
        for _ in range(nodes - 1):
            self.cluster.add_node(num_cpus=cpus_per_node, object_store_memory=object_store_bytes)
        self.cluster.wait_for_nodes()
        serve.start(proxy_location="Disabled")
        self.node_ids: list[str] = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        self.start_s = time.monotonic() - t0

    def shutdown(self, step_timeout_s: float = 20.0) -> list[str]:
        """Stop Serve, disconnect and kill every node, each step bounded: a step that does
        not return within ``step_timeout_s`` is left behind (in a daemon thread) and the next
        one runs; the last, ``cluster.shutdown()``, kills the raylets and the GCS whatever the
        others did. Returns the steps that timed out (logged too).

        Why bounded: ``ray.shutdown()`` was seen to hang on a crowded box (a benchmark's last
        step), and Serve's controller shutdown waits its own 30 s when a replica is slow to
        go, which every test session paid at its end."""
        import ray
        from ray import serve

        from swiftshot.runtime.ray_executor import no_auto_init

        no_auto_init()  # a thread Serve left behind must not boot a new Ray while we stop

        def stop_serve() -> None:
            client, _ = serve.context._check_cached_client_alive()
            if client is None:
                return
            try:
                client.shutdown(timeout_s=min(10.0, step_timeout_s))
            except RuntimeError:  # handles whose (same-loop) routers died with their loops
                pass
            serve.context._disconnect()

        late = [name for name, step in (("serve.shutdown", stop_serve),
                                        ("ray.shutdown", ray.shutdown))
                if not bounded(step, step_timeout_s)]
        self.cluster.shutdown()
        for name in late:
            log.warning("%s did not return within %g s; the cluster was killed anyway",
                        name, step_timeout_s)
        return late

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
