"""The ``process`` executor: N engine worker processes on this machine.

Each worker is a spawned Python process that builds, loads and warms one engine, then runs one
batch at a time: engine → ops (cutout, compose, shadow, preset) → lossless master encode, all in
the worker, so the front's event loop and GIL do none of that work. The front talks to each
worker over one ``multiprocessing`` pipe, plus (``engine.lower_class_nice`` > 0) a one-way pipe
that carries the batches which run on the worker's lowered thread (``runs_lowered``) and their
aborts, read by that thread itself; every answer comes back on the first:

    front → worker   ("batch", batch_id, items_json, products, trace, rank)   items: spec JSON +
                                                                  partials + store; rank: Batch.rank
                     ("abort", [item ids])                                products: packed pixels
                     ("stop",)
    worker → front   ("ready", engine_info_json) | ("failed", message)   once, after warm-up
                     ("partial", item_id, packed_preview)
                     ("done", batch_id, wire)    a BatchResult as plain tuples (result_to_wire):
                                                  masters and variants
                                                  as ShmRef(offset, length) into the worker's
                                                  shared-memory segment (runtime/shm.py), or
                                                  bytes when it is off or they do not fit
                     ("cancelled", batch_id) | ("error", batch_id, ServiceError)
                     ("stored", batch_id, [item ids], worker, metric deltas)   after "done":
                                                  which items' cache entries the worker wrote
                                                  to disk itself, and what the batch counted

A miss whose item carries ``store`` (key, ttl, tags: ``Item.store``, asked by the Service
when its cache is memory over this machine's disk tier) is stored by the worker: it answers
"done" with the delivered variant by shared memory and the master left in its segment (the
front does not copy it), *then* copies the master into its segment (sealed: ``ShmRef.seal``,
so the front never trusts a half-copied one), writes meta, master and variants to the disk tier
(tag rows first, under the tier's shared lock: store/tiers.py) and says "stored", with the
batch's metric deltas (taken after the answer, not before it). Until then the worker
takes no other batch, so its segment still holds the master: a write that failed, a worker
that died or was stopped first, or one that took longer than ``engine.batch_timeout_s`` (then
it is killed) has the front copy the master out and store it itself. So the answer never
waits for the disk, the front never copies or writes the 1 MB master of a miss, and nothing
accepted is lost.

The front's event loop reads each worker's pipe itself (``loop.add_reader``,
runtime/pipe_reader.py: no reader thread, no hand-off); the worker's main thread reads its end
between batches and, for aborts, between steps. A worker that dies
(EOF on its pipe: SIGKILL, a segfault, out of memory) fails its batch with ``WorkerLost`` — the
front's dispatcher retries that batch once on another worker, then answers 503 — and is
restarted in the background (``swiftshot_worker_restarts_total``). A batch that outlives
``engine.batch_timeout_s`` has its worker killed the same way, so no request can hang on a stuck
engine. A worker whose parent dies sees EOF and exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import multiprocessing as mp
import os
import pickle
import select
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swiftshot import telemetry
from swiftshot.config import Settings
from swiftshot.errors import ServiceError, WorkerLost, as_service_error
from swiftshot.runtime.executor import (
    Batch,
    BatchResult,
    EngineInfo,
    EventCallback,
    Health,
    Item,
    ItemResult,
    WorkerState,
    describe_engine,
    pack_image,
    pack_product,
    run_items,
    unpack_image,
    unpack_product,
)
from swiftshot.runtime.pipe_reader import PipeReader
from swiftshot.runtime.progress import Partial
from swiftshot.runtime.shm import ResultArea, ShmRef

log = logging.getLogger(__name__)


class Waiting:
    """Whether a message waits on ``conn``, asked without blocking: one ``poll(2)`` on a poller
    made once. ``Connection.poll(0)`` builds a selector, registers the connection and closes
    the selector again on every call (3.2 µs against 0.3 hot on the dev VM, and more after
    idleness), and an engine worker asks after each message it takes and before and between
    the steps of each batch (aborts). End of file counts as waiting (``POLLHUP``), as it does
    for ``Connection.poll``: the read that follows finds it."""

    __slots__ = ("_poller",)

    def __init__(self, conn: Any) -> None:
        self._poller = select.poll()
        self._poller.register(conn.fileno(), select.POLLIN)

    def __call__(self) -> bool:
        return bool(self._poller.poll(0))


def send_message(conn: Any, msg: Any) -> None:
    """``conn.send(msg)`` with the plain pickler: ``Connection.send`` pickles with
    ``ForkingPickler``, which copies copyreg's dispatch table into each new pickler (2.1 µs
    against 0.7 for a batch hot on the dev VM). The messages between the front and its workers
    are plain data (tuples, str, bytes, numbers, ``ServiceError``s), which need none of its
    reducers; the reading end unpickles either alike."""
    conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))


START_TIMEOUT_S = 300.0
"""Longest a worker may take to load and warm up before it counts as failed."""
STORE_LOCK_WAIT_S = 0.02
"""How long a worker waits for the disk tier's tag lock before it leaves a miss's store to the
front: a purge of a large tag holds the lock exclusively for its whole delete loop, and a
worker that waited for it would take no batch meanwhile (realtime included)."""


def default_workers(engine: str, settings: Settings) -> int:
    """One worker per GPU for a GPU engine, else one per CPU core."""
    if engine == "diffusion" and settings.engine.diffusion.device != "cpu":
        try:
            import torch

            if torch.cuda.is_available():
                return max(1, torch.cuda.device_count())
        except Exception:  # noqa: BLE001 - no torch, no GPU
            pass
    return max(1, os.cpu_count() or 1)


# -- the worker process ---------------------------------------------------------------------------


def runs_lowered(rank: int, lower_class_nice: int) -> bool:
    """Whether a batch of this class rank (``Batch.rank``: 0 realtime … 3 prefetch) runs on the
    worker's lowered thread: every batch without a realtime item, when the setting is on."""
    return lower_class_nice > 0 and rank > 0


def _lower_this_thread(by: int) -> None:
    """Raise the calling thread's niceness by ``by`` (Linux: per thread; capped at 19)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except Exception:  # noqa: BLE001 - not Linux: the batch runs at the worker's priority
        pass


class Cv2Threads:
    """OpenCV's thread count in an engine worker process, chosen per batch: ``plain`` threads
    (``engine.worker_cv2_threads``; 0: OpenCV's default) for a batch without a product photo,
    OpenCV's default for one with a product photo. Set only when it changes (one call, ~10
    µs); the worker runs one batch at a time, so the process-wide setting is the batch's.
    Nothing is set (nor OpenCV imported) while the worker's engine and ops have not loaded it."""

    def __init__(self, plain: int) -> None:
        self.plain = plain
        self.default: int | None = None
        self.now: int | None = None

    def for_batch(self, has_products: bool) -> int | None:
        cv2 = sys.modules.get("cv2")
        if cv2 is None:
            return None
        if self.default is None:
            self.default = self.now = cv2.getNumThreads()
        want = self.default if has_products or not self.plain else self.plain
        if want != self.now:
            cv2.setNumThreads(want)
            self.now = want
        return want


def _worker_main(conn: Any, settings_json: dict[str, Any], engine: str, model: str | None,
                 index: int, gpu: int | None, shm_name: str | None = None,
                 lower_conn: Any = None) -> None:
    import signal

    from swiftshot.runtime.shm import ResultWriter

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front drains; Ctrl-C is its business
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from collections import deque

    from swiftshot import pipeline
    from swiftshot.delivery import codecs
    from swiftshot.engines.base import Cancelled
    from swiftshot.spec import RenderSpec, variant_key

    settings = Settings(**settings_json)
    # attached before "ready": the front removes the segment's name once it hears that
    writer = ResultWriter.attach(shm_name)
    if settings.engine.worker_nice:
        try:  # below the front: see EngineSettings.worker_nice
            os.nice(settings.engine.worker_nice)
        except OSError:
            pass
    cv2_threads = Cv2Threads(settings.engine.worker_cv2_threads)
    try:
        from swiftshot.service import build_engine

        pipeline.configure(settings.ops)
        eng = build_engine(settings, engine, model=model)
        eng.load()
        cv2_threads.for_batch(False)  # the warm-up renders plain backdrops
        shapes = list(settings.server.warmup_shapes)
        if shapes:
            eng.warmup(shapes)
        info = describe_engine(eng, model)
    except BaseException as e:  # noqa: BLE001 - reported to the front, which shows it on /readyz
        try:
            conn.send(("failed", f"{type(e).__name__}: {e}"))
        finally:
            os._exit(3)
    conn.send(("ready", info.to_json()))

    # Each thread that runs batches reads its pipe itself — waiting for the next batch, and
    # between a batch's steps (should_stop) for aborts — instead of a reader handing each
    # message over (a wake-up and a GIL hand-off per batch on a 2-core box:
    # docs/PERFORMANCE.md). This thread reads ``conn`` (realtime batches, and every batch
    # when lower_class_nice is 0); the lowered thread reads ``lower_conn``, which the front
    # sends the other classes' batches on, so they reach it without a hand-off either.
    batches: deque[Any] = deque()
    lower_batches: deque[Any] = deque()
    aborted: set[int] = set()
    stopping = False
    send_lock = threading.Lock()

    def send(msg: Any) -> None:
        with send_lock:  # both threads answer on ``conn`` (never at once: one batch at a time)
            send_message(conn, msg)

    waiting = {id(conn): Waiting(conn)}
    if lower_conn is not None:
        waiting[id(lower_conn)] = Waiting(lower_conn)

    def pump(wait: bool, src: Any = conn, queue: deque[Any] = batches) -> None:
        """Take every message waiting on ``src`` (with ``wait``, block for at least one)."""
        nonlocal stopping
        ready = waiting[id(src)]
        while not stopping and (wait or ready()):
            wait = False
            try:
                msg = src.recv()
            except (EOFError, OSError):
                os._exit(0)  # the front is gone: nobody will read our results
            if msg[0] == "batch":
                queue.append(msg)
            elif msg[0] == "abort":
                aborted.update(msg[1])
            elif msg[0] == "stop":
                stopping = True

    deltas = telemetry.MetricDeltas()
    deltas.take()  # what loading and warm-up counted is not any batch's
    encode = lambda im: codecs.encode_master(im, settings.delivery)  # noqa: E731
    qualities = dict(settings.delivery.quality)

    def encode_variant(im: Any, spec: Any) -> tuple[tuple[str, int], bytes]:
        # the variant the asking request delivers (Service.quality_for's rule)
        fmt = spec.output_format
        q = 100 if fmt == "png" else (spec.quality or qualities[fmt])
        data = codecs.encode(im, fmt, None if fmt == "png" else q,
                             source_type=pipeline.source_type_for(spec), settings=settings.delivery)
        return (fmt, q), data
    # Lower-class batches run on a thread of lower OS priority (engine.lower_class_nice; on
    # Linux niceness is per thread, and raising it needs no privilege), so that on a short CPU
    # the front's loop and a realtime render in the other worker get the cores first, while a
    # batch holding a realtime item keeps the worker's own priority. That thread reads its own
    # pipe (``lower_conn``), so a lower-class batch is not handed over from this thread (a
    # wake-up of a niced thread, ~0.1 ms a miss: docs/PERFORMANCE.md, fifth pass). One batch
    # runs at a time either way: the front sends a worker its next batch only after the last
    # one's answer (and its store).

    disk: Any = None  # this machine's disk cache tier, opened at the first store asked

    def disk_tier() -> Any:
        nonlocal disk
        if disk is None:
            c = settings.cache
            disk = False
            if c.disk_dir is not None and c.disk_bytes > 0:
                from swiftshot.store.tiers import DiskTier

                disk = DiskTier(c.disk_dir, c.disk_bytes)
        return disk or None

    def store(batch_id: int, kept: list[tuple[Any, Any, Any, Any]], pending: list[Any],
              name: str) -> None:
        """After "done": copy the kept masters into the segment (sealed: what the front falls
        back on), write each kept item's meta, master and variants; say which went, with
        what the batch counted (``MetricDeltas``)."""
        from swiftshot.service import Service, miss_entries

        done: list[int] = []
        try:
            assert writer is not None
            writer.fill(pending)
        except Exception:  # noqa: BLE001 - unsealed: the front knows they are not there
            log.exception("process-%d: copying batch %d's masters to shared memory failed",
                          index, batch_id)
        try:
            tier = disk_tier()
            for r, spec, (key, ttl, tags), (master, variants) in kept:
                entries = miss_entries(key, Service.meta_bytes(spec, (r.width, r.height),
                                                               r.quality),
                                       master, [(variant_key(key, fmt, q, None), v)
                                                for (fmt, q), v in variants.items()],
                                       ttl, tags)
                if tier is not None and tier.put_many(entries, lock_wait_s=STORE_LOCK_WAIT_S):
                    done.append(r.id)
        except Exception:  # noqa: BLE001 - the front stores what is not listed
            log.exception("process-%d: storing batch %d's results failed", index, batch_id)
        send(("stored", batch_id, done, name, deltas.take()))

    def run_one(batch_id: int, items_json: Any, products: Any, trace: Any) -> None:
        items = [Item(i, RenderSpec.model_validate_json(s), p, tuple(st) if st else None)
                 for i, s, p, st in items_json]
        ids = [it.id for it in items]
        batch = Batch(batch_id, items, {k: unpack_product(v) for k, v in products.items()},
                      trace)
        cv2_threads.for_batch(bool(products))

        src, queue = (conn, batches) if threading.current_thread() is threading.main_thread() \
            else (lower_conn, lower_batches)

        def should_stop(ids: list[int] = ids) -> bool:
            # aborts (or a stop) sent while this batch runs, on the pipe it came by
            pump(False, src, queue)
            return stopping or all(i in aborted for i in ids)

        def on_partial(item_id: int, image: Any) -> None:
            send(("partial", item_id, pack_image(image)))

        try:
            result = run_items(eng, batch, run_batch=pipeline.run_batch, should_stop=should_stop,
                               on_partial=on_partial, encode=encode,
                               encode_variant=encode_variant if settings.engine.worker_variants
                               else None)
            result.worker = f"{info.name}/process-{index}"
            kept = []
            pending: list[Any] = []
            if writer is not None:
                asked = {it.id: it for it in items if it.store is not None}
                held = {r.id: (r.master, dict(r.variants)) for r in result.results
                        if r.id in asked and r.master is not None}
                # the bytes by shared memory, references by the pipe; a master this worker
                # stores is copied in after "done" (``pending``): the front reads it only if
                # the store fails
                pending = writer.put(result, later=held)
                for r in result.results:
                    # stored here only when the master stays in the segment for the front
                    # to fall back on, and the variants cross by it too
                    if r.id in held and isinstance(r.master, ShmRef) and \
                            all(isinstance(v, ShmRef) for v in r.variants.values()):
                        r.stored = True
                        it = asked[r.id]
                        kept.append((r, it.spec, it.store, held[r.id]))
            # What the engine and ops counted here. A batch that this worker goes on to store
            # ships it with "stored" instead: taken after the answer is sent, not before.
            result.metrics = {} if kept else deltas.take()
            send(("done", batch_id, result_to_wire(result)))
            if kept:
                store(batch_id, kept, pending, result.worker)
        except Cancelled:
            send(("cancelled", batch_id))
        except BaseException as e:  # noqa: BLE001 - this batch fails; the worker goes on
            send(("error", batch_id, as_service_error(e)))
        finally:
            aborted.difference_update(ids)

    def serve(src: Any, queue: deque[Any]) -> None:
        while True:
            if not queue:
                pump(True, src, queue)
            if stopping:
                return
            _, batch_id, items_json, products, trace, _rank = queue.popleft()
            run_one(batch_id, items_json, products, trace)

    def serve_lowered() -> None:
        _lower_this_thread(settings.engine.lower_class_nice)
        serve(lower_conn, lower_batches)

    lower = None
    if lower_conn is not None:
        lower = threading.Thread(target=serve_lowered, name="swiftshot-worker-lower",
                                 daemon=True)
        lower.start()
    serve(conn, batches)
    if lower is not None:
        lower.join(5.0)  # the front sends "stop" on both pipes; a lost one must not hang us
    if disk:
        disk.close()
    conn.close()
    if lower_conn is not None:
        lower_conn.close()


# -- the "done" message ---------------------------------------------------------------------------
# A BatchResult crosses the pipe as plain tuples, not as the dataclasses themselves: pickling a
# dataclass (and a ShmRef, a NamedTuple) goes through its __reduce_ex__ and a class look-up per
# object, unpickling through __new__ and a __dict__ update; plain tuples are C all the way. On
# the miss's path twice (the worker's dumps, the front's loads): docs/PERFORMANCE.md, seventh
# pass.


_ITEM_FIELDS = tuple(f.name for f in dataclasses.fields(ItemResult))
_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(BatchResult))
"""Every field, in declaration order (the worker runs the front's own code: same order), so a
field added to either dataclass crosses without a change here."""


def result_to_wire(r: BatchResult) -> tuple[Any, ...]:
    items = []
    for i in r.results:
        d = i.__dict__
        d = {**d, "master": tuple(i.master) if isinstance(i.master, ShmRef) else i.master,
             "variants": tuple((k, tuple(v) if isinstance(v, ShmRef) else v)
                               for k, v in i.variants.items()),
             "image": None if i.image is None else pack_image(i.image)}
        items.append(tuple(d[f] for f in _ITEM_FIELDS))
    d = {**r.__dict__, "results": tuple(items)}
    return tuple(d[f] for f in _BATCH_FIELDS)


def result_from_wire(w: tuple[Any, ...]) -> BatchResult:
    r = BatchResult(*w)
    items = []
    for values in r.results:
        i = ItemResult(*values)
        if type(i.master) is tuple:  # (offset, length, seal): a ShmRef
            i.master = ShmRef(*i.master)
        i.variants = {k: ShmRef(*v) if type(v) is tuple else v for k, v in i.variants}
        if i.image is not None:
            i.image = unpack_image(i.image)
        items.append(i)
    r.results = items
    return r


# -- the front side -------------------------------------------------------------------------------


@dataclass
class _Proc:
    index: int
    gpu: int | None
    proc: Any = None
    conn: Any = None
    state: str = "starting"
    """starting | ready | dead | retrying (a failed load, waiting to try again) | failed |
    stopped"""
    error: str | None = None
    restarts: int = 0
    batch: int | None = None
    """Batch id running there now."""
    future: asyncio.Future[Any] | None = None
    on_event: EventCallback | None = None
    item_ids: list[int] = field(default_factory=list)
    started_at: float = 0.0
    ready: asyncio.Future[None] | None = None
    readers: list[PipeReader] = field(default_factory=list)
    """The loop's readers of this slot's pipes (one per spawn; each closes itself at EOF);
    closed at stop."""
    area: ResultArea | None = None
    """The running process's shared-memory segment for result bytes (runtime/shm.py)."""
    lower_conn: Any = None
    """The front's sending end of the worker's second pipe, for batches that run on its
    lowered thread (``runs_lowered``); None when ``engine.lower_class_nice`` is 0."""
    lowered: bool = False
    """Whether the running batch went by ``lower_conn`` (its aborts follow it there)."""
    storing: tuple[int, dict[int, tuple[asyncio.Future[Any], Any]], Any] | None = None
    """(batch id, item id → (its ``ItemResult.stored`` future, the master's ShmRef), timer)
    while the worker writes a batch's cache entries after "done": it takes no batch then."""


class ProcessExecutor:
    """Engine worker processes on this machine (``--executor process``)."""

    kind = "process"
    stores_misses = True
    """Its workers may write a miss's cache entries themselves (``Item.store``)."""

    def __init__(self, settings: Settings, engine: str | None = None, model: str | None = None,
                 *, workers: int | None = None) -> None:
        from swiftshot.service import build_engine

        self.settings = settings
        self.engine_name = engine or settings.engine.default
        self.model = model
        # Built, not loaded: the front needs its name, version, defaults and capabilities.
        self.engine = build_engine(settings, self.engine_name, model=model)
        self._info = describe_engine(self.engine, model)
        n = workers or settings.engine.workers or default_workers(self.engine_name, settings)
        gpus = n if self.engine_name == "diffusion" and n > 1 and \
            settings.engine.diffusion.device in ("auto", "cuda") else 0
        self._procs = [_Proc(i, i if i < gpus else None) for i in range(n)]
        self._ctx = mp.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None  # created on the loop in start()
        self._batch_ids = itertools.count(1)
        self._stopped = False
        self._restarting: set[asyncio.Task[None]] = set()
        self._warm_gauge = telemetry.WORKERS_WARM.labels(engine=self._info.name)
        self._restarts = telemetry.WORKER_RESTARTS.labels(engine=self._info.name)

    # -- protocol ----------------------------------------------------------------------------

    def describe(self) -> EngineInfo:
        return self._info

    @property
    def slots(self) -> int:
        return max(1, sum(1 for p in self._procs
                          if p.state in ("ready", "starting", "dead", "retrying")))

    def health(self) -> Health:
        errors = [p.error for p in self._procs if p.error]
        return Health(self.kind, [
            WorkerState(f"process-{p.index}", p.state == "ready", p.state == "ready",
                        p.proc.pid if p.proc is not None else None, p.error, p.restarts,
                        1 if p.batch is not None or p.storing is not None else 0)
            for p in self._procs], errors[0] if errors else None)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        await asyncio.gather(*(self._spawn(p) for p in self._procs), return_exceptions=True)
        if not any(p.state == "ready" for p in self._procs):
            why = next((p.error for p in self._procs if p.error), "no worker started")
            raise ServiceError(f"no {self._info.name} worker could start: {why}", status=503,
                               code="start_failed")
        self._update_gauge()

    async def stop(self) -> None:
        self._stopped = True
        for t in list(self._restarting):
            t.cancel()
        for p in self._procs:
            if p.conn is not None and p.state == "ready":
                for c in (p.conn, p.lower_conn):
                    try:
                        if c is not None:
                            c.send(("stop",))
                    except (OSError, ValueError):
                        pass
            p.state = "stopped"
            self._fail(p, ServiceError("the server stopped before this request finished; retry",
                                       status=503, code="shutting_down", retry_after=1.0))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._join_all)
        for p in self._procs:  # the processes are gone: nothing more to read
            for r in p.readers:
                r.close()
            p.readers = []
            self._unstored(p)  # stopped before it said "stored": the front stores those
            if p.area is not None:
                p.area.close()
        self._update_gauge()

    def _join_all(self) -> None:
        end = time.monotonic() + 5.0
        for p in self._procs:
            if p.proc is None:
                continue
            p.proc.join(max(0.0, end - time.monotonic()))
            if p.proc.is_alive():
                p.proc.kill()
                p.proc.join(2.0)
            if p.conn is not None:
                p.conn.close()
            if p.lower_conn is not None:
                p.lower_conn.close()

    def abort(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        for p in self._procs:
            hit = [i for i in ids if i in p.item_ids]
            if hit and p.conn is not None and p.state == "ready":
                try:
                    (p.lower_conn if p.lowered else p.conn).send(("abort", hit))
                except (OSError, ValueError):
                    pass

    async def submit(self, batch: Batch, on_event: EventCallback | None = None) -> BatchResult:
        if self._stopped:
            raise ServiceError("the server is shutting down", status=503, code="shutting_down",
                               retry_after=1.0)
        p = await self._idle_worker()
        loop = asyncio.get_running_loop()
        p.batch = batch.id
        p.future = loop.create_future()
        p.on_event = on_event
        p.item_ids = [it.id for it in batch.items]
        p.started_at = time.monotonic()
        wire = [(it.id, it.spec.model_dump_json(), it.partials, it.store) for it in batch.items]
        products = {k: pack_product(v) for k, v in batch.products.items()}
        p.lowered = p.lower_conn is not None and \
            runs_lowered(batch.rank, self.settings.engine.lower_class_nice)
        try:
            send_message(p.lower_conn if p.lowered else p.conn,
                         ("batch", batch.id, wire, products, batch.trace, batch.rank))
        except (OSError, ValueError) as e:
            self._fail(p, WorkerLost(f"process-{p.index} could not take the batch: {e}"))
        # A timer, not asyncio.wait: the answer wakes this task in one step, not two.
        timer = loop.call_later(self.settings.engine.batch_timeout_s, self._overran, p,
                                batch.id)
        try:
            return await p.future
        finally:
            timer.cancel()
            if p.batch == batch.id:
                p.batch, p.future, p.on_event, p.item_ids = None, None, None, []
            if self._idle is not None:
                self._idle.set()

    def _overran(self, p: _Proc, batch_id: int) -> None:
        """``engine.batch_timeout_s`` passed with the batch still running: kill the worker."""
        if p.batch != batch_id or p.future is None or p.future.done():
            return
        timeout = self.settings.engine.batch_timeout_s
        log.error("process-%d: batch %d ran past %.0fs; killing the worker", p.index,
                  batch_id, timeout)
        self._kill(p)
        self._fail(p, WorkerLost(f"process-{p.index} ran the batch past "
                                 f"engine.batch_timeout_s ({timeout:g}s) and was "
                                 "restarted", retry_after=1.0))

    # -- workers -----------------------------------------------------------------------------

    async def _idle_worker(self) -> _Proc:
        assert self._idle is not None
        end = time.monotonic() + START_TIMEOUT_S
        while True:
            for p in self._procs:
                if p.state == "ready" and p.batch is None and p.storing is None:
                    return p
            if not any(p.state in ("ready", "starting", "dead", "retrying")
                       for p in self._procs):
                raise ServiceError(f"every {self._info.name} worker failed to start; see "
                                   "/readyz", status=503, code="no_workers", retry_after=5.0)
            left = end - time.monotonic()
            if left <= 0:
                raise WorkerLost("no engine worker became free in time", retry_after=1.0)
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=min(left, 1.0))
            except TimeoutError:
                pass

    async def _spawn(self, p: _Proc) -> None:
        """Start the worker; a load that fails is tried again ``engine.load_retries`` times with
        doubling waits (``engine.load_backoff_s``), the reason on /readyz meanwhile; then the
        worker stays ``failed`` with it (bounded: never a restart loop)."""
        retries = self.settings.engine.load_retries
        for attempt in range(retries + 1):
            await self._spawn_once(p)
            if p.state != "failed" or self._stopped:
                return
            why = p.error or "the worker failed to load"
            if attempt == retries:
                if retries:
                    p.error = f"{why} (gave up after {retries + 1} tries)"
                return
            delay = self.settings.engine.load_backoff_s * 2 ** attempt
            log.warning("process-%d: the engine failed to load (try %d of %d): %s; retrying in "
                        "%g s", p.index, attempt + 1, retries + 1, why, delay)
            p.state = "retrying"
            p.error = (f"{why} (load try {attempt + 1} of {retries + 1} failed; retrying in "
                       f"{delay:g} s)")
            loop = asyncio.get_running_loop()
            if p.proc is not None:  # the failed process exits by itself: reap it
                await loop.run_in_executor(None, p.proc.join, 5.0)
            end = time.monotonic() + delay
            while not self._stopped and time.monotonic() < end:
                await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))
            if self._stopped:
                p.state = "stopped"
                return
            if p.conn is not None:
                p.conn.close()
            if p.lower_conn is not None:
                p.lower_conn.close()
                p.lower_conn = None

    async def _spawn_once(self, p: _Proc) -> None:
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        lower_child = lower_parent = None
        if self.settings.engine.lower_class_nice:
            lower_child, lower_parent = self._ctx.Pipe(duplex=False)
        # a retried load keeps saying why the last try failed until this one is ready
        p.state, p.error = "starting", p.error if p.state == "retrying" else None
        if p.area is not None:  # the last process of this slot is gone (joined) by now
            p.area.close()
        p.area = area = ResultArea.create(self.settings.engine.result_shm_bytes, str(p.index))
        p.proc = self._ctx.Process(
            target=_worker_main, name=f"swiftshot-{self._info.name}-{p.index}", daemon=True,
            args=(child, self.settings.model_dump(mode="json"), self.engine_name, self.model,
                  p.index, p.gpu, area.name if area is not None else None, lower_child))
        await loop.run_in_executor(None, p.proc.start)
        child.close()
        if lower_child is not None:
            lower_child.close()
        if p.lower_conn is not None:  # the last process's: gone (joined) by now
            p.lower_conn.close()
        p.conn, p.lower_conn = parent, lower_parent
        p.ready = loop.create_future()
        ready = p.ready
        reader = PipeReader(
            loop, parent, lambda msg: self._on_pipe(p, parent, ready, area, msg),
            lambda: self._died(p, parent, ready), name=f"process-{p.index}")
        p.readers = [r for r in p.readers if not r.closed] + [reader]
        try:
            await asyncio.wait_for(asyncio.shield(p.ready), START_TIMEOUT_S)
        except TimeoutError:
            p.error = f"did not load and warm up within {START_TIMEOUT_S:g}s"
            p.state = "failed"
            self._kill(p)
        except ServiceError as e:
            p.error = e.message
            p.state = "failed"
        self._update_gauge()
        if self._idle is not None:
            self._idle.set()

    def _on_pipe(self, p: _Proc, conn: Any, ready: asyncio.Future[None],
                 area: ResultArea | None, msg: Any) -> None:
        """A whole message from the worker's pipe, on the loop. A result's bytes are copied out
        of the worker's segment here, before the front answers anyone (and so before the
        worker is sent the batch that overwrites them)."""
        if msg[0] == "done":
            try:
                msg = ("done", msg[1], result_from_wire(msg[2]))
            except (ValueError, TypeError, IndexError) as e:
                msg = ("error", msg[1], WorkerLost(
                    f"engine worker process-{p.index} sent an unreadable result: {e}",
                    retry_after=1.0))
        if msg[0] == "done" and area is not None:
            try:
                area.take(msg[2])
            except (ValueError, AttributeError, TypeError) as e:
                msg = ("error", msg[1], WorkerLost(
                    f"engine worker process-{p.index} sent an unreadable result: {e}",
                    retry_after=1.0))
            else:
                self._track_stores(p, conn, area, msg[1], msg[2])
        elif msg[0] == "stored":
            if p.conn is conn:
                if len(msg) > 4 and msg[4]:  # what the batch counted, shipped after the store
                    telemetry.apply_metric_deltas(msg[3], msg[4])
                if p.storing is not None and p.storing[0] == msg[1]:
                    self._settle_stores(p, area, set(msg[2]))
            return
        self._on_message(p, conn, ready, msg)

    def _track_stores(self, p: _Proc, conn: Any, area: ResultArea, batch_id: int,
                      result: BatchResult) -> None:
        """The items of a "done" whose worker stores them itself: each gets a future on its
        ``stored`` (module docstring); the master stays in the segment meanwhile."""
        kept = [r for r in result.results if r.stored is True]
        if not kept:
            return
        loop = asyncio.get_running_loop()
        pending: dict[int, tuple[asyncio.Future[Any], Any]] = {}
        for r in kept:
            fut: asyncio.Future[Any] = loop.create_future()
            pending[r.id] = (fut, r.master)
            r.stored, r.master = fut, None
        if p.conn is not conn or p.batch != batch_id:
            for fut, ref in pending.values():  # a batch the front gave up on: store it here
                fut.set_result(self._copy_out(area, ref))
            return
        timeout = self.settings.engine.batch_timeout_s

        def too_slow() -> None:
            if p.storing is not None and p.storing[0] == batch_id:
                log.error("process-%d: storing batch %d ran past %.0fs; killing the worker",
                          p.index, batch_id, timeout)
                self._kill(p)  # its end of file stores the results here (_died)

        p.storing = (batch_id, pending, loop.call_later(timeout, too_slow))

    def _settle_stores(self, p: _Proc, area: ResultArea | None, written: set[int]) -> None:
        """The worker said which items it stored; the rest the front stores (copied out of
        the segment, which no later batch has touched). The worker is free again."""
        storing, p.storing = p.storing, None
        if storing is None:
            return
        _, pending, timer = storing
        timer.cancel()
        for item_id, (fut, ref) in pending.items():
            if not fut.done():
                fut.set_result(None if item_id in written else self._copy_out(area, ref))
        if self._idle is not None:
            self._idle.set()

    def _unstored(self, p: _Proc) -> None:
        """The worker is gone before it said "stored": the front stores every kept item."""
        self._settle_stores(p, p.area, set())

    @staticmethod
    def _copy_out(area: ResultArea | None, ref: Any) -> bytes | None:
        try:
            return area.read(ref) if area is not None else None
        except (ValueError, TypeError) as e:
            # the worker was lost between its answer and the copy of the master (unsealed),
            # or, for a batch the front gave up on, is still copying it and stores it itself
            log.error("a kept master could not be read back from its segment: %s", e)
            return None

    def _on_message(self, p: _Proc, conn: Any, ready: asyncio.Future[None], msg: Any) -> None:
        kind = msg[0]
        if kind in ("ready", "failed") and p.conn is conn and p.area is not None:
            p.area.unlink()  # the worker has attached (or never will): no name to leak
        if kind == "ready":
            if p.conn is conn:
                p.state, p.error = "ready", None
                self._update_gauge()
            if not ready.done():
                ready.set_result(None)
        elif kind == "failed":
            p.state, p.error = "failed", msg[1]
            if not ready.done():
                ready.set_exception(ServiceError(msg[1], status=503, code="start_failed"))
        elif kind == "partial":
            if p.on_event is not None and msg[1] in p.item_ids:
                p.on_event(msg[1], Partial(0, unpack_image(msg[2])))
        elif p.future is not None and not p.future.done() and p.batch == msg[1]:
            if kind == "done":
                p.future.set_result(msg[2])
            elif kind == "cancelled":
                from swiftshot.engines.base import Cancelled

                p.future.set_exception(Cancelled("every request of the batch went away"))
            elif kind == "error":
                p.future.set_exception(msg[2])

    def _died(self, p: _Proc, conn: Any, ready: asyncio.Future[None]) -> None:
        if p.conn is not conn:
            return  # an old pipe of a worker already replaced
        self._unstored(p)  # its segment is still mapped here: the front stores those
        if p.area is not None:
            p.area.unlink()  # died before "ready": the name goes now
        code = p.proc.exitcode if p.proc is not None else None
        if not ready.done():
            ready.set_exception(ServiceError(
                p.error or f"the worker exited (code {code}) while loading", status=503,
                code="start_failed"))
            return
        if p.state in ("stopped", "failed", "retrying") or self._stopped:
            return
        log.error("process-%d (pid %s) died (exit code %s); restarting it", p.index,
                  p.proc.pid if p.proc else None, code)
        p.state = "dead"
        self._fail(p, WorkerLost(f"engine worker process-{p.index} died (exit code {code}) "
                                 "while running this batch", retry_after=1.0))
        self._update_gauge()
        p.restarts += 1
        self._restarts.inc()
        # what it last reported of its gauges died with it (the new one reports afresh)
        telemetry.forget_worker(f"{self._info.name}/process-{p.index}")
        task = asyncio.ensure_future(self._respawn(p))
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def _respawn(self, p: _Proc) -> None:
        if p.proc is not None:
            await asyncio.get_running_loop().run_in_executor(None, p.proc.join, 5.0)
        if p.conn is not None:
            p.conn.close()
        if p.lower_conn is not None:
            p.lower_conn.close()
            p.lower_conn = None
        if not self._stopped:
            await self._spawn(p)

    def _fail(self, p: _Proc, exc: ServiceError) -> None:
        if p.future is not None and not p.future.done():
            p.future.set_exception(exc)

    def _kill(self, p: _Proc) -> None:
        if p.proc is not None and p.proc.is_alive():
            p.proc.kill()

    def _update_gauge(self) -> None:
        self._warm_gauge.set(sum(1 for p in self._procs if p.state == "ready"))


def make_executor(kind: str, settings: Settings, engine: str | None = None,
                  model: str | None = None, *, workers: int | None = None) -> Any:
    """The executor ``kind`` (inline | process | ray) for one engine."""
    if kind == "process":
        return ProcessExecutor(settings, engine, model, workers=workers)
    if kind == "inline":
        from swiftshot.runtime.executor import InlineExecutor
        from swiftshot.service import build_engine

        return InlineExecutor(build_engine(settings, engine, model=model), settings, model=model)
    if kind == "ray":
        from swiftshot.runtime.ray_executor import RayExecutor

        # --workers N (engine.workers) is the replica count: a fixed N, no autoscaling;
        # without it replicas come from ray.min/max_replicas
        n = workers or settings.engine.workers
        if n:
            ray_cfg = settings.ray.model_copy(update={"min_replicas": n, "max_replicas": n,
                                                      "initial_replicas": None})
            settings = settings.model_copy(update={"ray": ray_cfg})
        return RayExecutor(settings, engine, model=model)
    raise ValueError(f"executor must be one of inline, process, ray; got {kind!r}")


__all__ = ["ProcessExecutor", "default_workers", "make_executor", "as_service_error"]
