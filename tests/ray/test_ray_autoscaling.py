"""Serve's autoscaler, driven by the front's queue depth through queue_depth_policy: replicas
are added while requests queue in the front and removed when it is idle (short delays)."""

from __future__ import annotations

import asyncio
import time

import pytest

from swiftshot.runtime.ray_executor import demand, queue_depth_policy
from tests.ray.test_ray_executor import delete_app, ray_settings, spec

pytestmark = pytest.mark.ray


class Ctx:  # the fields of ray.serve.config.AutoscalingContext the policy reads
    def __init__(self, metrics, target):
        self.aggregated_metrics = metrics
        self.config = type("C", (), {"target_ongoing_requests": target})()


def test_policy_counts_queued_and_running_but_not_prefetch():
    per = {"r1": 3.0, "r2": 5.0}  # replicas report the same global figure, one fresher
    m = {"queued_realtime": per, "queued_standard": {"r1": 2.0}, "queued_prefetch": {"r1": 50.0},
         "running": {"r1": 1.0}}
    n, state = queue_depth_policy(Ctx(m, 2.0))
    assert state["demand"] == 5 + 2 + 1 and n == 4
    assert queue_depth_policy(Ctx({"queued_prefetch": {"r": 100.0}}, 2.0))[0] == 0
    assert queue_depth_policy(Ctx({}, 2.0))[0] == 0
    assert demand({"queued_batch": 3, "running": 1}) == 4


async def test_replicas_follow_the_front_queue_up_and_down(ray_cluster, tmp_path):
    from swiftshot.runtime.ray_executor import RayExecutor
    from swiftshot.runtime.worker import Worker

    s = ray_settings(tmp_path, replicas=1, delay_s=0.4, min_replicas=1, max_replicas=3,
                     target_queue_per_replica=2.0, upscale_delay_s=0.5, downscale_delay_s=2.0,
                     look_back_period_s=1.0)
    s.scheduler.max_batch_size = 1
    ex = RayExecutor(s)
    worker = Worker(ex, s)
    ex.depth_source = worker.depth
    await worker.start()
    try:
        assert ex._replicas.get("RUNNING") == 1

        def queue(n: int, name: str) -> list[asyncio.Future]:
            return [asyncio.ensure_future(worker.submit(spec(f"{name} {len(jobs) + i}"),
                                                        deadline_s=120)) for i in range(n)]

        jobs: list[asyncio.Future] = []
        jobs += queue(40, "queued")
        peak, t0 = 1, time.monotonic()
        while time.monotonic() - t0 < 40 and peak < 3:
            await asyncio.sleep(0.25)
            peak = max(peak, ex._replicas.get("RUNNING", 0))
            # Kept queued until the replicas are up: on a loaded box starting two replicas
            # took longer than one replica needed for the first 40 (0.4 s each), and the
            # queue ran dry before they could take any (fast14's full run: 1 replica served all)
            if sum(not j.done() for j in jobs) < 12:
                jobs += queue(12, "kept queued")
        assert peak == 3, f"replicas did not scale up to 3 (peak {peak}); {ex._replicas}"
        assert ex.slots == 3
        after = queue(12, "after the scale-up")  # the replicas up now take work
        results = await asyncio.wait_for(asyncio.gather(*jobs), 120)
        later = await asyncio.wait_for(asyncio.gather(*after), 120)
        assert len({r.worker for r in later}) >= 2, [r.worker for r in later]
        assert len({r.worker for r in results + later}) >= 2  # the new replicas took work
        # idle now: back to min_replicas after the downscale delay
        t0 = time.monotonic()
        while time.monotonic() - t0 < 40 and ex._replicas.get("RUNNING", 0) > 1:
            await asyncio.sleep(0.25)
        assert ex._replicas.get("RUNNING") == 1, ex._replicas  # (others may still be STOPPING)
        assert ex.slots == 1 and ex.health().warm == 1
    finally:
        await worker.stop()
        await delete_app(ex.app_name)
