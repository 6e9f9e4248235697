"""The floor of a process boundary on this machine: a bare round trip front → worker → front.

What the process executor's miss pays at the least for crossing to an engine worker and back,
with no swiftshot code at all: two processes, one ``multiprocessing`` pipe (a Unix socket), a
small message each way (the sizes of a miss's batch and "done" messages, pickled), the worker
blocked in ``recv``, so each crossing wakes a sleeping process. Three fronts:

* ``blocking``: the front blocks in ``recv`` too (two wake-ups of a sleeping process);
* ``asyncio``: the front is a uvloop event loop that reads the pipe with ``add_reader`` and
  resolves a future (the process executor's way: runtime/pipe_reader.py), the answer awaited
  by a coroutine: the two wake-ups plus the loop's own turn;
* ``spin``: the worker spins on ``poll(0)`` instead of sleeping (what a spinning worker would
  save of the front → worker wake-up; not what swiftshot does);
* ``frontspin``: the ``asyncio`` front, its loop kept turning (``call_soon``, so uvloop polls
  without waiting) from the send until the answer: what a front that polls instead of sleeping
  while its one batch runs would save of the worker → front wake-up.

    PYTHONPATH=src python bench/process_roundtrip.py [--n 3000] [--out FILE]

Prints p10/p50/p90 µs per round trip, less the worker's own work, for each front and each
``--work-ms`` (0: a bare echo; 4: the worker busy for about the studio engine's time, so the
front sleeps meanwhile as it does on a miss). docs/PERFORMANCE.md, "seventh pass".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

SPEC = ('{"prompt":"white sneaker on a marble plinth","negative_prompt":"","width":512,'
        '"height":512,"seed":123456,"steps":null,"guidance":null,"engine":"studio","model":null,'
        '"output_format":"webp","quality":null,"category":"adhoc","tags":[],'
        '"product_sha256":null,"ops":[],"preset":null}')
"""A miss's spec as ``ProcessExecutor.submit`` sends it (``RenderSpec.model_dump_json``)."""
BATCH = ("batch", 1, [(1, SPEC, 0, ("k" * 64, 86400.0, ("master:" + "k" * 64,)))], {}, None, 1)
"""The batch message of a lone 512² miss (runtime/process.py ``submit``)."""


def _done() -> tuple:
    """The "done" message of a lone 512² miss the worker stores itself, built by the real
    ``result_to_wire`` (plain tuples; the master and the variant as shared-memory references)."""
    try:
        from swiftshot.runtime.executor import BatchResult, ItemResult
        from swiftshot.runtime.process import result_to_wire
        from swiftshot.runtime.shm import ShmRef
    except ImportError:  # without swiftshot on the path: the same shape by hand
        return ("done", 1, ((( 1, (0, 786445, 1), None, 512, 512, None,
                               ((("webp", 80), (786445, 41000, 0)),), {}, True),),
                            0.004, 0.0004, "studio/process-0", {}, 0.002,
                            [("engine", 1, 2, None), ("encode", 3, 4, 1)]))
    item = ItemResult(1, master=ShmRef(0, 786445, 1), width=512, height=512,
                      variants={("webp", 80): ShmRef(786445, 41000)}, stored=True)
    r = BatchResult([item], 0.004, 0.0004, worker="studio/process-0", variant_s=0.002,
                    spans=[("engine", 1, 2, None), ("encode", 3, 4, 1)])
    return ("done", 1, result_to_wire(r))


DONE = _done()


def _send(conn, msg) -> None:
    """As runtime/process.py ``send_message``: the plain pickler, one ``send_bytes``."""
    conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))


def _worker(conn, spin: bool, work_ms: float) -> None:
    while True:
        if spin:
            while not conn.poll(0):
                pass
        msg = conn.recv()
        if msg == "stop":
            return
        t0 = time.perf_counter_ns()
        if work_ms:  # CPU work in the worker, as a render is (a busy loop, not a sleep)
            end = t0 + int(work_ms * 1e6)
            while time.perf_counter_ns() < end:
                pass
        _send(conn, (DONE, (time.perf_counter_ns() - t0) / 1e3))


def _blocking(conn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        _send(conn, BATCH)
        _, work_us = conn.recv()
        out.append((time.perf_counter_ns() - t0) / 1e3 - work_us)
    return out


def _asyncio(conn, n: int, gap_s: float = 0.0005, spin_s: float = 0.0) -> list[float]:
    from swiftshot.runtime.pipe_reader import PipeReader

    async def go() -> list[float]:
        loop = asyncio.get_running_loop()
        box: list[asyncio.Future] = []

        def on_msg(msg) -> None:
            box[0].set_result(msg)

        reader = PipeReader(loop, conn, on_msg, lambda: None)
        out = []
        try:
            for _ in range(n):
                fut = loop.create_future()
                box[:] = [fut]
                t0 = time.perf_counter_ns()
                _send(conn, BATCH)
                if spin_s:  # the loop kept turning (epoll with no wait) until the answer
                    until = time.monotonic() + spin_s

                    def turn(fut=fut, until=until) -> None:
                        if not fut.done() and time.monotonic() < until:
                            loop.call_soon(turn)
                    loop.call_soon(turn)
                _, work_us = await fut
                out.append((time.perf_counter_ns() - t0) / 1e3 - work_us)
                await asyncio.sleep(gap_s)  # idle between misses, as a sequential client is
        finally:
            reader.close()
        return out

    try:
        import uvloop

        return uvloop.run(go())
    except ImportError:
        return asyncio.run(go())


def run(kind: str, n: int, work_ms: float = 0.0, gap_s: float = 0.0005) -> list[float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=True)
    p = ctx.Process(target=_worker, args=(child, kind == "spin", work_ms), daemon=True)
    p.start()
    child.close()
    try:
        if kind in ("asyncio", "frontspin"):
            out = _asyncio(parent, n, gap_s, 0.05 if kind == "frontspin" else 0.0)
        else:
            out = []
            for _ in range(n):
                out += _blocking(parent, 1)
                time.sleep(gap_s)
        return out[n // 10:]
    finally:
        parent.send("stop")
        p.join(5)
        if p.is_alive():
            p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--kinds", default="blocking,asyncio,spin")
    ap.add_argument("--work-ms", default="0,4",
                    help="CPU milliseconds the worker spends per message before it answers "
                         "(0: a bare echo; 4: about the studio engine's time here); each kind "
                         "runs with each, the work taken off the round trip")
    ap.add_argument("--gap-ms", default="0.5",
                    help="idle milliseconds between round trips, comma-separated (0.5: back to "
                         "back as a sequential client; 20-100: a lone miss after idleness, when "
                         "every vCPU on the path has halted)")
    ap.add_argument("--out")
    a = ap.parse_args()
    res: dict[str, object] = {"load_before": os.getloadavg(),
                              "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                              "sizes": {"batch": len(__import__("pickle").dumps(BATCH)),
                                        "done": len(__import__("pickle").dumps(DONE))}}
    gaps = [float(g) for g in a.gap_ms.split(",")]
    for work, gap, kind in ((float(w), g, k) for w in a.work_ms.split(",") for g in gaps
                            for k in a.kinds.split(",")):
        n = a.n if not work else max(200, int(a.n * 0.5 / (work + 0.5)))
        n = max(100, int(n * 0.5 / max(gap, 0.5))) if gap > 0.5 else n
        xs = sorted(run(kind, n, work, gap / 1000))
        name = f"{kind}+{work:g}ms" + (f"+gap{gap:g}ms" if len(gaps) > 1 or gap != 0.5 else "")
        res[name] = {"p50_us": statistics.median(xs), "p10_us": xs[len(xs) // 10],
                     "p90_us": xs[len(xs) * 9 // 10], "n": len(xs), "work_ms": work,
                     "gap_ms": gap}
        print(f"{name:24s} round trip less the work: p10 {res[name]['p10_us']:7.1f}  "
              f"p50 {res[name]['p50_us']:7.1f}  p90 {res[name]['p90_us']:7.1f} µs", flush=True)
    res["load_after"] = os.getloadavg()
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
