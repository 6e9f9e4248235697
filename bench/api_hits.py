"""Cache-hit latency and throughput of `swiftshot serve` (studio engine), measured with wrk.

Starts a real server on a free loopback port with its data in a temporary folder, renders one
1024x1024 image, then drives three hit paths with wrk (apt-get install wrk):

* GET  /i/{key}.webp              immutable delivery, memory tier
* POST /v1/images/generations     OpenAI shape, response_format=url, memory tier
* POST /v1/render                 native shape, memory tier

and, in the same run, the same `GET /i/` against a bare FastAPI app serving the same bytes from
a dict (bench/bare_fastapi.py; issue 8's goal: swiftshot's hits ≥ 1.2× its throughput). The two
servers are driven alternately, `--rounds` times, so neighbour load falls on both alike; the
ratio is taken per round and its median reported.

Prints a table and writes bench/results/api_hits.json with the machine it ran on. Latencies are
wrk's (client-side, over loopback), so they include the client's share of two shared cores.

    .venv/bin/python bench/api_hits.py [--duration 10] [--connections 1 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.testing.services import stop_process

PROMPT = "white marble counter, soft morning light"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, duration: int, connections: int, body: dict | None, workdir: Path) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if body is not None:
        script = workdir / "post.lua"
        script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                          f"wrk.body = {json.dumps(json.dumps(body))}\n")
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"requests": total, "req_per_s": rps, "p50_ms": _ms(lat["50"]),
            "p90_ms": _ms(lat["90"]), "p99_ms": _ms(lat["99"]),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per path")
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 8],
                    help="concurrent keep-alive connections; one run per value (1: latency, "
                         "8: throughput)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternations of swiftshot and the bare FastAPI app on GET /i/ (0: skip)")
    ap.add_argument("--only-get", action="store_true", help="skip the two POST hit paths")
    ap.add_argument("--executor", choices=["inline", "process", "ray"], default=None,
                    help="swiftshot's executor (default: serve's, process)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/api_hits.json)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("api_hits: error: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="swiftshot-hits-"))
    port = _free_port()
    env = {**os.environ, "SWIFTSHOT_DATA_DIR": str(work / "var")}
    env.pop("SWIFTSHOT_CONFIG", None)
    if args.executor:
        env["SWIFTSHOT_ENGINE__EXECUTOR"] = args.executor
    bare = None
    log = (work / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "swiftshot", "serve", "--port", str(port),
                               "--engine", "studio"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(600):
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            body = {"prompt": PROMPT, "size": "1024x1024"}
            first = c.post("/v1/render", json=body)
            first.raise_for_status()
            key = first.json()["key"]
            c.get(f"/i/{key}.webp").raise_for_status()
            gen = {"prompt": PROMPT, "size": "1024x1024"}
            assert c.post("/v1/images/generations", json=gen).headers["x-cache"] == "memory"
            webp = c.get(f"/i/{key}.webp").content
        load0 = os.getloadavg()
        rows, ab = [], []
        if args.rounds > 0:
            (work / "image.webp").write_bytes(webp)
            bport = _free_port()
            bare = subprocess.Popen([sys.executable, str(Path(__file__).with_name("bare_fastapi.py")),
                                     "--port", str(bport), "--file", str(work / "image.webp"),
                                     "--name", f"{key}.webp"], stdout=log, stderr=subprocess.STDOUT)
            bare_url = f"http://127.0.0.1:{bport}/i/{key}.webp"
            _wait_ok(bare_url)
            bare_cpu = _cpu_s(bare.pid)
            for conns in args.connections:
                for r in range(args.rounds):
                    cpu0 = _cpu_s(server.pid)
                    sw = wrk(f"{base}/i/{key}.webp", args.duration, conns, None, work)
                    cpu1 = _cpu_s(server.pid)
                    bf = wrk(bare_url, args.duration, conns, None, work)
                    cpu2 = _cpu_s(bare.pid)
                    sw_us = 1e6 * (cpu1 - cpu0) / max(1, sw["requests"])
                    bf_us = 1e6 * (cpu2 - bare_cpu) / max(1, bf["requests"])
                    bare_cpu = cpu2
                    ab.append({"conns": conns, "round": r + 1, "swiftshot_rps": sw["req_per_s"],
                               "bare_rps": bf["req_per_s"],
                               "rps_ratio": sw["req_per_s"] / bf["req_per_s"],
                               "swiftshot_cpu_us": sw_us, "bare_cpu_us": bf_us,
                               "cpu_ratio": bf_us / sw_us if sw_us else 0.0,
                               "swiftshot_p50_ms": sw["p50_ms"], "bare_p50_ms": bf["p50_ms"],
                               "swiftshot_p99_ms": sw["p99_ms"], "bare_p99_ms": bf["p99_ms"],
                               "errors": sw["errors"] + bf["errors"]})
        paths = [("GET /i/{key}.webp", f"{base}/i/{key}.webp", None)]
        if not args.only_get:
            paths += [("POST /v1/images/generations (url)", f"{base}/v1/images/generations", gen),
                      ("POST /v1/render", f"{base}/v1/render", body)]
        for conns in args.connections:
            for name, url, payload in paths:
                rows.append({"path": name, "conns": conns,
                             **wrk(url, args.duration, conns, payload, work)})
    finally:
        for proc in (server, bare):
            if proc is not None:
                stop_process(proc, 60)
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, ["path", "conns", "requests", "req_per_s", "p50_ms", "p90_ms", "p99_ms", "errors"])
    summary = {}
    if ab:
        print("\nGET /i/ hit: swiftshot vs a bare FastAPI app (same bytes, alternated; goal ≥ 1.2×)")
        print_table(ab, ["conns", "round", "swiftshot_rps", "bare_rps", "rps_ratio",
                         "swiftshot_cpu_us", "bare_cpu_us", "cpu_ratio",
                         "swiftshot_p50_ms", "bare_p50_ms", "swiftshot_p99_ms", "bare_p99_ms",
                         "errors"])
        print("  (cpu_us: the server process's CPU time per request, user + sys; cpu_ratio = "
              "bare ÷ swiftshot, above 1 when a swiftshot hit costs less CPU — steadier than "
              "req/s on a shared box)")
        for conns in args.connections:
            ratios = sorted(x["rps_ratio"] for x in ab if x["conns"] == conns)
            cpu = sorted(x["cpu_ratio"] for x in ab if x["conns"] == conns)
            summary[str(conns)] = {"rps_ratio_median": ratios[len(ratios) // 2],
                                   "rps_ratio_min": ratios[0], "rps_ratio_max": ratios[-1],
                                   "cpu_ratio_median": cpu[len(cpu) // 2],
                                   "cpu_ratio_min": cpu[0], "cpu_ratio_max": cpu[-1]}
            print(f"  {conns} conn(s): req/s ratio median {ratios[len(ratios) // 2]:.2f} "
                  f"(range {ratios[0]:.2f}-{ratios[-1]:.2f}); CPU per request, bare ÷ swiftshot, "
                  f"median {cpu[len(cpu) // 2]:.2f} (range {cpu[0]:.2f}-{cpu[-1]:.2f})")
    load = os.getloadavg()
    path = write_result("api_hits", {"tool": "wrk", "server_engine": "studio",
                                     "executor": args.executor or "process (serve's default)",
                                     "duration_s": args.duration, "loadavg_at_start": load0,
                                     "loadavg_at_end": load, "rows": rows,
                                     "vs_bare_fastapi": ab, "vs_bare_fastapi_summary": summary},
                        args.out)
    print(f"\nwrote {path}  (load average at start {load0[0]:.1f}, at end {load[0]:.1f})")
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + sys) the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_ok(url: str) -> None:
    with httpx.Client(timeout=5) as c:
        for _ in range(300):
            try:
                if c.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within 30 s")


if __name__ == "__main__":
    sys.exit(main())
