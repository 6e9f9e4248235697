"""The batch-job runner: claims items from the durable store and renders them at low priority.

One asyncio task per server. It keeps at most ``jobs.concurrency`` items in flight, each going
through ``Service.render(spec, priority="batch")`` so interactive traffic keeps its latency
(the scheduler serves higher classes first). Outcomes:

* success → ``complete`` (one transaction; the result key is content-addressed);
* ``Rejected`` (the service is overloaded) → the item goes back to the queue after a backoff
  and the refusal does not count as an attempt;
* a bad request (invalid spec, unusable photo, unknown engine) → failed at once, with its error;
* anything else → retried with backoff up to ``jobs.max_attempts``, then failed.

A heartbeat renews the leases of in-flight items, so only a dead process loses them. When a
job's last item finishes the store marks its webhook pending; a second loop delivers pending
webhooks with exponential backoff, and because that state is in SQLite a crash delays a
webhook but never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import httpx
import orjson
from PIL import Image
from pydantic import ValidationError

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.engines.base import EngineConfigError
from swiftshot.inputs import PhotoFile
from swiftshot.runtime import memory, webhooks
from swiftshot.runtime.aio import wait_event
from swiftshot.spec import RenderSpec
from swiftshot.store.jobs import Claim, JobStore, JobView

log = logging.getLogger("swiftshot.jobs")
T = TypeVar("T")
_MAX_BACKOFF_S = 60.0


class Renderer(Protocol):
    """The slice of ``swiftshot.service.Service`` the runner needs."""

    async def render(self, spec: RenderSpec, *, priority: str = "standard",
                     deadline_s: float | None = None,
                     products: Mapping[str, Image.Image] | None = None) -> Any: ...


class PermanentItemError(Exception):
    """This item can never succeed as submitted (the message is shown to the user)."""


def _is_rejection(exc: BaseException) -> bool:
    """Overload, warming up, draining: the item is fine, the moment is not."""
    return (type(exc).__name__ in ("Rejected", "Unavailable", "MemoryBusy")
            and hasattr(exc, "retry_after_s"))


def _is_user_error(exc: BaseException) -> bool:
    # ValueError covers pydantic's ValidationError and the ops' OpsError / UnknownPreset: the
    # same spec would fail the same way again, so retrying only burns capacity.
    if isinstance(exc, ValueError | EngineConfigError | PermanentItemError):
        return True
    try:
        from swiftshot.inputs import InputError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, InputError)


def result_url(key: str, output_format: str, quality: int | None = None,
               base_url: str = "") -> str:
    """Same shape as the images API: ``/i/{key}.{ext}`` plus ``?q=`` for lossy formats."""
    from swiftshot.delivery.codecs import extension

    q = f"?q={quality}" if quality is not None and output_format != "png" else ""
    return f"{base_url.rstrip('/')}/i/{key}.{extension(output_format)}{q}"


def job_to_dict(view: JobView, base_url: str = "") -> dict[str, Any]:
    """The public JSON of a job: used by ``GET /v1/batches/{id}`` and the webhook body."""
    items = []
    for it in view.items:
        entry: dict[str, Any] = {"index": it.idx, "status": it.status}
        if it.result_key:
            spec = orjson.loads(it.spec_json)
            entry["key"] = it.result_key
            entry["url"] = result_url(it.result_key, spec.get("output_format", "png"),
                                      spec.get("quality"), base_url)
        if it.status == "failed" and it.error:
            entry["error"] = it.error
        if it.status == "done" and it.quality_json:
            # the render's own verdict, same shape as POST /v1/render's JSON: "compliance"
            # (preset, passed, failed, rules with measured values) and "cutout" (confidence)
            entry.update(orjson.loads(it.quality_json))
        items.append(entry)
    return {
        "id": view.id,
        "object": "batch",
        "status": view.status,
        "created": int(view.created),
        "finished": int(view.finished) if view.finished else None,
        "progress": view.progress,
        "preset": view.preset,
        "webhook": ({"url": view.webhook_url, "state": view.webhook_state,
                     "attempts": view.webhook_attempts, "last_error": view.webhook_error}
                    if view.webhook_url else None),
        "items": items,
    }


def backoff(base_s: float, n: int) -> float:
    """base, 2·base, 4·base ... capped at a minute."""
    return min(_MAX_BACKOFF_S, base_s * 2 ** max(0, n))


class JobRunner:
    """Owns the store for the server's lifetime; ``start()`` / ``stop()`` from the lifespan."""

    def __init__(self, store: JobStore, service: Renderer, settings: Settings, *,
                 client: httpx.AsyncClient | None = None) -> None:
        self.store = store
        self.service = service
        self.settings = settings
        self.cfg = settings.jobs
        self._client = client
        self._own_client = client is None
        self._wake = asyncio.Event()
        self._webhook_wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], Claim] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._db_lock = threading.Lock()
        self._stopping = False
        self._db_threads = 0
        self.base_url = (settings.server.public_url or "").rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings, service: Renderer) -> JobRunner:
        cfg = settings.jobs
        store = JobStore(cfg.db_path, lease_s=cfg.lease_s, max_attempts=cfg.max_attempts)
        return cls(store, service, settings)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._stopping = False
        if self._client is None:
            self._client = httpx.AsyncClient()
        if self.cfg.webhook_secret is None:
            log.warning("jobs.webhook_secret is not set: webhooks are sent unsigned")
        self._tasks = [asyncio.create_task(self._supervised(loop), name=f"jobs-{loop.__name__}")
                       for loop in (self._work_loop, self._heartbeat_loop, self._webhook_loop)]

    async def stop(self) -> None:
        """Stop claiming; in-flight items are put back in the queue for the next start."""
        self._stopping = True
        claims = list(self._inflight.values())
        tasks = [*self._tasks, *self._inflight]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        # A task cancelled before its first step never runs _run_item's hand-back (seen on a
        # loaded box: claimed, then stop() before the task started). Release is a no-op for
        # items already handed back or finished, so hand back every claim held at the stop.
        for claim in claims:
            self.store.release(claim, 0.0, "server stopped while rendering")
        deadline = time.monotonic() + 10
        while self._db_threads and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
        self.store.close()

    async def _supervised(self, loop: Callable[[], Any]) -> None:
        """Keep a loop alive: a failed step (disk full, database locked) is logged and the loop
        starts again, rather than the runner silently stopping."""
        while not self._stopping:
            try:
                await loop()
                return
            except Exception:  # noqa: BLE001 - logged; the loop is restarted
                log.exception("jobs %s failed; restarting it", loop.__name__)
                await asyncio.sleep(self.cfg.poll_s)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """A store call in a thread. Counted, so ``stop`` closes the store only when none is
        running: cancelling an await does not stop its thread."""
        return await asyncio.to_thread(self._counted, fn, *args)

    def _counted(self, fn: Callable[..., T], *args: Any) -> T:
        with self._db_lock:
            self._db_threads += 1
        try:
            return fn(*args)
        finally:
            with self._db_lock:
                self._db_threads -= 1

    def notify(self) -> None:
        """New work was committed: look now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- items -------------------------------------------------------------------------------

    async def _work_loop(self) -> None:
        next_gauge = 0.0
        while not self._stopping:
            self._wake.clear()
            if time.monotonic() >= next_gauge:  # the backlog gauge, at most every 2 s
                counts = await self._db(self.store.counts)
                for status in ("queued", "running", "done", "failed"):
                    telemetry.JOB_ITEMS.labels(status).set(counts.get(status, 0))
                next_gauge = time.monotonic() + 2.0
            free = self.cfg.concurrency - len(self._inflight)
            if not getattr(self.service, "ready", True):
                free = 0  # warming up: claiming now would only bounce items back
            claims = await self._db(self.store.claim, free) if free > 0 else []
            for claim in claims:
                task = asyncio.create_task(self._run_item(claim))
                self._inflight[task] = claim
                task.add_done_callback(self._item_done)
            delay = self.cfg.poll_s
            if len(claims) < free:
                ready_in = await self._db(self.store.next_ready_in)
                if ready_in is not None:
                    delay = min(delay, max(ready_in, 0.005))
            await wait_event(self._wake, delay)

    def _item_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("job item task crashed: %r", exc)

    async def _run_item(self, claim: Claim) -> None:
        try:
            spec = RenderSpec.model_validate_json(claim.spec_json)
            data = await self._blob(claim)
            # the photo's pixels count against the memory budget until the render is done
            async with memory.admit_photos([data] if data else [], self.settings.limits):
                products = await self._products(claim, data)
                rendered = await self.service.render(spec, priority="batch", products=products)
                products = None
            quality = await self._quality(spec, rendered)
            telemetry.JOB_ITEM_OUTCOMES.labels("done").inc()
            if not await self._db(self.store.complete, claim, rendered.key, quality):
                log.warning("item %s/%d finished after its lease was taken over",
                            claim.job_id, claim.idx)
        except asyncio.CancelledError:
            # Shutting down: hand the item back at once (not an attempt) for the next start.
            self.store.release(claim, 0.0, "server stopped while rendering")
            raise
        except Exception as e:  # every outcome must be recorded
            await self._record_error(claim, e)
        finally:
            self._webhook_wake.set()

    async def _quality(self, spec: RenderSpec, rendered: Any) -> str | None:
        """JSON of what the render said of its image, for an item with ops or a preset (as
        ``POST /v1/render`` answers it): the preset's compliance verdict and the cutout's
        confidence; None for a plain engine render, or when the service gave no image."""
        if spec.preset is None and not spec.ops:
            return None
        from swiftshot.ops.presets import get_preset, remembered_quality

        try:
            rule = get_preset(spec.preset, self.settings.ops.presets) if spec.preset else None
            made = getattr(rendered, "quality", None)
            if made is None and getattr(rendered, "image", None) is None and \
                    hasattr(self.service, "meta"):  # a hit: the verdict stored with the master
                meta = await self.service.meta(rendered.key)
                made = getattr(meta, "quality", None)
            q = await asyncio.to_thread(remembered_quality, rendered.key,
                                        getattr(rendered, "image", None),
                                        getattr(rendered, "master", None), rule, spec.preset, made)
        except Exception:  # noqa: BLE001 - the image is made; a verdict that fails is logged
            log.exception("item verdict of %s could not be computed", rendered.key)
            return None
        return orjson.dumps(q).decode() if q else None

    async def _blob(self, claim: Claim) -> bytes | None:
        if not claim.product_sha256:
            return None
        data = await self._db(self.store.blob, claim.product_sha256)
        if data is None:
            raise PermanentItemError(f"product photo {claim.product_sha256} is no longer stored")
        return data

    async def _products(self, claim: Claim, data: bytes | None) -> dict[str, PhotoFile] | None:
        """The item's photo checked by its header, decoded once where the render runs (an
        engine worker process is sent the file, not 12 MB of pixels decoded here); truncated
        or corrupt data fails the item there (``inputs.PhotoError``, a user error)."""
        if not claim.product_sha256 or data is None:
            return None
        from swiftshot.inputs import check_header

        return {claim.product_sha256: check_header(data, self.settings.limits)}

    async def _record_error(self, claim: Claim, e: Exception) -> None:
        if _is_rejection(e):
            hint = getattr(e, "retry_after_s", None) or 0.0
            delay = max(float(hint), backoff(self.cfg.retry_backoff_s, claim.rejections))
            reason = getattr(e, "reason", None) or "overloaded"
            telemetry.JOB_ITEM_OUTCOMES.labels("refused").inc()
            await self._db(self.store.release, claim, delay,
                           f"service refused ({reason}); retrying in {delay:.1f}s")
            return
        message = getattr(e, "message", None) or str(e) or type(e).__name__
        if isinstance(e, ValidationError):
            from swiftshot.cli import format_validation_error

            message = format_validation_error(e)
        if _is_user_error(e):
            telemetry.JOB_ITEM_OUTCOMES.labels("failed").inc()
            await self._db(self.store.fail, claim, message)
            return
        log.warning("item %s/%d attempt %d failed: %r", claim.job_id, claim.idx,
                    claim.attempts, e)
        outcome = await self._db(self.store.retry_or_fail, claim, f"{type(e).__name__}: {message}",
                                 backoff(self.cfg.retry_backoff_s, claim.attempts - 1))
        telemetry.JOB_ITEM_OUTCOMES.labels("retry" if outcome == "queued" else "failed").inc()

    async def _heartbeat_loop(self) -> None:
        period = max(0.05, self.cfg.lease_s / 3)
        next_prune = 0.0
        while not self._stopping:
            if time.monotonic() >= next_prune:
                await self._db(self.store.prune, self.cfg.retention_days * 86400)
                next_prune = time.monotonic() + 3600
            await asyncio.sleep(period)
            await self._db(self.store.renew, list(self._inflight.values()))
            # Leases of processes on other hosts (or recycled pids) end only by expiry.
            if await self._db(self.store.recover):
                self._wake.set()

    # -- webhooks ----------------------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        while not self._stopping:
            self._webhook_wake.clear()
            lease = self.cfg.webhook_timeout_s * 2 + 5
            due = await self._db(self.store.claim_webhooks, 8, lease)
            # Concurrently: one slow receiver must not hold up the others' deliveries.
            results = await asyncio.gather(*(self._deliver(d.job_id, d.url, d.attempts)
                                             for d in due), return_exceptions=True)
            for d, r in zip(due, results, strict=True):
                if isinstance(r, Exception):  # the lease on it brings it back later
                    log.error("webhook for job %s: %r", d.job_id, r)
            delay = self.cfg.poll_s
            nxt = await self._db(self.store.next_webhook_in)
            if nxt is not None:
                delay = min(delay, max(nxt, 0.005))
            await wait_event(self._webhook_wake, delay)

    async def _deliver(self, job_id: str, url: str, attempts: int) -> None:
        view = await self._db(self.store.get_job, job_id)
        if view is None:  # pragma: no cover - jobs are never deleted while pending
            return
        assert self._client is not None
        timestamp = int(time.time())
        body = orjson.dumps({"event": "batch.completed", "timestamp": timestamp,
                             **job_to_dict(view, self.base_url)})
        try:
            await asyncio.to_thread(webhooks.check_url, url,  # DNS: not on the loop
                                    allow_private=self.cfg.webhook_allow_private)
            error = await webhooks.post(
                self._client, url, body, secret=self.cfg.webhook_secret, timestamp=timestamp,
                delivery_id=f"{job_id}-{attempts + 1}-{uuid.uuid4().hex[:6]}",
                timeout_s=self.cfg.webhook_timeout_s)
        except webhooks.WebhookURLError as e:
            error = str(e)
        if error is None:
            telemetry.WEBHOOK_DELIVERIES.labels("delivered").inc()
            await self._db(self.store.webhook_delivered, job_id)
            return
        failures = attempts + 1
        retry = (None if failures > self.cfg.webhook_retries
                 else backoff(self.cfg.webhook_backoff_s, failures - 1))
        telemetry.WEBHOOK_DELIVERIES.labels("failed" if retry is None else "retry").inc()
        log.warning("webhook for job %s failed (attempt %d): %s", job_id, failures, error)
        await self._db(self.store.webhook_failed, job_id, error, retry)
