"""Bounded memory for uploads (issue 11, part 2): the budget for decoded photos, reduced-scale
decoding, and the refusal over HTTP. The RSS figures themselves are a benchmark
(bench/memory_uploads.py, docs/RELIABILITY.md), not a timed test."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from swiftshot.config import LimitsSettings
from swiftshot.inputs import load_image, peek_size
from swiftshot.runtime.memory import MemoryBudget, MemoryBusy, estimate_bytes

ROOT = Path(__file__).resolve().parents[2]


async def test_the_budget_is_never_over_committed_and_admits_in_order():
    budget = MemoryBudget(100, max_wait_s=5)
    seen: list[int] = []
    order: list[str] = []

    async def job(name: str, n: int, hold_s: float) -> None:
        async with budget.reserve(n):
            seen.append(budget.in_use)
            order.append(name)
            await asyncio.sleep(hold_s)

    await asyncio.gather(job("a", 60, 0.05), job("b", 60, 0.01), job("c", 30, 0.01),
                         job("d", 40, 0.01))
    assert max(seen) <= 100 and budget.peak <= 100
    assert order == ["a", "b", "c", "d"]  # FIFO: c would have fitted beside a, but b was first
    assert budget.in_use == 0


async def test_one_photo_bigger_than_the_budget_runs_alone():
    budget = MemoryBudget(100, max_wait_s=5)
    async with budget.reserve(500):
        assert budget.in_use == 500
        with pytest.raises(MemoryBusy):
            async with budget.reserve(1, deadline_s=0.05):
                pass
    async with budget.reserve(500):
        pass
    assert budget.in_use == 0


async def test_a_full_budget_refuses_after_the_wait_with_retry_after():
    budget = MemoryBudget(100, max_wait_s=0.1, retry_after_s=3)
    async with budget.reserve(80):
        with pytest.raises(MemoryBusy) as e:
            async with budget.reserve(50):
                pass
    assert e.value.status == 503 and e.value.retry_after_s == 3
    assert "memory budget" in e.value.message
    assert budget.in_use == 0 and not budget._waiters  # noqa: SLF001


async def test_a_cancelled_waiter_leaves_nothing_held():
    budget = MemoryBudget(100, max_wait_s=5)
    async with budget.reserve(90):
        waiter = asyncio.ensure_future(budget.reserve(50).__aenter__())
        await asyncio.sleep(0.02)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert budget.in_use == 0
    async with budget.reserve(100):
        assert budget.in_use == 100


def test_estimate_prices_the_full_decode_and_the_work_copies():
    big = estimate_bytes(7000, 7000, 3072)
    assert 7000 * 7000 * 4 < big < 7000 * 7000 * 4 * 4
    assert estimate_bytes(1000, 800, 3072) == 1000 * 800 * 4 * 8  # small: no reduction


def _photo(w: int, h: int, fmt: str) -> bytes:
    im = Image.new("RGB", (w, h), (240, 240, 238))
    ImageDraw.Draw(im).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(150, 30, 30))
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_photos_are_worked_on_at_the_work_side(fmt):
    limits = LimitsSettings(max_work_side=1024)
    data = _photo(3000, 2000, fmt)
    assert peek_size(data, limits) == (3000, 2000)
    im = load_image(data, limits)
    assert im.size == (1024, 683)
    assert load_image(data, limits, max_side=None).size == (3000, 2000)
    # the picture is the same one, only smaller: the disc is still in the middle
    assert im.getpixel((512, 341))[0] > 120 and im.getpixel((5, 5))[0] > 200


def test_a_large_jpeg_is_never_held_at_full_size(tmp_path):
    """libjpeg's DCT scaling (draft): the peak of decoding a 6144² JPEG (151 MB as full-size
    pixels) at work side 1536 stays far below the full size."""
    path = tmp_path / "big.jpg"
    path.write_bytes(_photo(6144, 6144, "JPEG"))
    probe = textwrap.dedent(f"""
        import sys
        from swiftshot.config import LimitsSettings
        from swiftshot.inputs import load_image
        def hwm():  # VmHWM: the peak RSS of this process image (ru_maxrss survives exec)
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        data = open({str(path)!r}, "rb").read()
        before = hwm()
        im = load_image(data, LimitsSettings(max_work_side=1536), max_side=None
                        if sys.argv[1] == "full" else -1)
        print(im.size[0], (hwm() - before) // 1024)
    """)
    out = {}
    for mode in ("full", "work"):
        r = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True,
                           timeout=120, env={"PYTHONPATH": str(ROOT / "src")})
        assert r.returncode == 0, r.stderr
        side, mb = map(int, r.stdout.split())
        out[mode] = (side, mb)
    assert out["full"][0] == 6144 and out["work"][0] == 1536
    assert out["full"][1] > 120, out  # the full decode really costs its 151 MB
    assert out["work"][1] < 60, out
