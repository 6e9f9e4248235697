"""The local worker: feeds batches chosen by the scheduler to the engine, one at a time.

Inference runs in one dedicated thread, so the event loop never waits on the engine and the
engine never runs two batches at once. A batch's futures are resolved the moment it finishes
and the next batch is dispatched straight away; the callers encode their images in their own
pool meanwhile, so encoding batch N overlaps inference of batch N+1.

Cancellation (a client hung up): a queued request leaves the scheduler at once, so it never
reaches the engine and its slot is free for the next request; a running request is marked,
and the engine is told to stop between steps once *every* request in its batch is gone.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

import swiftshot.pipeline
from swiftshot import telemetry
from swiftshot.config import PRIORITIES, Priority, Settings
from swiftshot.engines.base import Cancelled, Engine, EngineError
from swiftshot.runtime.aio import wait_event
from swiftshot.runtime.progress import Listener, Partial, Queued, Started
from swiftshot.runtime.scheduler import RANK, Scheduler, WorkItem
from swiftshot.spec import RenderSpec

log = logging.getLogger(__name__)


class Rejected(Exception):
    """The request was refused or gave up in the queue; carries what the HTTP layer answers."""

    def __init__(self, status: int, reason: str, retry_after_s: float = 0.0,
                 message: str = "") -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.message = message or reason


@dataclass
class Result:
    image: Image.Image
    queue_s: float
    infer_s: float
    batch_size: int


@dataclass
class _Slot:
    item: WorkItem
    spec: RenderSpec
    products: Mapping[str, Image.Image] | None
    future: asyncio.Future[Result]
    listener: Listener | None = None
    cancelled: bool = False
    started: float | None = None


RunBatch = Callable[..., list[Image.Image]]


class Worker:
    def __init__(self, engine: Engine, settings: Settings, *,
                 run_batch: RunBatch = swiftshot.pipeline.run_batch,
                 clock: Callable[[], float] = time.monotonic,
                 capacity_hint_s: float | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        hint = settings.scheduler.service_time_hint_s if capacity_hint_s is None else capacity_hint_s
        # Optional engine attributes: batch_gain (False: items are rendered in turn, so no
        # batching window) and max_batch_size (the most one call can take).
        self.scheduler = Scheduler(settings.scheduler, clock=clock, capacity_hint_s=hint,
                                   batch_gain=bool(getattr(engine, "batch_gain", True)),
                                   max_batch_size=getattr(engine, "max_batch_size", None))
        self._run_batch = run_batch
        self._takes_products = _accepts_keyword(run_batch, "products")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftshot-infer")
        self._ids = itertools.count(1)
        self._slots: dict[int, _Slot] = {}
        self._tags: dict[Hashable, int] = {}
        self._running: list[_Slot] = []
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.ready = False
        """True once start() has loaded the engine and run the warm-up shapes."""
        # Metric children looked up once: labels() costs more than the update on this path.
        self._depth_gauges = {p: telemetry.QUEUE_DEPTH.labels(priority=p) for p in PRIORITIES}
        self._depth_shown: dict[str, int] = {}
        self._queue_hist = telemetry.STAGE_DURATION.labels(stage="queue")
        self._infer_hist = telemetry.STAGE_DURATION.labels(stage="infer")
        self._generations = telemetry.GENERATIONS.labels(engine=engine.name)

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and warm the engine in the inference thread, then start dispatching."""
        loop = asyncio.get_running_loop()
        shapes = list(self.settings.server.warmup_shapes)
        await loop.run_in_executor(self._executor, self._load, shapes)
        self._loop_task = asyncio.create_task(self._dispatch_loop(), name="swiftshot-dispatch")
        self.ready = True

    def _load(self, shapes: Sequence[tuple[int, int]]) -> None:
        self.engine.load()
        if shapes:
            self.engine.warmup(shapes)

    async def drain(self, timeout_s: float) -> None:
        """Refuse new work (503 draining) and wait up to ``timeout_s`` for what is queued or
        running to finish."""
        self.scheduler.set_draining(True)
        self.ready = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s  # wall time, whatever clock the scheduler is given
        while (len(self.scheduler) or self._running) and loop.time() < deadline:
            if self._loop_task is None or self._loop_task.done():
                break  # nothing will ever run what is queued
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stop dispatching; fail what is still queued; ask a running batch to stop."""
        self.scheduler.set_draining(True)
        self.ready = False
        self._stopped = True
        for slot in list(self._slots.values()):
            if slot.started is None and self.scheduler.cancel(slot.item.id):
                self._resolve_error(slot, self._stopping())
        # on_step now returns False, so a running batch stops at its next step; its callers
        # get a 503 (from _run's finally), not a cancellation they did not ask for.
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - we are stopping anyway
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)
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
                     tag: Hashable | None = None, listener: Listener | None = None) -> Result:
        """Queue one normalised spec and wait for its image.

        ``tag`` (the cache key) names the request for :meth:`promote` while it is queued.
        ``listener`` hears ``Queued`` (position, ETA) at admission, ``Started`` when its batch
        reaches the engine, and the previews it asked for (``runtime.progress``).
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
        item = WorkItem(id=next(self._ids), batch_key=self.engine.batch_key(spec),
                        priority=priority, arrival=now, deadline=now + deadline_s)
        if listener is not None:  # what is ahead of it, measured before it joins the queue
            depth = self.scheduler.depth()
            ahead = len(self._running) + sum(n for p, n in depth.items()
                                             if RANK[p] <= RANK[priority])
            queued = Queued(ahead, self.scheduler.estimated_wait(priority))
        admission = self.scheduler.submit(item)
        if not admission.accepted:
            raise self._reject(Rejected(admission.status, admission.reason,
                                        admission.retry_after_s, admission.message))
        slot = _Slot(item, spec, products, asyncio.get_running_loop().create_future(),
                     listener)
        if listener is not None:
            listener.emit(queued)
        item.payload = slot
        self._slots[item.id] = slot
        if tag is not None:
            self._tags[tag] = item.id
        self._update_depth()
        self._wake.set()
        try:
            done, _ = await asyncio.wait({slot.future}, timeout=max(0.0, item.deadline - self.clock()))
            if not done:
                if self.scheduler.cancel(item.id):
                    self._resolve_error(slot, self._deadline_rejection(slot))
                # Otherwise it is running: it is nearly done, so let it finish.
            return await asyncio.shield(slot.future)
        except asyncio.CancelledError:
            # The caller went away. Queued: leave the queue now, freeing the slot.
            # Running: mark it, so the batch stops if nobody else wants it.
            if not self.scheduler.cancel(item.id):
                slot.cancelled = True
            if not slot.future.done():
                slot.future.cancel()
            raise
        finally:
            self._slots.pop(item.id, None)
            if tag is not None and self._tags.get(tag) == item.id:
                del self._tags[tag]
            self._update_depth()

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
            await self._run(items)

    def _fail_expired(self) -> None:
        for item in self.scheduler.expired():
            slot: _Slot = item.payload
            self._resolve_error(slot, self._deadline_rejection(slot))

    async def _run(self, items: list[WorkItem]) -> None:
        slots: list[_Slot] = [it.payload for it in items]
        start = self.clock()
        for slot in slots:
            slot.started = start
            self._queue_hist.observe(start - slot.item.arrival)
            if slot.listener is not None:
                slot.listener.emit(Started())
        self._running = slots
        ok = False
        try:
            loop = asyncio.get_running_loop()
            images = await loop.run_in_executor(self._executor, self._infer, slots, loop)
            ok = True
        except Cancelled:
            for slot in slots:
                self._resolve_error(slot, self._stopping() if self._stopped else
                                    Rejected(499, "cancelled", 0.0, "the client went away"))
        except Exception as e:  # noqa: BLE001 - an engine failure fails this batch only
            if not isinstance(e, EngineError):
                log.exception("engine %s failed on a batch of %d", self.engine.name, len(slots))
            for slot in slots:
                self._resolve_error(slot, e)
        else:
            infer_s = self.clock() - start
            self._infer_hist.observe(infer_s)
            telemetry.BATCH_SIZE.observe(len(slots))
            self._generations.inc(len(images))
            for slot, image in zip(slots, images, strict=True):
                if not slot.future.done():
                    slot.future.set_result(Result(image, start - slot.item.arrival, infer_s,
                                                  len(slots)))
        finally:
            self._running = []
            self.scheduler.record(len(items), self.clock() - start, ok=ok,
                                  cost=sum(it.cost for it in items))
            for slot in slots:  # every future resolved, whatever happened above
                self._resolve_error(slot, self._stopping() if self._stopped else
                                    EngineError("the batch ended without a result"))

    def _infer(self, slots: Sequence[_Slot], loop: asyncio.AbstractEventLoop) -> list[Image.Image]:
        """Runs in the inference thread."""
        if self._stopped or all(s.cancelled for s in slots):
            raise Cancelled("every request of the batch went away before it started")
        specs = [s.spec for s in slots]

        def on_step(i: int, n: int, preview: Any) -> bool:
            if preview is not None:
                _send_previews(loop, slots, preview)
            return not (self._stopped or all(s.cancelled for s in slots))

        # the engine decodes previews only if someone in this batch wants them
        on_step.previews = max((s.listener.partials for s in slots if s.listener), default=0)  # type: ignore[attr-defined]

        products: dict[str, Image.Image] = {}
        for s in slots:
            if s.products:
                products.update(s.products)
        if self._takes_products:
            images = self._run_batch(self.engine, specs, on_step, products=products)
        elif products:
            raise EngineError("pipeline.run_batch does not take product images yet")
        else:
            images = self._run_batch(self.engine, specs, on_step)
        images = list(images)
        if len(images) != len(specs):
            raise EngineError(f"engine {self.engine.name} returned {len(images)} images for "
                              f"{len(specs)} specs")
        return images

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


def _send_previews(loop: asyncio.AbstractEventLoop, slots: Sequence[_Slot], preview: Any) -> None:
    """Hand each slot's preview (a list, one per spec; or one image for the first) to its
    listener on the event loop."""
    images = preview if isinstance(preview, (list, tuple)) else [preview]
    for slot, image in zip(slots, images, strict=False):
        if slot.listener is not None and slot.listener.partials and not slot.cancelled \
                and image is not None:
            loop.call_soon_threadsafe(slot.listener.emit, Partial(0, image))


def _accepts_keyword(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
