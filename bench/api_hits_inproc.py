"""CPU per `GET /i/` memory hit inside the server process: fast path, full app, bare FastAPI.

No sockets, no uvicorn: the three ASGI apps are called directly on one event loop with the same
scope (`GET /i/{key}.webp`, the headers wrk sends), and the process's CPU time (user + sys) per
call is reported. This isolates what the serving fast path (api/fast_path.py) changes from
uvicorn's HTTP parse and socket write, which bench/api_hits.py measures with them, and it holds
still on a loaded box where req/s does not. The fake engine renders one 256² image first.

* fast path — `HitFastPath` around the app (what `swiftshot serve` runs)
* full app — the FastAPI app alone (`server.fast_hits = false`; also the path of a miss)
* bare FastAPI — bench/bare_fastapi.py's app serving the same bytes from a dict

Prints a table and writes bench/results/api_hits_inproc.json with the machine.

    PYTHONPATH=src .venv/bin/python bench/api_hits_inproc.py [--calls 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from swiftshot.api.app import create_app
from swiftshot.benchmarks.machine import print_table, write_result
from swiftshot.config import Settings


def _bare_module():
    spec = importlib.util.spec_from_file_location("bare_fastapi",
                                                  Path(__file__).with_name("bare_fastapi.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20000, help="ASGI calls per app and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the three apps")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/api_hits_inproc.json)")
    args = ap.parse_args()
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="swiftshot-inproc-")) / "var",
                        engine={"default": "fake"}, server={"warmup_shapes": [(64, 64)]})
    app = create_app(settings)
    load0 = os.getloadavg()
    rows: list[dict] = []
    with TestClient(app) as client:
        key = client.post("/v1/render", json={"prompt": "inproc", "size": "256x256"}).json()["key"]
        data = client.get(f"/i/{key}.webp").content
        apps = {"full app": app, "bare FastAPI": _bare_module().make_app({f"{key}.webp": data})}
        try:  # absent in code before the fast path (a before/after run of this script)
            from swiftshot.api.fast_path import HitFastPath
        except ImportError:
            pass
        else:
            apps = {"fast path": HitFastPath(app), **apps}
        path = f"/i/{key}.webp"
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def cpu_per_call(entry, n: int) -> float:
            sent: list[dict] = []

            async def send(message: dict) -> None:
                sent.append(message)

            await entry({**scope, "state": {}}, receive, send)
            assert sent[0]["status"] == 200 and sent[1]["body"] == data, sent[0]
            t0 = time.process_time()
            for _ in range(n):
                await entry({**scope, "state": {}}, receive, send)
                sent.clear()
            return 1e6 * (time.process_time() - t0) / n

        for r in range(args.rounds):
            for name, entry in apps.items():
                rows.append({"round": r + 1, "app": name,
                             "cpu_us_per_hit": client.portal.call(cpu_per_call, entry, args.calls)})
    print_table(rows)
    summary = {}
    for name in apps:
        values = sorted(x["cpu_us_per_hit"] for x in rows if x["app"] == name)
        summary[name] = values[len(values) // 2]
    print("\nmedian CPU µs per hit: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.items()))
    load = os.getloadavg()
    out = write_result("api_hits_inproc", {"calls": args.calls, "rounds": args.rounds,
                                           "image_bytes": len(data), "loadavg_at_start": load0,
                                           "loadavg_at_end": load, "rows": rows,
                                           "median_cpu_us_per_hit": summary}, args.out)
    print(f"wrote {out}  (load average at start {load0[0]:.1f}, at end {load[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
