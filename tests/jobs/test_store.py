"""The SQLite job store: accepted items survive, claims are exclusive, completion is once."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import pytest

from swiftshot.store.jobs import JobStore, NewItem, owner_alive


def _items(n: int) -> list[NewItem]:
    return [NewItem(spec_json=f'{{"prompt": "item {i}"}}') for i in range(n)]


def test_enqueue_claim_complete(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    job = store.create_job(_items(3), webhook_url="http://127.0.0.1:9/hook")
    view = store.get_job(job)
    assert view.status == "queued" and view.progress == {"done": 0, "failed": 0, "total": 3}
    claims = store.claim(2)
    assert [c.idx for c in claims] == [0, 1]
    assert store.get_job(job).status == "running"
    assert store.complete(claims[0], "k0")
    assert store.fail(claims[1], "engine exploded")
    assert not store.complete(claims[0], "k0"), "a second completion must be refused"
    (last,) = store.claim(5)
    assert store.complete(last, "k2")
    view = store.get_job(job)
    assert view.status == "done"
    assert view.progress == {"done": 2, "failed": 1, "total": 3}
    assert [i.result_key for i in view.items] == ["k0", None, "k2"]
    assert view.items[1].error == "engine exploded"
    assert [i.completions for i in view.items] == [1, 0, 1]
    assert view.webhook_state == "pending"
    assert store.claim(5) == []


def test_job_survives_reopen_with_its_photo(tmp_path):
    photo = b"\x89PNG not really"
    sha = hashlib.sha256(photo).hexdigest()
    store = JobStore(tmp_path / "j.db")
    job = store.create_job([NewItem("{}", sha)], blobs={sha: photo})
    store.close()
    again = JobStore(tmp_path / "j.db")
    (claim,) = again.claim(1)
    assert claim.job_id == job and claim.product_sha256 == sha
    assert again.blob(sha) == photo
    assert again.complete(claim, "k")
    assert again.blob(sha) is None, "photos of finished jobs are dropped"


def test_missing_photo_refused_and_nothing_written(tmp_path):
    store = JobStore(tmp_path / "j.db")
    with pytest.raises(KeyError, match="not supplied"):
        store.create_job([NewItem("{}", "a" * 64)])
    assert store.counts() == {}


def test_concurrent_claimers_never_share_an_item(tmp_path):
    path = tmp_path / "j.db"
    JobStore(path).create_job(_items(50))
    JobStore(path).create_job(_items(50))
    stores = [JobStore(path) for _ in range(6)]
    got: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores))

    def worker(store: JobStore) -> None:
        start.wait()
        while claims := store.claim(3):
            with lock:
                got.extend((c.job_id, c.idx) for c in claims)
            for c in claims:
                assert store.complete(c, f"k{c.idx}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 100 and len(set(got)) == 100
    assert stores[0].counts() == {"done": 100}


def test_running_item_of_dead_process_is_requeued_on_open(tmp_path):
    path = tmp_path / "j.db"
    job = JobStore(path).create_job(_items(2))
    # Another process claims one item and dies without finishing it.
    code = (f"from swiftshot.store.jobs import JobStore; s = JobStore({str(path)!r});"
            "print(s.claim(1)[0].owner)")
    owner = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                           text=True).stdout.strip()
    assert owner_alive(owner) is False
    store = JobStore(path)
    assert store.recovered == 1
    claims = store.claim(5)
    assert sorted(c.idx for c in claims) == [0, 1]
    assert [c.attempts for c in sorted(claims, key=lambda c: c.idx)] == [2, 1]
    events = [(e["idx"], e["event"]) for e in store.events(job)]
    assert (0, "requeued") in events


def test_live_owner_keeps_its_item_until_the_lease_expires(tmp_path):
    now = [1000.0]
    path = tmp_path / "j.db"
    a = JobStore(path, lease_s=30, clock=lambda: now[0])
    a.create_job(_items(1))
    (claim,) = a.claim(1)
    b = JobStore(path, lease_s=30, clock=lambda: now[0])
    assert b.recovered == 0 and b.claim(1) == []
    now[0] += 31
    assert b.recover() == 1
    (taken,) = b.claim(1)
    assert not a.complete(claim, "late"), "a lost lease cannot complete"
    assert b.complete(taken, "k")
    assert b.get_job(claim.job_id).items[0].completions == 1


def test_rejected_item_waits_and_is_not_an_attempt(tmp_path):
    now = [0.0]
    store = JobStore(tmp_path / "j.db", max_attempts=2, clock=lambda: now[0])
    store.create_job(_items(1))
    for _ in range(5):
        (c,) = store.claim(1)
        assert store.release(c, 10.0, "overloaded")
        assert store.claim(1) == [] and store.next_ready_in() == 10.0
        now[0] += 10
    (c,) = store.claim(1)
    assert c.attempts == 1
    assert store.retry_or_fail(c, "boom", 1.0) == "queued"
    now[0] += 1
    (c,) = store.claim(1)
    assert store.retry_or_fail(c, "boom", 1.0) == "failed"
    item = store.get_job(c.job_id).items[0]
    assert item.status == "failed" and "gave up after 2 attempts" in item.error


def test_crashing_item_is_failed_after_max_attempts(tmp_path):
    now = [0.0]
    path = tmp_path / "j.db"
    job = JobStore(path, max_attempts=2).create_job(_items(1))
    for _ in range(2):
        s = JobStore(path, max_attempts=2, lease_s=5, clock=lambda: now[0])
        s.claim(1)
        now[0] += 6  # the process "dies": its lease runs out
    s = JobStore(path, max_attempts=2, clock=lambda: now[0])
    view = s.get_job(job)
    assert view.status == "done" and view.items[0].status == "failed"
    assert "process rendering it stopped" in view.items[0].error


def test_webhook_state_is_durable(tmp_path):
    now = [0.0]
    path = tmp_path / "j.db"
    s = JobStore(path, clock=lambda: now[0])
    job = s.create_job(_items(1), webhook_url="http://127.0.0.1:1/h")
    (c,) = s.claim(1)
    s.complete(c, "k")
    (due,) = s.claim_webhooks(10, lease_s=30)
    assert due.job_id == job and s.claim_webhooks(10, lease_s=30) == []
    s.close()
    # crashed mid-send: after the lease the delivery is due again
    now[0] += 31
    s = JobStore(path, clock=lambda: now[0])
    (due,) = s.claim_webhooks(10, lease_s=30)
    s.webhook_failed(job, "HTTP 500", retry_in_s=4)
    assert s.claim_webhooks(10, 30) == []
    now[0] += 4
    (due,) = s.claim_webhooks(10, 30)
    assert due.attempts == 1
    s.webhook_delivered(job)
    v = s.get_job(job)
    assert v.webhook_state == "delivered" and v.webhook_attempts == 2


def test_prune_removes_only_old_settled_jobs(tmp_path):
    now = [0.0]
    s = JobStore(tmp_path / "j.db", clock=lambda: now[0])
    old = s.create_job(_items(1))
    hooked = s.create_job(_items(1), webhook_url="http://127.0.0.1:1/h")
    for c in s.claim(2):
        s.complete(c, "k")
    fresh = s.create_job(_items(1))
    now[0] += 100
    assert s.prune(50) == 1
    assert s.get_job(old) is None and s.events(old) == []
    assert s.get_job(hooked) is not None, "a pending webhook keeps its job"
    assert s.get_job(fresh) is not None, "unfinished jobs are never pruned"


def test_file_from_the_first_schema_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, created REAL"
                      " NOT NULL, status TEXT NOT NULL, total INTEGER NOT NULL, preset TEXT,"
                      " webhook_url TEXT, finished REAL, webhook_state TEXT NOT NULL DEFAULT"
                      " 'none', webhook_attempts INTEGER NOT NULL DEFAULT 0, webhook_next_at REAL,"
                      " webhook_error TEXT);")
    con.close()
    store = JobStore(path)
    a = store.create_job(_items(1), idempotency_key="k")
    assert store.create_job(_items(1), idempotency_key="k") == a
