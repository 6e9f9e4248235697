"""The miss path's per-stage timeline (docs/PERFORMANCE.md, "Miss-path overhead", fifth and sixth passes).

Exports a commit (default HEAD) to a temporary folder, puts stamps there (``stamp.py``, by
anchors: ``CLOCK_MONOTONIC`` stamps, shared by every process, at each hand-over of a miss: the
handler, the Service, the dispatcher, the pipe sends and receipts in the front and in the
engine worker; or ``--patch`` a patch file, as the fifth and sixth passes did) and runs ``bench/miss_overhead.py`` against it with ``SWIFTSHOT_STAMPS`` set;
then prints the p50 of every gap between consecutive stamps of the same miss. Nothing is
patched in the checkout itself; the stamps never ship.

    flock /tmp/swiftshot-bench.lock env PYTHONPATH=src .venv/bin/python \\
        bench/miss_timeline/run.py [--rev HEAD] [--n 300] [--out FILE]

A patch is written against the commit that added it; on a later one that moved the stamped
lines ``git apply`` refuses, and the script says so. The anchors (seventh pass) survive such
moves; a stamp whose anchor is gone is left out and named.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SEQ = ["F0_handler", "Fa_validated", "Fb_spec", "Fc_one", "Fd_render", "Fe_keyed",
       "Ff_probed", "Fg_lead", "F1_generate", "Fh_admitted", "Fi_run_task", "F2_send",
       "F3_sent", "W0_recv", "W1_run_one", "W1a_work_from", "W1b_work_to", "W2_ran", "W2b_deltas", "W3_put",
       "F4_on_pipe_done", "F5_run_resumed", "G1_metrics", "G2_resolved", "G3_recorded",
       "G4_run_end", "G5_submit_woke", "F6_submit_back", "F7_generated", "H1_lead_done",
       "H2_caller_woke", "H3_render_back", "H4_stages", "H5_prefetcher", "F8_finish"]
"""In order; the G*/H* stamps come only with ``--patch fine-stamps-sixth.patch`` (the way back
split finer, against the sixth pass's commit): gaps are taken between the stamps present."""
WHAT = {
    ("F0_handler", "Fa_validated"): "auth, body, ImagesRequest validation",
    ("Fa_validated", "Fb_spec"): "RenderSpec built",
    ("Fb_spec", "Fc_one"): "priority, deadline, rate limit",
    ("Fc_one", "Fd_render"): "Service.render entry",
    ("Fd_render", "Fe_keyed"): "normalise + key",
    ("Fe_keyed", "Ff_probed"): "cache look-up (memory, disk probe)",
    ("Ff_probed", "Fg_lead"): "single-flight task launched (main before the sixth pass: + the deadline's task)",
    ("Fg_lead", "F1_generate"): "gate",
    ("F1_generate", "Fh_admitted"): "scheduler admission",
    ("Fh_admitted", "Fi_run_task"): "batch task launched (a loop turn)",
    ("Fh_admitted", "Fi_launch"): "to the batch's start (Worker._launch)",
    ("Fi_launch", "Fi_run_task"): "batch built, batch task's first step (a loop turn)",
    ("Fi_launch", "F2_send"): "batch built, idle worker (begin: no loop turn)",
    ("F3_sent", "Fi_run_task"): "the rest of the request's step, a loop turn, the batch task",
    ("Fi_run_task", "W0_recv"): "(the worker woke meanwhile)",
    ("Fi_run_task", "F2_send"): "Batch built, spec JSON, idle worker",
    ("F2_send", "F3_sent"): "pickle + pipe send",
    ("F3_sent", "W0_recv"): "worker wakes, reads, unpickles",
    ("W0_recv", "W1_run_one"): "to the thread that runs it",
    ("W1_run_one", "W2_ran"): "WORK: spec parse, engine, master, variant",
    ("W1_run_one", "W1a_work_from"): "spec parse, Batch, cv2 threads, to run_items' clock (hop, not work)",
    ("W1a_work_from", "W1b_work_to"): "WORK as Server-Timing counts it (infer, master, variant) + results",
    ("W1b_work_to", "W2_ran"): "back to run_one",
    ("W2_ran", "W2b_deltas"): "metric deltas",
    ("W2_ran", "W3_put"): "metric deltas (main; B: after the answer), result bytes into shared memory",
    ("W2b_deltas", "W3_put"): "result bytes into shared memory",
    ("W3_put", "F4_on_pipe_done"): "pickle, send, front wakes, reads, unpickles",
    ("F4_on_pipe_done", "F5_run_resumed"): "variant copied out, future, loop turn",
    ("F5_run_resumed", "F6_submit_back"): "dispatcher bookkeeping, back to submit",
    ("F6_submit_back", "F7_generated"): "memory puts, store tracking",
    ("F7_generated", "F8_finish"): "stages, prefetcher, back to the handler",
    ("F5_run_resumed", "G1_metrics"): "worker metrics, histograms",
    ("G1_metrics", "G2_resolved"): "results into the requests' futures",
    ("G2_resolved", "G3_recorded"): "scheduler.record",
    ("G3_recorded", "G4_run_end"): "slot handed on (when something is queued)",
    ("G4_run_end", "G5_submit_woke"): "a loop turn: the single-flight task resumes",
    ("G5_submit_woke", "F6_submit_back"): "Worker.submit's bookkeeping",
    ("F7_generated", "H1_lead_done"): "lead returns (gate, progress)",
    ("H1_lead_done", "H2_caller_woke"): "futures resolved, a loop turn: the handler resumes",
    ("H2_caller_woke", "H3_render_back"): "single-flight's bookkeeping",
    ("H3_render_back", "H4_stages"): "Server-Timing stages",
    ("H4_stages", "H5_prefetcher"): "prefetcher",
    ("H5_prefetcher", "F8_finish"): "Rendered, the route's item (image_url), back to the handler",
}


def timeline(folder: Path, skip: int = 30) -> dict[str, object]:
    """p50 of each gap between consecutive stamps of a miss, in the order they happened
    (not a fixed order: a change may move a stamp before another, as sending the batch before
    the batch task's first step did); a gap is listed when at least half the misses have it."""
    events = []
    for f in folder.glob("*.txt"):
        for line in f.read_text().splitlines():
            t, name = line.split()
            events.append((int(t), name))
    events.sort()
    misses: list[dict[str, int]] = []
    for t, name in events:
        if name == "F0_handler":
            misses.append({})
        if misses:
            misses[-1].setdefault(name, t)
    misses = misses[skip:]
    gaps: dict[tuple[str, str], list[float]] = {}
    where: dict[tuple[str, str], list[int]] = {}
    for m in misses:
        order = sorted(m, key=m.__getitem__)
        for k, (a, b) in enumerate(zip(order, order[1:], strict=False)):
            if m[b] - m[a] < 5e7:
                gaps.setdefault((a, b), []).append((m[b] - m[a]) / 1e3)
                where.setdefault((a, b), []).append(k)
    rows = [{"from": a, "to": b, "what": WHAT.get((a, b), ""), "n": len(g),
             "p50_us": statistics.median(g)}
            for (a, b), g in sorted(gaps.items(), key=lambda kv: statistics.median(where[kv[0]]))
            if len(g) >= len(misses) / 2]
    over = [(m["F8_finish"] - m["F0_handler"] - (m["W2_ran"] - m["W1_run_one"])) / 1e3
            for m in misses if all(k in m for k in ("F8_finish", "W2_ran", "W1_run_one"))]
    before = [(m["F2_send"] - m["F0_handler"]) / 1e3 for m in misses
              if "F2_send" in m and "F0_handler" in m]
    back = [(m["F8_finish"] - m["F4_on_pipe_done"]) / 1e3 for m in misses
            if "F8_finish" in m and "F4_on_pipe_done" in m]
    return {"misses": len(misses), "stages": rows,
            "handler_to_finish_less_work_p50_us": statistics.median(over) if over else None,
            "handler_to_send_p50_us": statistics.median(before) if before else None,
            "answer_to_finish_p50_us": statistics.median(back) if back else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--gap-ms", type=float, default=0.0,
                    help="idle milliseconds before each miss (miss_overhead.py --gap-ms)")
    ap.add_argument("--size", type=int, default=512,
                    help="square size rendered (miss_overhead.py --size; 64: a render short "
                         "enough that back-to-back misses find the front and worker awake)")
    ap.add_argument("--out")
    ap.add_argument("--patch", default=None,
                    help="stamps as a patch instead of by anchors (stamp.py, the default): "
                         "stamps.patch or fine-stamps-sixth.patch, against the fifth and sixth "
                         "passes' commits")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="swiftshot-timeline-") as d:
        tree, stamps = Path(d) / "tree", Path(d) / "stamps"
        tree.mkdir()
        stamps.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", a.rev], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        if a.patch is None:
            sys.path.insert(0, str(HERE))
            from stamp import stamp_tree

            left = stamp_tree(tree)
            if left:
                print(f"stamps left out (anchor not found in {a.rev}): {', '.join(left)}",
                      file=sys.stderr)
        else:
            applied = subprocess.run(["git", "apply", "-p1", str(Path(a.patch).resolve())],
                                     cwd=tree, capture_output=True, text=True)
            if applied.returncode:
                print(f"{a.patch} does not apply to {a.rev}: {applied.stderr.strip()}",
                      file=sys.stderr)
                return 2
        env = {**os.environ, "PYTHONPATH": str(tree / "src"), "SWIFTSHOT_STAMPS": str(stamps)}
        # this checkout's driver (an older commit's may lack --gap-ms), the rev's server
        subprocess.run([sys.executable, str(HERE.parent / "miss_overhead.py"), "--n",
                        str(a.n), "--gap-ms", str(a.gap_ms), "--size", str(a.size)],
                       env=env, check=True, cwd=tree)
        out = timeline(stamps)
    out["rev"] = a.rev
    out["gap_ms"] = a.gap_ms
    out["size"] = a.size
    out["load"] = os.getloadavg()
    print(f"\nper-stage p50 over {out['misses']} misses (µs):")
    for r in out["stages"]:
        print(f"  {r['from']:>16s} → {r['to']:<16s} {r['p50_us']:8.1f}  ({r['n']})  {r['what']}")
    print(f"handler → finish, less the worker's work: {out['handler_to_finish_less_work_p50_us']:.0f} µs"
          f"; handler → batch sent {out['handler_to_send_p50_us'] or float('nan'):.0f} µs"
          f"; answer read → finish {out['answer_to_finish_p50_us'] or float('nan'):.0f} µs")
    if a.out:
        from swiftshot.benchmarks.machine import machine_info

        out["machine"] = machine_info()
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
