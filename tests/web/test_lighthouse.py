"""Lighthouse (the npm package, pinned in tools/lighthouse) against the page served by a real
``swiftshot serve``, in the Debian Chromium: performance and accessibility must score >= 95.

Lighthouse's default run: a mobile device with simulated slow-4G and 4x CPU throttling, so the
score is computed from the page's own trace, not from how busy this machine is. It is
installed once by tools/lighthouse/install.sh (a stamp skips it while the lock is unchanged);
a run takes ~20-30 s on 2 busy cores. Without node/npm: skipped on a developer's machine,
failed under make test / CI (.ci/system-deps installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from swiftshot.testing.browser import find_chromium
from swiftshot.testing.services import missing_service

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "lighthouse"
MIN_SCORE = 0.95


def run_lighthouse(url: str, out: Path, chrome: str) -> dict:
    subprocess.run([str(TOOL / "install.sh")], check=True, timeout=600)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["node", str(TOOL / "node_modules" / "lighthouse" / "cli" / "index.js"), url,
           "--only-categories=performance,accessibility", "--output=json",
           f"--output-path={out}", "--quiet", "--max-wait-for-load=30000",
           "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage"]
    env = {**os.environ, "CHROME_PATH": chrome}
    subprocess.run(cmd, check=True, timeout=240, env=env, cwd=out.parent)
    return json.loads(out.read_text())


def test_page_scores_95_for_performance_and_accessibility(web_server, tmp_path):
    chrome = find_chromium()
    if chrome is None:
        missing_service("no chromium binary (Debian package chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_service("no node/npm for Lighthouse (Debian packages nodejs npm)")
    report = run_lighthouse(web_server.url + "/", tmp_path / "lighthouse.json", chrome)
    if report["categories"]["performance"]["score"] < MIN_SCORE:
        # Lighthouse's own advice for variance: the median of several runs. A busy shared box
        # can lengthen one run's main-thread tasks (TBT); two more runs, the median counts.
        more = [run_lighthouse(web_server.url + "/", tmp_path / f"lighthouse-{i}.json", chrome)
                for i in (1, 2)]
        report = sorted([report, *more], key=lambda r: r["categories"]["performance"]["score"])[1]
    cats = report["categories"]
    scores = {k: cats[k]["score"] for k in ("performance", "accessibility")}
    failing = {a["id"]: a.get("title") for a in report["audits"].values()
               if a.get("score") is not None and a["score"] < 1
               and a.get("scoreDisplayMode") in ("binary", "numeric")}
    if dest := os.environ.get("SWIFTSHOT_LIGHTHOUSE_OUT"):
        Path(dest).write_text(json.dumps({"scores": scores, "failing_audits": failing,
                                          "fetchTime": report.get("fetchTime"),
                                          "lighthouseVersion": report.get("lighthouseVersion")},
                                         indent=2) + "\n")
    assert scores["performance"] >= MIN_SCORE, (scores, failing)
    assert scores["accessibility"] >= MIN_SCORE, (scores, failing)
    a11y = {r["id"] for r in cats["accessibility"]["auditRefs"]}
    assert not a11y & failing.keys(), {k: failing[k] for k in a11y & failing.keys()}
    # the page's own promises: nothing blocks rendering, and it stays small
    assert report["audits"]["render-blocking-resources"].get("score", 1) == 1
    total = report["audits"]["total-byte-weight"]["numericValue"]
    assert total < 60_000, total
    assert report["audits"]["cumulative-layout-shift"]["numericValue"] < 0.01  # nothing jumps


def test_finished_batch_scores_95_for_accessibility(web_server, photos, tmp_path):
    """The page as a seller leaves it (results, check tables, a failed PDF, slider moved, the
    HTML snippet open), audited by Lighthouse's snapshot mode (tools/lighthouse/snapshot.mjs)."""
    chrome = find_chromium()
    if chrome is None:
        missing_service("no chromium binary (Debian package chromium)")
    if shutil.which("node") is None or shutil.which("npm") is None:
        missing_service("no node/npm for Lighthouse (Debian packages nodejs npm)")
    subprocess.run([str(TOOL / "install.sh")], check=True, timeout=600)
    out = tmp_path / "snapshot.json"
    files = [str(photos[n]) for n in ("bottle_white_sweep", "mug_handle_white_sweep", "pdf")]
    subprocess.run(["node", str(TOOL / "snapshot.mjs"), web_server.url + "/", str(out), *files],
                   check=True, timeout=240, env={**os.environ, "CHROME_PATH": chrome})
    result = json.loads(out.read_text())
    if dest := os.environ.get("SWIFTSHOT_LIGHTHOUSE_OUT"):
        Path(dest).with_suffix(".snapshot.json").write_text(json.dumps(result, indent=2) + "\n")
    assert result["score"] >= MIN_SCORE, result
    assert result["failing"] == {}, result  # stricter than the score: no audit fails at all
