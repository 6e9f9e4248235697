"""Metrics across processes: what an engine counts inside its worker process (here the
diffusion engine's prompt-embedding cache) reaches the front's registry, which /metrics
serves, through the deltas each BatchResult carries."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.runtime.process import ProcessExecutor
from swiftshot.runtime.worker import Worker
from swiftshot.spec import RenderSpec

pytestmark = [pytest.mark.slow, pytest.mark.diffusion]


def scraped(name: str, **labels: str) -> float:
    """The value /metrics shows for ``name`` (what the front's registry exposes)."""
    text = generate_latest(telemetry.REGISTRY).decode()
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def test_a_counter_incremented_in_a_worker_process_shows_on_the_fronts_metrics(
        tmp_path, tiny_sd_dir):
    s = Settings(data_dir=tmp_path / "var")
    s.engine.diffusion.backend = "torch"
    s.engine.diffusion.dtype = "fp32"
    s.engine.diffusion.device = "cpu"
    s.server.warmup_shapes = []
    s.scheduler.max_wait_ms = 1.0
    ex = ProcessExecutor(s, "diffusion", model=str(tiny_sd_dir), workers=1)
    w = Worker(ex, s)
    await w.start()
    try:
        hits0 = scraped("swiftshot_prompt_embedding_cache_total", result="hit")
        misses0 = scraped("swiftshot_prompt_embedding_cache_total", result="miss")

        def spec(seed: int) -> RenderSpec:
            return w.info.normalized(RenderSpec(engine="diffusion", prompt="red leather bag",
                                                width=64, height=64, seed=seed, steps=1))

        first = await w.submit(spec(1), deadline_s=120)
        assert first.worker.endswith("process-0")  # it ran in the worker process
        assert scraped("swiftshot_prompt_embedding_cache_total", result="miss") == misses0 + 1
        assert scraped("swiftshot_prompt_embedding_cache_total", result="hit") == hits0
        await w.submit(spec(2), deadline_s=120)  # same prompt: the worker's cache hits
        assert scraped("swiftshot_prompt_embedding_cache_total", result="hit") == hits0 + 1
        assert scraped("swiftshot_prompt_embedding_cache_total", result="miss") == misses0 + 1
        # a gauge set in the worker: the bytes its prompt cache holds
        held = scraped("swiftshot_prompt_embedding_cache_bytes")
        assert held > 0

        # the worker dies: what it held goes with it, and /metrics stops showing it
        warm0 = scraped("swiftshot_workers_warm", engine="diffusion")
        restarts0 = scraped("swiftshot_worker_restarts_total", engine="diffusion")
        os.kill(ex._procs[0].proc.pid, signal.SIGKILL)
        end = time.monotonic() + 120
        while scraped("swiftshot_worker_restarts_total", engine="diffusion") == restarts0:
            assert time.monotonic() < end, "the worker's death went unnoticed"
            await asyncio.sleep(0.05)
        assert scraped("swiftshot_prompt_embedding_cache_bytes") == 0
        while not ex.health().ready:  # the worker comes back (warm-up: no render)
            assert time.monotonic() < end, "the worker did not come back"
            await asyncio.sleep(0.05)
        assert scraped("swiftshot_workers_warm", engine="diffusion") == warm0 == 1
        # the new worker's cache holds the prompt once more: counted once, not twice
        await w.submit(spec(3), deadline_s=120)
        assert scraped("swiftshot_prompt_embedding_cache_bytes") == held
    finally:
        await w.stop()
