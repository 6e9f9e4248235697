"""kill -9 a real ``swiftshot serve`` mid-batch, restart it, and check every item finished once.

The server is a real subprocess on a free loopback port with its data in tmp and the test-only
fake engine slowed down, so a 20-item batch is still running when it is killed.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from swiftshot.runtime import webhooks

from .receiver import Receiver

pytestmark = pytest.mark.slow
SECRET = "crash-test-secret"


def _start(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "SWIFTSHOT_DATA_DIR": str(data_dir),
           "SWIFTSHOT_ENGINE__DEFAULT": "fake", "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.2",
           "SWIFTSHOT_SERVER__WARMUP_SHAPES": "[[64, 64]]",
           "SWIFTSHOT_JOBS__CONCURRENCY": "2", "SWIFTSHOT_JOBS__POLL_S": "0.05",
           "SWIFTSHOT_JOBS__WEBHOOK_SECRET": SECRET, "SWIFTSHOT_JOBS__WEBHOOK_ALLOW_PRIVATE": "1",
           "SWIFTSHOT_JOBS__WEBHOOK_BACKOFF_S": "0.1", "SWIFTSHOT_CACHE__MEMORY_BYTES": "0"}
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "swiftshot", "serve", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=out)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert m, f"server did not start: {line!r}; log: {log.read_text()[-2000:]}"
    return proc, f"http://127.0.0.1:{m.group(1)}"


def _items(db: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM items ORDER BY idx").fetchall()
    finally:
        con.close()


def _events(db: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM item_events ORDER BY seq").fetchall()
    finally:
        con.close()


def _generations(base: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    return sum(float(v) for v in re.findall(r'^swiftshot_generations_total\{[^}]*\} (\S+)$',
                                             text, re.M))


def test_kill_9_mid_batch_then_restart_finishes_every_item_once(tmp_path):
    data, db = tmp_path / "var", tmp_path / "var" / "jobs.sqlite3"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with Receiver() as rx:
            proc, base = _start(data, tmp_path / "server.log")
            procs.append(proc)
            items = [{"prompt": f"crash item {i}", "size": "64x64"} for i in range(20)]
            r = httpx.post(f"{base}/v1/batches", json={"items": items, "webhook_url": rx.url},
                           timeout=30)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]

            deadline = time.monotonic() + 60
            while True:
                done_before = {r["idx"] for r in _items(db) if r["status"] == "done"}
                if 4 <= len(done_before):
                    break
                assert time.monotonic() < deadline, "the server made no progress"
                time.sleep(0.02)
            proc.kill()  # SIGKILL: no drain, no lease release, no clean close
            proc.wait()
            at_kill = _items(db)
            done_at_kill = {r["idx"] for r in at_kill if r["status"] == "done"}
            assert 4 <= len(done_at_kill) < 20, "the kill must land mid-batch"
            assert any(r["status"] == "running" for r in at_kill), "kill with items in flight"

            proc, base = _start(data, tmp_path / "server.log")
            procs.append(proc)
            deadline = time.monotonic() + 90
            while (body := httpx.get(f"{base}/v1/batches/{job_id}").json())["status"] != "done":
                assert time.monotonic() < deadline, f"not finished after restart: {body['progress']}"
                time.sleep(0.05)
            assert body["progress"] == {"done": 20, "failed": 0, "total": 20}
            rendered_after_restart = _generations(base)
            for item in body["items"]:
                got = httpx.get(item["url"])
                assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert rx.got.wait(30), "webhook not delivered after the restart"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()

    rows = _items(db)
    assert [r["status"] for r in rows] == ["done"] * 20
    assert [r["completions"] for r in rows] == [1] * 20, "exactly one recorded completion each"
    # An item recorded done is never claimed (so never rendered) again ...
    events = _events(db)
    for idx in range(20):
        mine = [e["event"] for e in events if e["idx"] == idx]
        assert mine.count("done") == 1, (idx, mine)
        assert mine[-1] == "done", f"item {idx} was touched after completion: {mine}"
    assert all(r["attempts"] == 1 for r in rows if r["idx"] in done_at_kill)
    # ... and the restarted server rendered only what was not done at the kill.
    assert 0 < rendered_after_restart <= 20 - len(done_at_kill)
    requeued = {e["idx"] for e in events if e["event"] == "requeued"}
    assert requeued and requeued.isdisjoint(done_at_kill)

    delivery = rx.deliveries[-1]
    assert webhooks.verify(delivery.body, SECRET, delivery.headers["X-Swiftshot-Signature"])
    payload = orjson.loads(delivery.body)
    assert payload["id"] == job_id and payload["progress"]["done"] == 20


def test_sigterm_mid_batch_drains_and_a_restart_finishes_the_rest(tmp_path):
    data, db = tmp_path / "var", tmp_path / "var" / "jobs.sqlite3"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        proc, base = _start(data, tmp_path / "server.log")
        procs.append(proc)
        items = [{"prompt": f"term item {i}", "size": "64x64"} for i in range(12)]
        job_id = httpx.post(f"{base}/v1/batches", json={"items": items}, timeout=30).json()["id"]
        deadline = time.monotonic() + 60
        while not any(r["status"] == "done" for r in _items(db)):
            assert time.monotonic() < deadline, "the server made no progress"
            time.sleep(0.02)
        proc.terminate()
        assert proc.wait(60) == 0, "a drained server exits 0"
        rows = _items(db)
        assert not any(r["status"] == "running" for r in rows), "in-flight items handed back"
        assert any(r["status"] == "queued" for r in rows), "stopped mid-batch"

        proc, base = _start(data, tmp_path / "server.log")
        procs.append(proc)
        deadline = time.monotonic() + 60
        while (body := httpx.get(f"{base}/v1/batches/{job_id}").json())["status"] != "done":
            assert time.monotonic() < deadline, f"not finished after restart: {body['progress']}"
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
    rows = _items(db)
    assert body["progress"] == {"done": 12, "failed": 0, "total": 12}
    assert [r["completions"] for r in rows] == [1] * 12
