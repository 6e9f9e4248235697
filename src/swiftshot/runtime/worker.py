"""The front dispatcher: feeds batches chosen by the scheduler to an :class:`Executor`.

The engine itself runs behind the executor seam (runtime/executor.py): in a thread of this
process (``inline``), in engine worker processes (``process``), or in Ray Serve replicas
(``ray``). This class keeps what belongs to the front: the pure scheduler (classes, deadlines,
admission, batching), up to ``executor.slots`` batches in flight at once, deadlines for every
wait, cancellation, progress events, metrics, and a batch whose worker died retried once
elsewhere before its callers get a 503 ``worker_lost``.

Cancellation (a client hung up): a queued request leaves the scheduler at once, so it never
reaches the engine and its slot is free for the next request; a running request is reported
to the executor (``abort``), which stops the batch between steps once *every* request in it
is gone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

import swiftshot.pipeline
from swiftshot import telemetry
from swiftshot.config import PRIORITIES, Priority, Settings
from swiftshot.engines.base import Cancelled, Engine, EngineError
from swiftshot.errors import ServiceError, WorkerLost
from swiftshot.runtime.aio import wait_event
from swiftshot.runtime.executor import (
    Batch,
    BatchResult,
    Executor,
    InlineExecutor,
    Item,
    ItemResult,
)
from swiftshot.runtime.progress import Event, Listener, Queued, Started
from swiftshot.runtime.scheduler import RANK, Scheduler, WorkItem
from swiftshot.spec import RenderSpec

log = logging.getLogger(__name__)

UNSTARTED_RESENDS = 4
"""Times a batch lost while still waiting inside its worker is sent again uncounted
(:meth:`Worker._submit`); a worker that keeps dying under other batches' inputs is bounded by
their own isolation, and this bounds the rest."""


class Rejected(ServiceError):
    """The request was refused or gave up in the queue (a :class:`ServiceError`; ``reason`` is
    its ``code``, ``retry_after_s`` its ``retry_after``)."""

    def __init__(self, status: int, reason: str, retry_after_s: float = 0.0,
                 message: str = "") -> None:
        super().__init__(message or reason, status=status, code=reason,
                         retry_after=retry_after_s)


@dataclass
class Result:
    image: Image.Image | None
    """The decoded image (``inline`` only; None when the master crossed as bytes)."""
    queue_s: float
    infer_s: float
    batch_size: int
    master: bytes | None = None
    """The encoded master when the executor encoded it (``process``, ``ray``)."""
    master_s: float = 0.0
    width: int = 0
    height: int = 0
    worker: str = ""
    variants: dict[tuple[str, int], bytes] | None = None
    """Delivery variants the worker encoded beside the master (format, quality) → bytes."""
    variant_s: float = 0.0
    """This item's share of the worker's delivery-variant encoding."""
    hop_s: float = 0.0
    """Seconds from handing the batch to the executor until its result was back here, less
    the work the worker reported (engine + ops + master + variants): the executor's own cost
    (pickling, the pipe or Ray hop, wake-ups). 0 for ``inline`` up to thread hand-offs."""
    spans: list[tuple[str, int, int]] | None = None
    """The worker's stages for this request (engine, ops, encode; epoch ns), for tracing."""
    stored: asyncio.Future[bytes | None] | None = None
    """When the engine worker writes this render's cache entries itself (``submit``'s
    ``store``; ``master`` is then None): resolves to None once they are on disk, or to the
    master's bytes when the worker could not write them (the caller stores them then)."""
    quality: dict[str, Any] | None = None
    """What the preset's check and the cutout said of the image, from the executor's worker
    (``ItemResult.quality``); None when the image itself is here (``inline``)."""


@dataclass
class _Slot:
    item: WorkItem
    spec: RenderSpec
    products: Mapping[str, Image.Image] | None
    future: asyncio.Future[Result]
    listener: Listener | None = None
    cancelled: bool = False
    started: float | None = None
    store: tuple[str, float | None, tuple[str, ...]] | None = None
    on_start: Callable[[], object] | None = None
    """Called as the request's batch is handed to the executor (``submit``'s ``on_start``)."""


RunBatch = Callable[..., list[Image.Image]]
"""``pipeline.run_batch``'s shape (tests inject their own)."""


class Worker:
    def __init__(self, engine: Engine | Executor, settings: Settings, *,
                 run_batch: RunBatch = swiftshot.pipeline.run_batch,
                 clock: Callable[[], float] = time.monotonic,
                 capacity_hint_s: float | None = None) -> None:
        """``engine``: an :class:`Executor`, or an engine object (run ``inline`` through
        ``run_batch``)."""
        if isinstance(engine, Executor):
            self.executor: Executor = engine
            self.engine: Engine | None = getattr(engine, "engine", None)
        else:
            self.executor = InlineExecutor(engine, settings, run_batch=run_batch)
            self.engine = engine
        self.info = self.executor.describe()
        self.settings = settings
        self.clock = clock
        hint = settings.scheduler.service_time_hint_s if capacity_hint_s is None else capacity_hint_s
        self.scheduler = Scheduler(settings.scheduler, clock=clock, capacity_hint_s=hint,
                                   batch_gain=self.info.batch_gain,
                                   max_batch_size=self.info.max_batch_size)
        self._ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        self._slots: dict[int, _Slot] = {}
        self._tags: dict[Hashable, int] = {}
        self._running: dict[int, _Slot] = {}
        self._batches: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._idle_streak = 0
        """Dispatch turns where the scheduler said "due now" and handed out nothing (the
        loop then waits for a change instead of spinning; see _dispatch_once)."""
        self.ready = False
        """True once start() has loaded the engine and run the warm-up shapes."""
        # Metric children looked up once: labels() costs more than the update on this path.
        self._depth_gauges = {p: telemetry.QUEUE_DEPTH.labels(priority=p) for p in PRIORITIES}
        self._depth_shown: dict[str, int] = {}
        self._queue_hist = telemetry.STAGE_DURATION.labels(stage="queue")
        self._infer_hist = telemetry.STAGE_DURATION.labels(stage="infer")
        self._generations = telemetry.GENERATIONS.labels(engine=self.info.name)
        self._held_back = telemetry.SCHEDULER_HELD_BACK.labels(engine=self.info.name)
        self._lent = telemetry.SCHEDULER_LENT.labels(engine=self.info.name)
        self._held_back_shown = self._lent_shown = 0

    @property
    def slots(self) -> int:
        return max(1, self.executor.slots)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and warm the engine behind the executor, then start dispatching."""
        await self.executor.start()
        self._sync_capacity()
        self._loop_task = asyncio.create_task(self._dispatch_loop(), name="swiftshot-dispatch")
        self.ready = True

    async def drain(self, timeout_s: float) -> None:
        """Refuse new work (503 draining) and wait up to ``timeout_s`` for what is queued or
        running to finish."""
        self.scheduler.set_draining(True)
        self.ready = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s  # wall time, whatever clock the scheduler is given
        # _batches too: a batch taken from the scheduler is in neither the queue nor _running
        # until its task takes its first step (drain returned early there on a loaded box);
        # _slots too: a result is set a few loop turns before its caller has it (submit
        # leaves _slots as it returns), and drain promises answered callers
        while (len(self.scheduler) or self._running or self._batches or self._slots) \
                and loop.time() < deadline:
            if self._loop_task is None or self._loop_task.done():
                break  # nothing will ever run what is queued
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop dispatching; fail what is still queued; stop running batches (their callers
        get a 503, not a cancellation they did not ask for)."""
        self.scheduler.set_draining(True)
        self.ready = False
        self._stopped = True
        for slot in list(self._slots.values()):
            if slot.started is None and self.scheduler.cancel(slot.item.id):
                self._resolve_error(slot, self._stopping())
        self.executor.abort(list(self._running))
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - we are stopping anyway
                pass
        try:
            await self.executor.stop()
        finally:
            for task in list(self._batches):
                task.cancel()
            if self._batches:
                await asyncio.gather(*self._batches, return_exceptions=True)
            self._update_depth()

    def depth(self) -> dict[str, int]:
        """Queued requests per priority class, plus ``running`` (in the engine now)."""
        out: dict[str, int] = dict(self.scheduler.depth())
        out["running"] = len(self._running)
        return out

    # -- the request side ---------------------------------------------------------------------

    async def submit(self, spec: RenderSpec, priority: Priority = "standard",
                     deadline_s: float | None = None,
                     products: Mapping[str, Image.Image] | None = None,
                     tag: Hashable | None = None, listener: Listener | None = None,
                     store: tuple[str, float | None, tuple[str, ...]] | None = None,
                     on_start: Callable[[], object] | None = None) -> Result:
        """Queue one normalised spec and wait for its image.

        ``tag`` (the cache key) names the request for :meth:`promote` while it is queued.
        ``listener`` hears ``Queued`` (position, ETA) at admission, ``Started`` when its batch
        reaches the engine, and the previews it asked for (``runtime.progress``).
        ``store`` (key, ttl, tags): the executor's worker may write the render's cache entries
        itself (``Item.store``; honoured by ``process`` only): see ``Result.stored``.
        ``on_start`` is called, on the loop, as the request's batch is handed to the executor,
        just before it is sent: it must not block, only schedule what need not come before
        the render (Service: the disk tier's look-up of a miss, on a timer).
        :meth:`settle` may answer the request meanwhile.
        Raises :class:`Rejected` when the scheduler refuses it or its deadline passes while it
        is still queued; engine errors propagate as they are.
        """
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        if deadline_s is None:
            deadline_s = self.settings.scheduler.deadline_ms[priority] / 1000.0
        elif not deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0 seconds; got {deadline_s}")
        if self._stopped:
            raise self._reject(Rejected(503, "draining", 1.0, "the server is shutting down"))
        now = self.clock()
        item = WorkItem(id=next(self._ids), batch_key=self.info.batch_key(spec),
                        priority=priority, arrival=now, deadline=now + deadline_s)
        if listener is not None:  # what is ahead of it, measured before it joins the queue
            depth = self.scheduler.depth()
            ahead = len(self._running) + sum(n for p, n in depth.items()
                                             if RANK[p] <= RANK[priority])
            queued = Queued(ahead, self.scheduler.estimated_wait(priority))
        free = len(self._batches) < self.slots
        if free:
            self._sync_capacity()
        admission = self.scheduler.submit(item, start=free)
        if not admission.accepted:
            raise self._reject(Rejected(admission.status, admission.reason,
                                        admission.retry_after_s, admission.message))
        slot = _Slot(item, spec, products, asyncio.get_running_loop().create_future(),
                     listener, store=store, on_start=on_start)
        if listener is not None:
            listener.emit(queued)
        item.payload = slot
        self._slots[item.id] = slot
        if tag is not None:
            self._tags[tag] = item.id
        if admission.started:  # alone and a slot free: its batch of one starts now
            # Never queued: the depth gauges stand, and the dispatch loop has nothing to do
            # (woken, it would take a turn of the loop beside the batch's first step only to
            # wait again). Only a lent reserve moves a counter here.
            self._launch([item])
            if self.scheduler.lent != self._lent_shown:
                self._update_depth()
        else:
            self._update_depth()
            self._start_due()  # a free slot takes it now, not on the dispatch loop's next turn
            self._wake.set()
        # The deadline is a timer, not asyncio.wait: the batch's answer wakes this task in one
        # step instead of two (the waiter future of asyncio.wait, then the task).
        timer = asyncio.get_running_loop().call_later(
            max(0.0, item.deadline - self.clock()), self._expire, slot)
        try:
            return await slot.future
        except asyncio.CancelledError:
            # The caller went away. Queued: leave the queue now, freeing the slot.
            # Running: tell the executor, so the batch stops if nobody else wants it.
            if not self.scheduler.cancel(item.id):
                slot.cancelled = True
                if item.id in self._running:
                    self.executor.abort([item.id])
            if not slot.future.done():
                slot.future.cancel()
            raise
        finally:
            timer.cancel()
            self._slots.pop(item.id, None)
            if tag is not None and self._tags.get(tag) == item.id:
                del self._tags[tag]
            if not admission.started:  # it may have left the queue (hang-up, deadline)
                self._update_depth()

    def idle_now(self) -> bool:
        """Whether a request submitted now would start at once: nothing queued, a free slot."""
        return not self._stopped and not len(self.scheduler) and len(self._batches) < self.slots

    def settle(self, tag: Hashable, value: Any) -> bool:
        """Answer the request ``tag`` (queued or running) with ``value`` now, without its
        render: it was found elsewhere (Service: the disk tier had it). Its render is then
        wanted no more and is stopped as for a caller who hung up (left out of the queue, or
        the executor told to abort it). False when no such request waits."""
        item_id = self._tags.get(tag)
        slot = self._slots.get(item_id) if item_id is not None else None
        if slot is None or slot.future.done():
            return False
        slot.future.set_result(value)
        if not self.scheduler.cancel(slot.item.id):
            slot.cancelled = True
            if slot.item.id in self._running:
                self.executor.abort([slot.item.id])
        return True

    def promote(self, tag: Hashable, priority: Priority, deadline_s: float | None = None) -> bool:
        """A ``priority`` caller now waits for the queued request ``tag`` too (it joined it
        through single-flight): raise that request's class and tighten its deadline, so a
        realtime caller does not wait at the batch priority of whoever asked first. False when
        no such request is queued (it runs already, or never was) or nothing changes."""
        item_id = self._tags.get(tag)
        if item_id is None:
            return False
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}; got {priority!r}")
        if deadline_s is None:
            deadline_s = self.settings.scheduler.deadline_ms[priority] / 1000.0
        promoted = self.scheduler.promote(item_id, priority, self.clock() + deadline_s)
        if promoted:
            self._update_depth()
            self._wake.set()  # the head, or its batching window, may have changed
        return promoted

    def _expire(self, slot: _Slot) -> None:
        """``submit``'s deadline: a request still queued leaves the queue with 503 ``deadline``;
        one running is nearly done, so it is let finish."""
        if not slot.future.done() and self.scheduler.cancel(slot.item.id):
            self._resolve_error(slot, self._deadline_rejection(slot))

    def _deadline_rejection(self, slot: _Slot) -> Rejected:
        waited = self.clock() - slot.item.arrival
        return self._reject(Rejected(
            503, "deadline", self.scheduler._retry_after(slot.item.priority),
            f"waited {waited:.2f}s in the {slot.item.priority} queue and reached its deadline "
            f"before a worker was free; retry later"))

    @staticmethod
    def _reject(exc: Rejected) -> Rejected:
        telemetry.REJECTED.labels(reason=exc.reason).inc()
        return exc

    # -- the engine side ----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while not self._stopped:
            try:
                await self._dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a dead loop would hang every queued request
                log.exception("worker dispatch loop failed; carrying on")
                await asyncio.sleep(0.01)

    async def _dispatch_once(self) -> None:
        self._wake.clear()
        self._fail_expired()
        self._sync_capacity()  # workers die, replicas scale: the count moves
        if len(self._batches) >= self._limit():
            await self._wake.wait()  # a batch finishing (or a realtime arrival) sets it
            return
        delay = self.scheduler.dispatch_delay()
        if delay is None:
            await self._wake.wait()
            return
        if delay > 0:
            await wait_event(self._wake, delay)
            return
        items = self.scheduler.next_batch()
        self._fail_expired()
        self._update_depth()
        if items:
            self._idle_streak = 0
            self._launch(items)
            return
        # "Due now" and yet nothing handed out. Once may be honest (the head expired in
        # between: ask again); twice running, wait for a change instead — this coroutine
        # never yields otherwise, and a loop that does not yield starves the event loop, every
        # batch's answer included (the Ray benchmark with batches sent ahead stalled so at 2
        # replicas: the scheduler said "the reserve's loan begins now" while already lent).
        # Bounded, in case nothing sets the event.
        self._idle_streak += 1
        if self._idle_streak == 1:
            await asyncio.sleep(0)
        else:
            await wait_event(self._wake, 0.05)

    def _sync_capacity(self) -> None:
        """The scheduler's view of the executor: batches that run at once, and those that may
        be sent ahead to wait inside its workers (Ray's ``pipeline_depth``)."""
        self.scheduler.slots = self.slots
        self.scheduler.ahead = max(0, int(getattr(self.executor, "ahead", 0)))

    def _launch(self, items: list[WorkItem]) -> None:
        task = asyncio.create_task(self._run(items), name="swiftshot-batch")
        self._batches.add(task)
        task.add_done_callback(self._batch_done)

    def _start_due(self) -> None:
        """Launch every batch that may start now, here rather than on the dispatch loop's next
        turn: on a front short of CPU each turn of the event loop costs milliseconds (tens
        under 1.5x load), paid once when a request arrives to a free slot and twice when a
        finishing batch hands its slot on. What must wait (a batching window, lower-class work
        held for the reserved slot) is left to the dispatch loop.

        Never raises: it runs inside a request's ``submit`` and a batch's end, and a scheduler
        error there must not fail that request (the dispatch loop, woken, carries on as it does
        after its own errors)."""
        try:
            while not self._stopped and len(self._batches) < self.slots:
                self._sync_capacity()
                if self.scheduler.dispatch_delay() != 0:
                    break
                items = self.scheduler.next_batch()
                self._fail_expired()
                if not items:
                    break
                self._launch(items)
            self._update_depth()
        except Exception:  # noqa: BLE001 - left to the dispatch loop, as its own errors are
            log.exception("worker dispatch loop failed (immediate start); carrying on")
            self._wake.set()

    def _limit(self) -> int:
        """Batches this front may have out at once: ``slots`` that run, plus what the executor
        lets it send ahead to wait inside its workers (``ahead``, ray's pipelining), plus, while
        a realtime request is queued, the places kept for realtime (``reserve``)."""
        limit = self.slots + getattr(self.executor, "ahead", 0)
        reserve = getattr(self.executor, "reserve", 0)
        if reserve and self.scheduler.depth().get("realtime"):
            limit += reserve
        return limit

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if len(self.scheduler) or self._stopped:
            # a slot is free for what is queued. Nothing queued: the dispatch loop has nothing
            # to hand out, and what arrives next wakes it itself (``submit``); a turn of the
            # loop per lone miss saved
            self._wake.set()

    def _fail_expired(self) -> None:
        for item in self.scheduler.expired():
            slot: _Slot = item.payload
            self._resolve_error(slot, self._deadline_rejection(slot))

    def _event(self, item_id: int, event: Event) -> None:
        """A progress event from the executor (on the loop)."""
        slot = self._running.get(item_id)
        if slot is None or slot.listener is None or slot.cancelled:
            return
        if isinstance(event, Started):
            return  # sent once by _run when the batch is dispatched
        slot.listener.emit(event)

    async def _run(self, items: list[WorkItem]) -> None:
        slots: list[_Slot] = [it.payload for it in items]
        start = self.clock()
        for slot in slots:
            slot.started = start
            self._queue_hist.observe(start - slot.item.arrival)
            self._running[slot.item.id] = slot
            if slot.listener is not None:
                slot.listener.emit(Started())
        products: dict[str, Image.Image] = {}
        for slot in slots:
            if slot.products:
                products.update(slot.products)
        batch = Batch(next(self._batch_ids),
                      [Item(s.item.id, s.spec, s.listener.partials if s.listener else 0,
                            s.store) for s in slots], products, telemetry.trace_carrier(),
                      rank=min(RANK[s.item.priority] for s in slots))
        ok = False
        waited = 0.0  # seconds the batch waited inside its worker (sent ahead), not serviced
        for slot in slots:
            if slot.on_start is not None:
                slot.on_start()
        try:
            sent = self.clock()
            out = await self._submit(batch)
            round_trip = self.clock() - sent
            ok = True
        except Cancelled:
            for slot in slots:
                self._resolve_error(slot, self._stopping() if self._stopped else
                                    Rejected(499, "cancelled", 0.0, "the client went away"))
        except Exception as e:  # noqa: BLE001 - a failure fails this batch only
            if not isinstance(e, ServiceError):
                log.exception("executor %s failed on a batch of %d", self.executor.kind,
                              len(slots))
            for slot in slots:
                self._resolve_error(slot, e)
        else:
            infer_s = out.infer_s
            waited = sum(b - a for n, a, b, _ in out.spans if n == "queue") / 1e9
            self._infer_hist.observe(infer_s)
            telemetry.BATCH_SIZE.observe(len(slots))
            telemetry.add_worker_metrics(out.worker or self.executor.kind, out.infer_s + out.master_s,
                                         out.metrics)
            made = 0
            n = max(1, len(slots))
            hop_s = max(0.0, round_trip - (out.infer_s + out.master_s + out.variant_s) - waited)
            by_id = {r.id: r for r in out.results}
            for slot in slots:
                r = by_id.get(slot.item.id)
                if r is None:
                    continue  # left out of a retry (its caller had gone): finally resolves it
                if r.error is not None:
                    self._resolve_error(slot, r.error)
                    continue
                made += 1
                if not slot.future.done():
                    slot.future.set_result(Result(
                        r.image, start - slot.item.arrival, infer_s, len(slots), r.master,
                        out.master_s / n, r.width, r.height, out.worker,
                        r.variants or None, out.variant_s / n, hop_s,
                        [(nm, a, b) for nm, a, b, i in out.spans if i is None or i == r.id],
                        r.stored if isinstance(r.stored, asyncio.Future) else None,
                        r.quality if r.image is None else None))
            self._generations.inc(made)
        finally:
            for slot in slots:
                self._running.pop(slot.item.id, None)
            self.scheduler.record(len(items), self.clock() - start - waited, ok=ok,
                                  cost=sum(it.cost for it in items), batch=items)
            for slot in slots:  # every future resolved, whatever happened above
                self._resolve_error(slot, self._stopping() if self._stopped else
                                    EngineError("the batch ended without a result"))
            # this slot is free: hand it on now (the done callback would wake the dispatch
            # loop, which launches a task: two more turns of the loop with the worker idle).
            # Nothing queued, nothing to hand on: the answer is not held up by the look
            # (~20 µs on the dev VM; the dispatch loop, woken, refreshes the gauges).
            task = asyncio.current_task()
            if task is not None and task in self._batches:
                self._batches.discard(task)
                if len(self.scheduler):
                    self._start_due()

    async def _submit(self, batch: Batch) -> BatchResult:
        """The executor's answer. A batch whose worker was lost is not simply rerun whole: one
        input may be what kills the worker (a segfault, an ``os._exit`` in native code), and
        rerunning it with its batch-mates would take them down again. So the batch is split
        in halves, each retried on its own (on other workers, or the restarted one), and a half
        lost again is split again; an item fails — 503 ``worker_lost``, naming what happened —
        only once it has been lost twice while alone in its batch. A worker killed from
        outside costs each request at most one retry; a poisonous input fails alone after
        ``log2(n) + 2`` worker deaths, and its batch-mates are answered."""
        try:
            out = await self._send(batch)
        except WorkerLost as e:
            if self._stopped:
                raise
            log.warning("batch %d (%d items) lost its worker (%s); retrying it in parts",
                        batch.id, len(batch.items), e.message)
            lost = {it.id: 1 for it in batch.items}
            alone = {it.id: int(len(batch.items) == 1) for it in batch.items}
            parts: list[BatchResult] = []
            results = await self._isolate(batch, self._wanted(batch.items), lost, alone, parts,
                                          e)
            if not results:
                raise Cancelled("every request of the batch went away") from None
            batch.items = [it for it in batch.items if it.id in {r.id for r in results}]
            out = BatchResult(results, sum(p.infer_s for p in parts),
                              sum(p.master_s for p in parts),
                              parts[-1].worker if parts else "",
                              variant_s=sum(p.variant_s for p in parts))
            for p in parts:
                telemetry.merge_metric_deltas(out.metrics, p.metrics)
                out.spans.extend(p.spans)
        if len(out.results) != len(batch.items):
            raise EngineError(f"executor returned {len(out.results)} results for "
                              f"{len(batch.items)} items")
        return out

    async def _send(self, batch: Batch) -> BatchResult:
        """``executor.submit``, sent again as it is when its worker was lost before the batch
        started (``WorkerLost.started`` False: it waited behind another batch, Ray's
        ``pipeline_depth``) — that loss says nothing about its inputs, so crash isolation does
        not count it. At most ``UNSTARTED_RESENDS`` times; then the loss counts as usual."""
        for _ in range(UNSTARTED_RESENDS):
            try:
                return await self.executor.submit(batch, self._event)
            except WorkerLost as e:
                if self._stopped or e.started:
                    raise
                if not self._wanted(batch.items):
                    raise Cancelled("every request of the batch went away") from None
                log.warning("batch %d (%d items) was waiting in a worker that was lost (%s); "
                            "sending it again", batch.id, len(batch.items), e.message)
        return await self.executor.submit(batch, self._event)

    def _wanted(self, items: list[Item]) -> list[Item]:
        """The items someone still waits for."""
        return [it for it in items
                if (s := self._running.get(it.id)) is not None and not s.cancelled]

    async def _isolate(self, batch: Batch, items: list[Item], lost: dict[int, int],
                       alone: dict[int, int], parts: list[BatchResult],
                       last: WorkerLost) -> list[ItemResult]:
        """Retry ``items`` of a batch whose worker was lost: halves, recursively (see
        :meth:`_submit`). Results for the items still wanted, in order."""
        items = self._wanted(items)
        if not items:
            return []
        if len(items) == 1 and alone[items[0].id] >= 2:
            n = lost[items[0].id]
            return [ItemResult(items[0].id, error=WorkerLost(
                f"the engine worker died {'twice' if n == 2 else f'{n} times'} running this "
                f"request (the last {alone[items[0].id]} times alone in its batch): this input "
                f"may crash the engine; its batch-mates were answered. Last: {last.message}",
                retry_after=1.0))]
        if len(items) == 1:
            halves = [items]
        else:
            mid = (len(items) + 1) // 2
            halves = [items[:mid], items[mid:]]
        telemetry.REJECTED.labels(reason="worker_lost_retry").inc(len(halves))

        async def one(part: list[Item]) -> list[ItemResult]:
            sub = Batch(next(self._batch_ids), part, batch.products, batch.trace,
                        rank=batch.rank)
            try:
                out = await self._send(sub)
            except WorkerLost as e:
                if self._stopped:
                    raise
                for it in part:
                    lost[it.id] += 1
                    if len(part) == 1:
                        alone[it.id] += 1
                log.warning("a retry of %d item(s) of batch %d lost its worker again (%s)",
                            len(part), batch.id, e.message)
                return await self._isolate(batch, part, lost, alone, parts, e)
            if len(out.results) != len(part):
                raise EngineError(f"executor returned {len(out.results)} results for "
                                  f"{len(part)} items")
            parts.append(out)
            return out.results

        got = await asyncio.gather(*(one(h) for h in halves), return_exceptions=True)
        out: list[ItemResult] = []
        for part, rs in zip(halves, got, strict=True):
            if isinstance(rs, Cancelled):
                continue  # every caller of that part went away
            if isinstance(rs, ServiceError) and not self._stopped:
                out.extend(ItemResult(it.id, error=rs) for it in part)
            elif isinstance(rs, BaseException):
                raise rs
            else:
                out.extend(rs)
        return out

    @staticmethod
    def _stopping() -> Rejected:
        return Rejected(503, "shutting_down", 1.0, "the server stopped before this request "
                        "finished; retry")

    @staticmethod
    def _resolve_error(slot: _Slot, exc: BaseException) -> None:
        if slot.future.done():
            return
        if slot.cancelled:
            slot.future.cancel()  # nobody is waiting: an exception would only be logged unread
        else:
            slot.future.set_exception(exc)

    def _update_depth(self) -> None:
        for p, n in self.scheduler.depth().items():
            if self._depth_shown.get(p) != n:
                self._depth_gauges[p].set(n)
                self._depth_shown[p] = n
        # the scheduler's own counts of the realtime reserve at work, on /metrics
        sched = self.scheduler
        if sched.held_back != self._held_back_shown:
            self._held_back.inc(max(0, sched.held_back - self._held_back_shown))
            self._held_back_shown = sched.held_back
        if sched.lent != self._lent_shown:
            self._lent.inc(max(0, sched.lent - self._lent_shown))
            self._lent_shown = sched.lent
