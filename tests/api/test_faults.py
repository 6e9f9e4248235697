"""Faults on real filesystems and a real Redis (issue 11, part 5; docs/RELIABILITY.md).

A full disk is a real tmpfs of a few hundred KB filled up; a read-only disk is a tmpfs mounted
read-only (as root, chmod does not stop writes). Both need root to mount.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from swiftshot.testing.services import start_redis


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, ro: bool = False) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem at ``path`` to the last byte."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def render(s, prompt: str) -> httpx.Response:
    return s.client.post("/v1/render", json={"prompt": prompt, "width": 128, "height": 128})


def readyz_until(s, status: str, timeout_s: float = 30.0) -> dict:
    """/readyz's body once it says ``status`` (200); fails with the last body after timeout."""
    end = time.monotonic() + timeout_s
    while True:
        r = s.client.get("/readyz")
        body = r.json()
        if r.status_code == 200 and body.get("status") == status:
            return body
        assert time.monotonic() < end, f"/readyz never said {status!r}: {r.status_code} {body}"
        time.sleep(0.05)


def test_full_disk_cache_serves_from_memory_and_readyz_says_degraded(serve, tmp_path):
    with tmpfs(tmp_path / "disk", "400k") as disk:
        s = serve(env={"SWIFTSHOT_CACHE__DISK_DIR": str(disk)})
        assert s.client.get("/readyz").json()["status"] == "ready"
        filler = fill(disk)
        keys = []
        for i in range(4):  # 128² raw masters (49 KB) cannot be written any more
            r = render(s, f"full disk {i}")
            assert r.status_code == 200, r.text
            keys.append(r.json()["key"])
        for key in keys:  # served: from memory
            got = s.client.get(f"/i/{key}.png")
            assert got.status_code == 200 and got.content[:4] == b"\x89PNG"
        # the disk tier is written behind the answer: its failure shows once the writer ran
        body = readyz_until(s, "degraded")
        assert "full" in body["degraded"]["cache.disk"] or "No space" in body["degraded"]["cache.disk"]
        # space comes back: the next write succeeds and the server says so
        filler.unlink()
        assert render(s, "after the disk was freed").status_code == 200
        readyz_until(s, "ready")
        # (not the /readyz 503s while it warmed up: the renders and deliveries only)
        for route in ("/v1/render", "/i/{name}"):
            assert s.metric("swiftshot_responses_total", route=route, code="5xx") == 0


def test_read_only_cache_folder_still_starts_and_serves(serve, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", ro=True) as disk:
        s = serve(env={"SWIFTSHOT_CACHE__DISK_DIR": str(disk / "cache")})
        r = render(s, "read-only disk")
        assert r.status_code == 200, r.text
        assert s.client.get(f"/i/{r.json()['key']}.webp").status_code == 200
        body = s.client.get("/readyz").json()
        assert body["status"] == "degraded" and "off" in body["degraded"]["cache.disk"]


def test_redis_restarted_mid_load_gives_no_5xx(serve, tmp_path):
    redis = start_redis(tmp_path / "redis")
    s = serve(env={"SWIFTSHOT_REDIS_URL": redis.url})
    stop = threading.Event()
    codes: list[int] = []

    def load(worker: int) -> None:
        with httpx.Client(base_url=s.url, timeout=30) as c:
            i = 0
            while not stop.is_set():
                # every request a miss: Redis is read and written throughout
                r = c.post("/v1/render", json={"prompt": f"redis load {worker} {i}",
                                               "width": 64, "height": 64})
                codes.append(r.status_code)
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        port = redis.port
        redis.stop()  # Redis goes away mid-load ...
        time.sleep(1.5)
        redis = start_redis(tmp_path / "redis", port=port)  # ... and comes back empty
        time.sleep(3.0)  # past cache.redis_retry_s: the tier is used again
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        redis.stop()
    print(f"redis restarted mid-load: {len(codes)} requests, statuses {sorted(set(codes))}, "
          f"redis errors read as misses: {s.metric('swiftshot_cache_errors_total', tier='redis')}")
    assert len(codes) > 30, codes
    assert all(c == 200 for c in codes), sorted(set(codes))
    assert s.metric("swiftshot_cache_errors_total", tier="redis") > 0  # the fault was seen


def test_job_store_on_a_full_disk_refuses_new_jobs_clearly_and_writes_nothing(serve, tmp_path):
    with tmpfs(tmp_path / "jobs", "600k") as disk:
        s = serve(env={"SWIFTSHOT_JOBS__DB_PATH": str(disk / "jobs.sqlite3"),
                       "SWIFTSHOT_JOBS__ENABLED": "false"})
        ok = s.client.post("/v1/batches", json={"items": [{"prompt": "before", "width": 64,
                                                           "height": 64}]})
        assert ok.status_code == 202, ok.text
        filler = fill(disk)
        items = [{"prompt": f"item {i} " + "x" * 400, "width": 64, "height": 64}
                 for i in range(50)]
        refused = s.client.post("/v1/batches", json={"items": items})
        assert refused.status_code == 507, refused.text
        err = refused.json()["error"]
        assert err["code"] == "storage_full" and "disk" in err["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # nothing half-written: the earlier job is intact and no partial job appeared
        assert s.client.get(ok.json()["url"]).json()["items"][0]["status"] == "queued"
        filler.unlink()
        again = s.client.post("/v1/batches", json={"items": items})
        assert again.status_code == 202, again.text
        assert len(s.client.get(again.json()["url"]).json()["items"]) == 50
        db = sqlite3.connect(f"file:{disk / 'jobs.sqlite3'}?mode=ro", uri=True)
        try:  # two jobs (1 + 50 items): the refused one left no row behind
            assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2
            assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 51
        finally:
            db.close()
