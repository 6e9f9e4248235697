"""Time stable-diffusion.cpp (built by bench/sdcpp.sh, outside the repo) on our SD 2.1-architecture
random-weight model: its HTTP server (sd-server, loopback, /sdapi/v1/txt2img) end to end and its
CLI (sd-cli, one process per image, model load included), 512², 1 step, euler, cfg 1 (no
unconditional pass, like our guidance 0), TAESD final decoder, per weight type (f16, q8_0).

Per configuration: one warm-up request dropped, then N requests with new prompts and seeds;
client wall per request (median), the server process's CPU-s per request (user + system from
/proc: the load-resistant figure on a shared box) and sd.cpp's own stage times parsed from its
log (text encoder, sampling, decode). Writes JSON with the machine and load averages.

    python bench/sdcpp_bench.py --bin /work/sdcpp-build/build/bin --model DIR --out bench/results/sdcpp.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from swiftshot.testing.services import stop_process

CLK = os.sysconf("SC_CLK_TCK")
WORDS = ("mug", "bottle", "sneaker", "lamp", "watch", "chair", "plant", "bag", "marble", "linen",
         "studio", "sunset", "concrete", "oak", "soft", "light")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """user + system seconds of ``pid`` and its reaped children."""
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / CLK


def _prompt(i: int) -> str:
    import random

    r = random.Random(i)
    return "product photo of a " + " ".join(r.choice(WORDS) for _ in range(6))


def _stages(log: str) -> dict[str, list[float]]:
    pats = {"text_encoder_s": r"get_learned_condition completed, taking ([\d.]+)s",
            "sampling_s": r"sampling completed, taking ([\d.]+)s",
            "decode_s": r"decode_first_stage completed, taking ([\d.]+)s",
            "generate_s": r"generate_image completed in ([\d.]+)s",
            "load_s": r"loading tensors completed, taking ([\d.]+)s"}
    return {k: [float(x) for x in re.findall(p, log)] for k, p in pats.items()}


def _med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def common_args(args: argparse.Namespace, wtype: str) -> list[str]:
    a = ["-t", str(args.threads), "--type", wtype, "--steps", "1", "--cfg-scale", "1",
         "--sampling-method", "euler", "-W", str(args.size), "-H", str(args.size)]
    a += ["-m", str(args.model_path)]
    if args.taesd:
        a += ["--taesd", str(args.taesd)]
    return a + args.extra


def server_phase(args: argparse.Namespace, wtype: str, work: Path) -> dict[str, Any]:
    port = _free_port()
    log = work / f"server-{wtype}.log"
    cmd = [str(args.bin / "sd-server"), *common_args(args, wtype), "--listen-ip", "127.0.0.1",
           "--listen-port", str(port)]
    row: dict[str, Any] = {"path": "sd-server (HTTP, /sdapi/v1/txt2img)", "wtype": wtype,
                           "cmd": " ".join(cmd), "load_before": _load()}
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sd-server exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(base + "/sdapi/v1/sd-models", timeout=5).read()
                break
            except OSError:
                if time.perf_counter() - t0 > args.timeout:
                    raise RuntimeError(f"sd-server not listening after {args.timeout} s") from None
                time.sleep(0.5)
        row["ready_s"] = round(time.perf_counter() - t0, 2)
        row["ready_cpu_s"] = round(_cpu_s(proc.pid), 2)

        def render(i: int) -> tuple[float, float, bytes]:
            body = json.dumps({"prompt": _prompt(i), "width": args.size, "height": args.size,
                               "steps": 1, "cfg_scale": 1.0, "seed": 1000 + i,
                               "sampler_name": "euler", "batch_size": 1}).encode()
            req = urllib.request.Request(base + "/sdapi/v1/txt2img", data=body,
                                         headers={"Content-Type": "application/json"})
            c = _cpu_s(proc.pid)
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=args.timeout) as r:
                out = json.loads(r.read())
            wall = time.perf_counter() - t
            png = base64.b64decode(out["images"][0])
            return wall, _cpu_s(proc.pid) - c, png

        w, c, png = render(0)
        row["warmup_s"] = round(w, 3)
        walls, cpus = [], []
        for i in range(1, args.n + 1):
            w, c, png = render(i)
            walls.append(w)
            cpus.append(c)
        (work / f"server-{wtype}.png").write_bytes(png)
        row.update(wall_s=_med(walls), cpu_s=_med(cpus), all_wall_s=[round(x, 3) for x in walls],
                   all_cpu_s=[round(x, 3) for x in cpus], png_bytes=len(png),
                   png_is_png=png[:8] == b"\x89PNG\r\n\x1a\n", load_after=_load())
    finally:
        stop_process(proc, 30)
    st = _stages(log.read_text(errors="replace"))
    row["stages_median_s"] = {k: _med(v[1:] if k != "load_s" else v) for k, v in st.items()}
    return row


def cli_phase(args: argparse.Namespace, wtype: str, work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"path": "sd-cli (one process per image, load included)",
                           "wtype": wtype, "load_before": _load()}
    walls, cpus, stages = [], [], []
    for i in range(args.n_cli + 1):  # the first run warms the page cache; dropped
        out = work / f"cli-{wtype}.png"
        cmd = [str(args.bin / "sd-cli"), *common_args(args, wtype), "-p", _prompt(100 + i),
               "-s", str(2000 + i), "-o", str(out)]
        t = time.perf_counter()
        r0 = os.times()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        r1 = os.times()
        if p.returncode != 0:
            raise RuntimeError(f"sd-cli exited {p.returncode}: {(p.stdout + p.stderr)[-3000:]}")
        if i == 0:
            row["cmd"] = " ".join(cmd)
            continue
        walls.append(time.perf_counter() - t)
        cpus.append((r1.children_user - r0.children_user) + (r1.children_system - r0.children_system))
        stages.append(_stages(p.stdout + p.stderr))
    row.update(wall_s=_med(walls), cpu_s=_med(cpus), all_wall_s=[round(x, 3) for x in walls],
               all_cpu_s=[round(x, 3) for x in cpus], load_after=_load())
    row["stages_median_s"] = {k: _med([s[k][0] for s in stages if s.get(k)])
                              for k in ("load_s", "text_encoder_s", "sampling_s", "decode_s",
                                        "generate_s")}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", type=Path, required=True, help="sd.cpp's build/bin")
    ap.add_argument("--model", type=Path, required=True,
                    help="folder written by bench/sdcpp_convert.py (sd21-random.safetensors, taesd)")
    ap.add_argument("--build-root", type=Path, default=None, help="for the revs in the JSON")
    ap.add_argument("--wtypes", default="f16,q8_0")
    ap.add_argument("--paths", default="server,cli")
    ap.add_argument("-n", type=int, default=3, help="server requests after the warm-up")
    ap.add_argument("--n-cli", type=int, default=3, help="CLI runs after the warm-up")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-taesd", action="store_true", help="full VAE decoder instead")
    ap.add_argument("--extra", default="", help="more sd.cpp arguments (space-separated)")
    ap.add_argument("--out", default="bench/results/sdcpp.json")
    ap.add_argument("--table", nargs="+", metavar="JSON",
                    help="print the side-by-side table of sdcpp.json and sdcpp-ours-*.json; exit")
    if argv is None and "--table" in sys.argv:
        a = sys.argv[sys.argv.index("--table") + 1:]
        print(side_by_side([json.loads(Path(p).read_text()) for p in a if Path(p).is_file()]))
        return 0
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from swiftshot.benchmarks.machine import machine_info

    meta = json.loads((args.model / "sdcpp-model.json").read_text())
    args.model_path = args.model / meta["checkpoint"]
    args.taesd = None if args.no_taesd else args.model / meta["taesd"]
    args.extra = args.extra.split()
    work = args.model / "runs"
    work.mkdir(exist_ok=True)
    revs = {}
    if args.build_root:
        for k in ("sdcpp", "ggml"):
            f = args.build_root / f"{k}.rev"
            revs[k] = f.read_text().strip() if f.is_file() else None
    result: dict[str, Any] = {
        "machine": machine_info(), "what": "stable-diffusion.cpp, SD 2.1 architecture, random "
        "weights, real size", "size": args.size, "steps": 1, "cfg_scale": 1, "sampler": "euler",
        "decoder": "full VAE" if args.no_taesd else "TAESD", "threads": args.threads,
        "revisions": revs, "model": meta, "build_flags": _build_flags(args.build_root),
        "load_avg_at_start": _load(), "rows": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in args.paths.split(","):  # servers first: the headline figure
        for wtype in args.wtypes.split(","):
            row = (server_phase if path == "server" else cli_phase)(args, wtype, work)
            row["extra_args"] = " ".join(args.extra)
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
            result["load_avg_at_end"] = _load()
            out.write_text(json.dumps(result, indent=2, default=str))
    print_table(result)
    print(f"wrote {out}")
    return 0


def _build_flags(root: Path | None) -> dict[str, str]:
    if root is None or not (root / "build" / "CMakeCache.txt").is_file():
        return {}
    keep = {}
    for line in (root / "build" / "CMakeCache.txt").read_text().splitlines():
        m = re.match(r"(GGML_(?:NATIVE|AVX\w*|FMA|F16C|OPENMP|BLAS)|CMAKE_BUILD_TYPE|"
                     r"CMAKE_CXX_COMPILER):\w+=(.*)", line)
        if m:
            keep[m.group(1)] = m.group(2)
    return keep


def side_by_side(results: list[dict[str, Any]]) -> str:
    """One table: sd.cpp's rows and ours (diffusion_serve JSON), with time and load."""
    lines = ["| system | path | weights | wall p50 (client) | CPU-s p50 | when (UTC) | load avg |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        when = res["machine"]["date"]
        for r in res["rows"]:
            if "wtype" in r:  # sd.cpp
                load = f"{r['load_before'][0]} → {r.get('load_after', ['?'])[0]}"
                path = r["path"].split(" ")[0] + (f" `{r['extra_args']}`" if r.get("extra_args") else "")
                lines.append(f"| stable-diffusion.cpp | {path} | {r['wtype']} | "
                             f"{r.get('wall_s')} s | {r.get('cpu_s')} | {when} | {load} |")
            elif r.get("phase") == "warm":
                load = f"{r['load_before'][0]} → {r.get('load_after', ['?'])[0]}"
                w = "bf16 + int8 (quantize)" if res.get("quantize") == "int8" else "bf16"
                lines.append(f"| swiftshot (OpenVINO) | server | {w} | {r.get('new_prompt_wall_s')} s | "
                             f"{r.get('new_prompt_cpu_s')} | {when} | {load} |")
    return "\n".join(lines)


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['machine']['date']}  {result['machine']['cpu']}  "
          f"load {result['load_avg_at_start']} -> {result.get('load_avg_at_end')}")
    print("| path | weights | wall p50 | CPU-s p50 | text enc | sampling | decode | ready / load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        s = r.get("stages_median_s", {})
        print(f"| {r['path']} | {r['wtype']} | {r.get('wall_s')} s | {r.get('cpu_s')} | "
              f"{s.get('text_encoder_s')} | {s.get('sampling_s')} | {s.get('decode_s')} | "
              f"{r.get('ready_s', s.get('load_s'))} |")


if __name__ == "__main__":
    raise SystemExit(main())
