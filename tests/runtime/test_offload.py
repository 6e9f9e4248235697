"""runtime/offload.py: CPU work in processes of their own (real spawned children)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from swiftshot.config import Settings
from swiftshot.runtime.offload import CpuProcesses, processes_for
from swiftshot.runtime.worker import Rejected


def test_default_is_no_processes_inline_and_one_per_core_otherwise(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.engine.executor == "inline" and processes_for(s) == 0
    assert not CpuProcesses(s).enabled
    s.engine.executor = "process"
    assert processes_for(s) == max(1, min(4, os.cpu_count() or 1))
    s.server.cpu_processes = 0
    assert processes_for(s) == 0


async def test_runs_in_a_child_and_a_child_killed_mid_call_is_a_503_then_it_recovers(tmp_path):
    cpu = CpuProcesses(Settings(data_dir=tmp_path), processes=1)
    try:
        cpu.start()
        child = await cpu.run(os.getpid)
        assert child != os.getpid()
        call = asyncio.ensure_future(cpu.run(time.sleep, 30))
        await asyncio.sleep(0.5)  # the child is in its sleep
        os.kill(child, signal.SIGKILL)
        with pytest.raises(Rejected) as info:
            await asyncio.wait_for(call, 60)
        assert info.value.status == 503 and info.value.reason == "worker_lost"
        assert info.value.retry_after_s > 0 and cpu.replaced == 1
        assert await cpu.run(os.getpid) not in (child, os.getpid())  # a new pool serves
    finally:
        cpu.shutdown()
    assert cpu._pool is None


async def test_no_processes_runs_in_a_thread(tmp_path):
    cpu = CpuProcesses(Settings(data_dir=tmp_path), processes=0)
    assert not cpu.enabled and await cpu.run(os.getpid) == os.getpid()
    cpu.shutdown()


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


async def test_children_run_below_the_front_by_cpu_nice(tmp_path):
    # server.cpu_nice: the upload route's cutouts yield the cores to the front and to realtime
    # renders when they are short, as lower-class renders do (engine.lower_class_nice)
    by = min(4, 19 - _nice())
    if by <= 0:
        pytest.skip("this test process already runs at nice 19: nothing lower to set")
    lowered = Settings(data_dir=tmp_path)
    lowered.server.cpu_nice = by
    level = Settings(data_dir=tmp_path)
    level.server.cpu_nice = 0
    for settings, want in ((lowered, _nice() + by), (level, _nice())):
        cpu = CpuProcesses(settings, processes=1)
        try:
            assert await cpu.run(_nice) == want
        finally:
            cpu.shutdown()


def test_cpu_nice_is_off_by_default(tmp_path):
    # measured on a quiet box (2026-12-06): 5 bought no clear realtime gain at 1.5x and cost
    # the uploads ~60 ms of p95 under load, so the upload processes keep the front's priority
    s = Settings(data_dir=tmp_path)
    assert s.server.cpu_nice == 0 and s.engine.lower_class_nice == 5
