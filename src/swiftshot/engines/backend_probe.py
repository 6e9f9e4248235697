"""``backend = auto`` for the diffusion engine: a start-up probe instead of a fixed rule.

Where more than one backend can run the model here (on a CPU with OpenVINO installed and a
Stable Diffusion 1/2/SDXL pipeline: torch and openvino), the first load times each candidate on
the model's real shape (its default size, the configured steps / guidance / dtype / tiny VAE):
load, one warm-up render, then timed renders with new prompts until ``probe_s`` seconds of
rendering are spent (at least one, at most three). The backend with the fewest CPU-seconds per
render wins (CPU time is what a shared or loaded machine cannot distort much; on an idle machine
it is the cores times the wall time for both backends here). A candidate that fails to load or
render is skipped with the reason; if all fail, the engine fails to load with their reasons.

The decision is a small JSON under ``<openvino_dir>/probe/`` (the data directory), keyed by the
model's fingerprint, the settings that change the work (dtype, tiny VAE, int8 / quantize,
steps, guidance), the machine (CPU model, cores, its bf16 / VNNI / AMX flags) and the versions
of torch, diffusers, OpenVINO and the engine: later starts read it (no probe), and
``swiftshot engines`` prints it as the reason, with the figures measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROBE_REVISION = "1"
MAX_TIMED = 3


def machine_identity() -> dict[str, Any]:
    cpu, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": sorted(f for f in wanted if f in flags)}


def versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "diffusers", "openvino"):
        try:
            m = __import__(mod)
            out[mod] = m.get_version() if mod == "openvino" else m.__version__
        except Exception:  # not installed / broken: part of the key all the same
            out[mod] = "missing"
    return out


def probe_key(model_id: str, work: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, what it hashes): the model, the work settings, the machine and the versions."""
    ident = {"revision": PROBE_REVISION, "model": model_id, "work": work,
             "machine": machine_identity(), "versions": versions()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16], ident


def decision_path(root: Path, key: str) -> Path:
    return Path(root) / "probe" / f"{key}.json"


def read_decision(root: Path, key: str) -> dict[str, Any] | None:
    path = decision_path(root, key)
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if d.get("choice") else None


@contextlib.contextmanager
def probe_lock(root: Path, key: str) -> Iterator[None]:
    """One probe per key at a time across processes (a second start waits and reads it)."""
    path = decision_path(root, key).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cpu_s() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def measure(engine: Any, make_spec: Callable[[str, int], Any], budget_s: float) -> dict[str, Any]:
    """Load ``engine``, one warm-up render, then timed renders (new prompts) within budget."""
    t, c = time.perf_counter(), _cpu_s()
    engine.load()
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - t, 2),
                           "load_cpu_s": round(_cpu_s() - c, 2)}
    t = time.perf_counter()
    engine.run([make_spec("probe warm-up", 0)])
    out["first_render_s"] = round(time.perf_counter() - t, 3)
    walls: list[float] = []
    cpus: list[float] = []
    spent = 0.0
    while len(walls) < MAX_TIMED and (not walls or spent < budget_s):
        t, c = time.perf_counter(), _cpu_s()
        engine.run([make_spec(f"probe render {len(walls) + 1}", len(walls) + 1)])
        walls.append(time.perf_counter() - t)
        cpus.append(_cpu_s() - c)
        spent += walls[-1]
    out.update(render_s=round(statistics.median(walls), 3),
               render_cpu_s=round(statistics.median(cpus), 3),
               all_render_s=[round(w, 3) for w in walls], all_cpu_s=[round(x, 3) for x in cpus])
    return out


def run_probe(candidates: list[str], make_engine: Callable[[str], Any],
              make_spec: Callable[[str, int], Any], budget_s: float,
              keep: Callable[[str, Any], None] | None = None) -> dict[str, Any]:
    """Measure each candidate in turn (one loaded at a time); the winner's engine is handed to
    ``keep`` (the caller may adopt its loaded pipeline), the others are dropped."""
    import gc

    measured: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    best: tuple[float, str, Any] | None = None
    for name in candidates:
        try:
            engine = make_engine(name)
            measured[name] = measure(engine, make_spec, budget_s)
        except Exception as e:  # a backend that cannot run this model here is skipped
            skipped[name] = f"{type(e).__name__}: {e}"[:500]
            measured.pop(name, None)
            engine = None
            gc.collect()
            continue
        cost = measured[name]["render_cpu_s"]
        if best is None or cost < best[0]:
            best = (cost, name, engine)  # the previous best is dropped
        engine = None
        gc.collect()
    if best is None:
        return {"choice": None, "measured": measured, "skipped": skipped}
    if keep is not None:
        keep(best[1], best[2])
    return {"choice": best[1], "measured": measured, "skipped": skipped}


def reason(decision: dict[str, Any], cached: bool) -> str:
    m, sk = decision.get("measured", {}), decision.get("skipped", {})
    parts = [f"{b} {v['render_s']} s / {v['render_cpu_s']} CPU-s per render"
             for b, v in m.items()]
    parts += [f"{b} skipped ({why[:160]})" for b, why in sk.items()]
    when = decision.get("date", "?")
    size = decision.get("size")
    return (f"auto: probe {'cached from' if cached else 'run at'} {when} on {size}x{size}, "
            f"{decision.get('steps')} step(s): " + "; ".join(parts)
            + f" → {decision['choice']} (fewest CPU-s)")


def write_decision(root: Path, key: str, decision: dict[str, Any]) -> Path:
    path = decision_path(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(decision, indent=1, default=str))
    tmp.replace(path)
    return path


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
