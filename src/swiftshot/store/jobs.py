"""Durable batch jobs in SQLite: what was accepted is never lost, and every item finishes once.

Durability: the database runs in WAL mode with ``synchronous=FULL``. In WAL mode ``NORMAL``
already survives ``kill -9`` (the WAL is in the OS page cache), but a power cut or kernel
panic can roll back the last commits. A 202 Accepted is a promise to the client, so the
commit that makes it must reach the disk: ``FULL`` fsyncs the WAL on every commit. The cost is
one fsync per job submission and per item completion (milliseconds), small next to a render.

Exactly-once completion: an item is *claimed* by one owner under a lease (``UPDATE ... WHERE
status='queued'`` inside ``BEGIN IMMEDIATE``, so concurrent claimers serialise). Completion is
one transaction guarded by ``status='running' AND lease_owner=?``: a worker whose lease was
taken away (because it was presumed dead) cannot record a second completion. Items left
``running`` by a process that died are re-queued when the store is opened (the owner's pid is
gone) or once their lease expires. A render may therefore run twice after a crash, but results
are content-addressed, so the second run produces the same key and only one completion is
recorded. Every claim and completion is appended to ``item_events`` so this can be audited.

Product photos of queued items live in the ``blobs`` table, written in the same transaction as
the job, so a restart can finish them; they are dropped when the last item using them is done.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ItemStatus = Literal["queued", "running", "done", "failed"]
JobStatus = Literal["queued", "running", "done"]
WebhookState = Literal["none", "pending", "delivered", "failed"]
ACTIVE = ("queued", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    preset TEXT,
    webhook_url TEXT,
    finished REAL,
    webhook_state TEXT NOT NULL DEFAULT 'none',
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_next_at REAL,
    webhook_error TEXT,
    idempotency_key TEXT
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    spec_json TEXT NOT NULL,
    product_sha256 TEXT,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    rejections INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    result_key TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    not_before REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS items_ready ON items(status, not_before);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS item_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    owner TEXT,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS item_events_item ON item_events(job_id, idx);
CREATE INDEX IF NOT EXISTS jobs_webhook ON jobs(webhook_state, webhook_next_at);
"""
# Columns added after the first schema, with their definitions: added to older files on open.
_ADDED_COLUMNS = {"jobs": {"idempotency_key": "TEXT"},
                  # the preset's compliance verdict and the cutout's confidence, as JSON
                  "items": {"quality_json": "TEXT"}}
_INDEXES_AFTER_MIGRATION = """
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""


@dataclass(frozen=True)
class NewItem:
    spec_json: str
    product_sha256: str | None = None


@dataclass(frozen=True)
class Claim:
    """One item handed to one worker under a lease."""

    job_id: str
    idx: int
    spec_json: str
    product_sha256: str | None
    attempts: int
    owner: str
    rejections: int = 0


@dataclass(frozen=True)
class ItemView:
    idx: int
    status: ItemStatus
    spec_json: str
    product_sha256: str | None
    attempts: int
    completions: int
    result_key: str | None
    error: str | None
    started_at: float | None
    finished_at: float | None
    quality_json: str | None = None
    """What the render said of its image (``ops.presets.quality_of``: compliance, cutout)."""


@dataclass(frozen=True)
class JobView:
    id: str
    tenant: str
    created: float
    status: JobStatus
    total: int
    preset: str | None
    webhook_url: str | None
    finished: float | None
    webhook_state: WebhookState
    webhook_attempts: int
    webhook_error: str | None
    items: list[ItemView] = field(default_factory=list)

    @property
    def progress(self) -> dict[str, int]:
        done = sum(1 for i in self.items if i.status == "done")
        failed = sum(1 for i in self.items if i.status == "failed")
        return {"done": done, "failed": failed, "total": self.total}


@dataclass(frozen=True)
class WebhookDue:
    job_id: str
    url: str
    attempts: int


def make_owner() -> str:
    """host:pid:nonce — the pid lets a restarted process see its predecessor is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host; None when it cannot be told (another host)."""
    try:
        host, pid_s, _ = owner.rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A killed child that nobody has reaped yet still answers kill(pid, 0).
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


class JobStore:
    """The batch-job tables of one SQLite file. Thread-safe; one connection per instance."""

    def __init__(self, path: str | Path, *, owner: str | None = None, lease_s: float = 60.0,
                 max_attempts: int = 3, clock: Callable[[], float] = time.time,
                 synchronous: Literal["NORMAL", "FULL"] = "FULL") -> None:
        self.path = Path(path)
        self.owner = owner or make_owner()
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._db.executescript(_SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns.items():
                    if name not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            self._db.executescript(_INDEXES_AFTER_MIGRATION)
        self.recovered = self.recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, job_id: str, idx: int, event: str,
               owner: str | None, now: float) -> None:
        db.execute("INSERT INTO item_events(job_id, idx, event, owner, at) VALUES (?,?,?,?,?)",
                   (job_id, idx, event, owner, now))

    # -- accepting ---------------------------------------------------------------------------

    def create_job(self, items: Sequence[NewItem], *, tenant: str = "anonymous",
                   webhook_url: str | None = None, preset: str | None = None,
                   blobs: Mapping[str, bytes] | None = None,
                   idempotency_key: str | None = None) -> str:
        """Persist a job, its items and their product photos in one committed transaction.

        With an ``idempotency_key`` already used by this tenant, nothing is written and the
        earlier job's id is returned: a client that retries a POST it never saw answered does
        not get its batch twice.
        """
        if not items:
            raise ValueError("a job needs at least one item")
        blobs = blobs or {}
        missing = {i.product_sha256 for i in items if i.product_sha256} - set(blobs)
        job_id = uuid.uuid4().hex
        now = self.clock()
        with self._tx() as db:
            if idempotency_key is not None:
                row = db.execute("SELECT id FROM jobs WHERE tenant=? AND idempotency_key=?",
                                 (tenant, idempotency_key)).fetchone()
                if row is not None:
                    return str(row[0])
            if missing:
                have = {r[0] for r in db.execute(
                    f"SELECT sha256 FROM blobs WHERE sha256 IN ({','.join('?' * len(missing))})",
                    tuple(missing))}
                if missing - have:
                    raise KeyError(f"product photos not supplied: {sorted(missing - have)}")
            db.executemany("INSERT OR IGNORE INTO blobs(sha256, data) VALUES (?, ?)",
                           list(blobs.items()))
            db.execute("INSERT INTO jobs(id, tenant, created, status, total, preset, webhook_url,"
                       " idempotency_key) VALUES (?,?,?,?,?,?,?,?)",
                       (job_id, tenant, now, "queued", len(items), preset, webhook_url,
                        idempotency_key))
            db.executemany("INSERT INTO items(job_id, idx, spec_json, product_sha256)"
                           " VALUES (?,?,?,?)",
                           [(job_id, i, it.spec_json, it.product_sha256)
                            for i, it in enumerate(items)])
        return job_id

    # -- working -----------------------------------------------------------------------------

    def claim(self, n: int = 1) -> list[Claim]:
        """Atomically take up to ``n`` ready items, oldest job first, under this owner's lease."""
        if n <= 0:
            return []
        now = self.clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT i.job_id, i.idx FROM items i JOIN jobs j ON j.id = i.job_id"
                " WHERE i.status='queued' AND i.not_before <= ?"
                " ORDER BY j.created, i.job_id, i.idx LIMIT ?", (now, n)).fetchall()
            claims = []
            for r in rows:
                got = db.execute(
                    "UPDATE items SET status='running', attempts=attempts+1, started_at=?,"
                    " lease_owner=?, lease_until=? WHERE job_id=? AND idx=? AND status='queued'"
                    " RETURNING spec_json, product_sha256, attempts, rejections",
                    (now, self.owner, now + self.lease_s, r["job_id"], r["idx"])).fetchone()
                if got is None:
                    continue
                self._event(db, r["job_id"], r["idx"], "claimed", self.owner, now)
                claims.append(Claim(r["job_id"], r["idx"], got["spec_json"],
                                    got["product_sha256"], got["attempts"], self.owner,
                                    got["rejections"]))
            for job_id in {c.job_id for c in claims}:
                db.execute("UPDATE jobs SET status='running' WHERE id=? AND status='queued'",
                           (job_id,))
        return claims

    def renew(self, claims: Sequence[Claim]) -> None:
        """Extend the leases of items still being worked on (a heartbeat)."""
        if not claims:
            return
        until = self.clock() + self.lease_s
        with self._tx() as db:
            db.executemany("UPDATE items SET lease_until=? WHERE job_id=? AND idx=?"
                           " AND status='running' AND lease_owner=?",
                           [(until, c.job_id, c.idx, c.owner) for c in claims])

    def complete(self, claim: Claim, result_key: str, quality_json: str | None = None) -> bool:
        """Record success once (with the render's quality verdict, JSON, when it has one).
        False if this claim no longer holds the item."""
        return self._finish(claim, "done", result_key=result_key, error=None,
                            quality_json=quality_json)

    def fail(self, claim: Claim, error: str) -> bool:
        """Record a permanent failure, with its reason."""
        return self._finish(claim, "failed", result_key=None, error=error)

    def _finish(self, claim: Claim, status: ItemStatus, *, result_key: str | None,
                error: str | None, quality_json: str | None = None) -> bool:
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE items SET status=?, result_key=?, error=?, finished_at=?,"
                " completions=completions+?, lease_owner=NULL, lease_until=NULL, quality_json=?"
                " WHERE job_id=? AND idx=? AND status='running' AND lease_owner=?",
                (status, result_key, error, now, 1 if status == "done" else 0, quality_json,
                 claim.job_id, claim.idx, claim.owner))
            if cur.rowcount != 1:
                return False
            self._event(db, claim.job_id, claim.idx, status, claim.owner, now)
            self._maybe_finish_job(db, claim.job_id, now)
        return True

    def release(self, claim: Claim, delay_s: float, reason: str) -> bool:
        """Put an item back (the service was overloaded); it is not counted as an attempt."""
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE items SET status='queued', attempts=attempts-1, rejections=rejections+1,"
                " not_before=?, error=?, lease_owner=NULL, lease_until=NULL"
                " WHERE job_id=? AND idx=? AND status='running' AND lease_owner=?",
                (now + delay_s, reason, claim.job_id, claim.idx, claim.owner))
            if cur.rowcount == 1:
                self._event(db, claim.job_id, claim.idx, "released", claim.owner, now)
            return cur.rowcount == 1

    def retry_or_fail(self, claim: Claim, error: str, delay_s: float) -> ItemStatus | None:
        """A transient error: re-queue after ``delay_s`` unless attempts are used up."""
        if claim.attempts >= self.max_attempts:
            ok = self.fail(claim, f"{error} (gave up after {claim.attempts} attempts)")
            return "failed" if ok else None
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE items SET status='queued', not_before=?, error=?, lease_owner=NULL,"
                " lease_until=NULL WHERE job_id=? AND idx=? AND status='running' AND lease_owner=?",
                (now + delay_s, error, claim.job_id, claim.idx, claim.owner))
            if cur.rowcount == 1:
                self._event(db, claim.job_id, claim.idx, "retry", claim.owner, now)
                return "queued"
        return None

    def recover(self) -> int:
        """Re-queue items whose owner died (pid gone on this host) or whose lease ran out."""
        now = self.clock()
        requeued = 0
        with self._tx() as db:
            rows = db.execute("SELECT job_id, idx, lease_owner, lease_until, attempts FROM items"
                              " WHERE status='running'").fetchall()
            for r in rows:
                owner = r["lease_owner"] or ""
                if owner == self.owner:
                    continue
                dead = owner_alive(owner) is False or (r["lease_until"] or 0) < now
                if not dead:
                    continue
                if r["attempts"] >= self.max_attempts:
                    db.execute(
                        "UPDATE items SET status='failed', finished_at=?, lease_owner=NULL,"
                        " lease_until=NULL, error=? WHERE job_id=? AND idx=?",
                        (now, f"gave up after {r['attempts']} attempts: the process rendering "
                              "it stopped each time", r["job_id"], r["idx"]))
                    self._event(db, r["job_id"], r["idx"], "failed", owner, now)
                    self._maybe_finish_job(db, r["job_id"], now)
                else:
                    db.execute("UPDATE items SET status='queued', lease_owner=NULL,"
                               " lease_until=NULL WHERE job_id=? AND idx=?",
                               (r["job_id"], r["idx"]))
                    self._event(db, r["job_id"], r["idx"], "requeued", owner, now)
                requeued += 1
        return requeued

    def _maybe_finish_job(self, db: sqlite3.Connection, job_id: str, now: float) -> None:
        left = db.execute("SELECT COUNT(*) FROM items WHERE job_id=? AND status IN (?, ?)",
                          (job_id, *ACTIVE)).fetchone()[0]
        if left:
            return
        db.execute("UPDATE jobs SET status='done', finished=?,"
                   " webhook_state=CASE WHEN webhook_url IS NULL THEN 'none' ELSE 'pending' END,"
                   " webhook_next_at=? WHERE id=? AND status!='done'", (now, now, job_id))
        # The photos were kept only so a restart could finish the job.
        db.execute("DELETE FROM blobs WHERE sha256 IN (SELECT product_sha256 FROM items"
                   " WHERE job_id=?) AND NOT EXISTS (SELECT 1 FROM items o WHERE"
                   " o.product_sha256 = blobs.sha256 AND o.status IN (?, ?))",
                   (job_id, *ACTIVE))

    def prune(self, older_than_s: float) -> int:
        """Delete finished jobs (and their items' logs) whose webhook is settled; jobs removed."""
        cutoff = self.clock() - older_than_s
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                "SELECT id FROM jobs WHERE status='done' AND finished < ?"
                " AND webhook_state != 'pending'", (cutoff,))]
            for job_id in ids:
                db.execute("DELETE FROM item_events WHERE job_id=?", (job_id,))
                db.execute("DELETE FROM items WHERE job_id=?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        return len(ids)

    def blob(self, sha256: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM blobs WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def next_ready_in(self) -> float | None:
        """Seconds until the next queued item may be claimed (0 if one is ready); None if none."""
        with self._lock:
            row = self._db.execute("SELECT MIN(not_before) FROM items WHERE status='queued'"
                                   ).fetchone()
        return None if row[0] is None else max(0.0, row[0] - self.clock())

    # -- reading -----------------------------------------------------------------------------

    def get_job(self, job_id: str) -> JobView | None:
        with self._lock:
            job = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            if job is None:
                return None
            items = self._db.execute("SELECT * FROM items WHERE job_id=? ORDER BY idx",
                                     (job_id,)).fetchall()
        return JobView(
            id=job["id"], tenant=job["tenant"], created=job["created"], status=job["status"],
            total=job["total"], preset=job["preset"], webhook_url=job["webhook_url"],
            finished=job["finished"], webhook_state=job["webhook_state"],
            webhook_attempts=job["webhook_attempts"], webhook_error=job["webhook_error"],
            items=[ItemView(idx=r["idx"], status=r["status"], spec_json=r["spec_json"],
                            product_sha256=r["product_sha256"], attempts=r["attempts"],
                            completions=r["completions"], result_key=r["result_key"],
                            error=r["error"], started_at=r["started_at"],
                            finished_at=r["finished_at"], quality_json=r["quality_json"])
                   for r in items])

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The audit log of one job's items, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM item_events WHERE job_id=? ORDER BY seq",
                                    (job_id,)).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM items GROUP BY status")
            return {r[0]: r[1] for r in rows}

    # -- webhooks ----------------------------------------------------------------------------

    def claim_webhooks(self, n: int, lease_s: float) -> list[WebhookDue]:
        """Due deliveries; pushed ``lease_s`` ahead so a crash mid-send only delays a retry."""
        now = self.clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, webhook_url, webhook_attempts FROM jobs WHERE webhook_state='pending'"
                " AND webhook_next_at <= ? ORDER BY webhook_next_at LIMIT ?", (now, n)).fetchall()
            db.executemany("UPDATE jobs SET webhook_next_at=? WHERE id=?",
                           [(now + lease_s, r["id"]) for r in rows])
        return [WebhookDue(r["id"], r["webhook_url"], r["webhook_attempts"]) for r in rows]

    def webhook_delivered(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET webhook_state='delivered', webhook_attempts="
                       "webhook_attempts+1, webhook_error=NULL WHERE id=?", (job_id,))

    def webhook_failed(self, job_id: str, error: str, retry_in_s: float | None) -> None:
        """Record a failed attempt; ``retry_in_s=None`` gives up for good."""
        now = self.clock()
        with self._tx() as db:
            if retry_in_s is None:
                db.execute("UPDATE jobs SET webhook_state='failed', webhook_attempts="
                           "webhook_attempts+1, webhook_error=? WHERE id=?", (error, job_id))
            else:
                db.execute("UPDATE jobs SET webhook_attempts=webhook_attempts+1,"
                           " webhook_error=?, webhook_next_at=? WHERE id=?",
                           (error, now + retry_in_s, job_id))

    def next_webhook_in(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(webhook_next_at) FROM jobs"
                                   " WHERE webhook_state='pending'").fetchone()
        return None if row[0] is None else max(0.0, row[0] - self.clock())
