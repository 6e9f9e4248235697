"""Lighthouse figures of the seller's page at ``/`` (Lighthouse pinned in tools/lighthouse).

Starts a real ``swiftshot serve`` (studio engine) on a free loopback port, runs Lighthouse's
default navigation (a mobile device, simulated slow 4G and 4x CPU slowdown, so the scores are
computed from the page's own trace rather than this machine's load) ``--runs`` times, then one
snapshot of a finished batch (3 photos rendered and checked, a PDF refused) for accessibility.
Prints a table and writes bench/results/web-lighthouse.json with the machine and load average.

    CHROME_PATH=/usr/bin/chromium .venv/bin/python bench/web_lighthouse.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from swiftshot.benchmarks.machine import print_table, write_result

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "lighthouse"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    chrome = os.environ.get("CHROME_PATH") or shutil.which("chromium")
    if not chrome or not shutil.which("node"):
        print("needs chromium (CHROME_PATH) and node", file=sys.stderr)
        return 2
    subprocess.run([str(TOOL / "install.sh")], check=True)
    env = {**os.environ, "CHROME_PATH": chrome}
    with tempfile.TemporaryDirectory(prefix="swiftshot-lh-") as tmp:
        work = Path(tmp)
        port = _free_port()
        senv = {**os.environ, "SWIFTSHOT_DATA_DIR": str(work / "var")}
        senv.pop("SWIFTSHOT_CONFIG", None)
        with (work / "server.log").open("wb") as log:
            server = subprocess.Popen([sys.executable, "-m", "swiftshot", "serve", "--port",
                                       str(port), "--engine", "studio"], env=senv, stdout=log,
                                      stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                try:
                    if httpx.get(url + "readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            load_before = os.getloadavg()
            rows = []
            for i in range(args.runs):
                out = work / f"lh-{i}.json"
                subprocess.run(["node", str(TOOL / "node_modules/lighthouse/cli/index.js"), url,
                                "--only-categories=performance,accessibility", "--output=json",
                                f"--output-path={out}", "--quiet",
                                "--chrome-flags=--headless=new --no-sandbox --disable-gpu "
                                "--disable-dev-shm-usage"], check=True, env=env, cwd=work)
                r = json.loads(out.read_text())
                a = r["audits"]
                rows.append({
                    "run": i + 1,
                    "performance": round(r["categories"]["performance"]["score"] * 100),
                    "accessibility": round(r["categories"]["accessibility"]["score"] * 100),
                    "FCP ms": round(a["first-contentful-paint"]["numericValue"]),
                    "LCP ms": round(a["largest-contentful-paint"]["numericValue"]),
                    "TBT ms": round(a["total-blocking-time"]["numericValue"]),
                    "CLS": round(a["cumulative-layout-shift"]["numericValue"], 3),
                    "bytes": round(a["total-byte-weight"]["numericValue"]),
                })
            from swiftshot.testing.products import make_photo

            photos = []
            for name in ("bottle_white_sweep", "box_gradient", "mug_handle_white_sweep"):
                p = work / f"{name}.jpg"
                make_photo(name, (640, 640)).image.save(p, "JPEG", quality=88)
                photos.append(str(p))
            (work / "price-list.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
            photos.append(str(work / "price-list.pdf"))
            snap = work / "snapshot.json"
            subprocess.run(["node", str(TOOL / "snapshot.mjs"), url, str(snap), *photos],
                           check=True, env=env)
            snapshot = json.loads(snap.read_text())
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(30)
    print_table(rows)
    print(f"finished batch (snapshot): accessibility {round(snapshot['score'] * 100)}, "
          f"failing audits: {snapshot['failing'] or 'none'}")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    path = write_result("web-lighthouse", {
        "lighthouse": json.loads((TOOL / "package.json").read_text())["dependencies"]["lighthouse"],
        "chromium": subprocess.run([chrome, "--version"], capture_output=True, text=True).stdout.strip(),
        "settings": "default navigation: mobile, simulated slow 4G, 4x CPU slowdown",
        "load_avg_before": load_before, "load_avg_after": load_after,
        "runs": rows, "finished_batch_snapshot": snapshot}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
