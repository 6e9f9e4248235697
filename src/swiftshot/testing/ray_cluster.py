"""A multi-node Ray cluster on loopback for tests and benchmarks (``ray.cluster_utils.Cluster``).

Every node is a separate raylet with its own object store, on 127.0.0.1 with ports Ray picks;
this process is the driver. Ray's own start-up costs ~20 s on a 2-core machine, so tests share
one cluster (a session fixture) and deploy their applications onto it.
"""

from __future__ import annotations

import os
import time
from typing import Any

ENV = {
    # bind every Ray process to 127.0.0.1 (Ray otherwise resolves "localhost" to the
    # machine's address, and the nodes would not find a GCS bound to loopback)
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # replicas push autoscaling metrics every 0.5 s (Serve's default is 10 s)
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    # as `swiftshot serve --executor ray` runs it (ray.throughput_optimized)
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


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

    def shutdown(self) -> None:
        import ray
        from ray import serve

        try:
            serve.shutdown()
        except RuntimeError:  # handles whose (same-loop) routers died with their event loops
            pass
        finally:
            ray.shutdown()
            self.cluster.shutdown()

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
