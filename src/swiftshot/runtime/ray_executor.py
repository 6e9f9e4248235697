"""The ``ray`` executor: each engine a Ray Serve deployment, its replicas on any node of a cluster.

::

    front (this process)                               Ray cluster (any nodes)
    Worker ─ Scheduler picks a batch ─► RayExecutor.submit ─► DeploymentHandle ─► EngineReplica
           (priorities, deadlines,      (slots = running      (Serve's router:     .run / .run_stream
            our batcher)                 replicas × batches    least-loaded of      pipeline.run_items:
                                         per replica)          two replicas)        engine → ops → preset
                                                                                    → master encode
           ◄── BatchResult (master bytes, errors as ServiceError) ◄───────────────────┘
           ◄── Started / Partial (run_stream, when an item asked for previews)

Batching stays in the front: the scheduler batches by the engine's batch key, across priority
classes, and only hands a replica a batch when one is free (``slots``), so nothing queues inside
Ray where priorities and deadlines cannot reach it. (``@serve.batch`` per request was measured
against this: docs/PERFORMANCE.md "Ray executor".)

Faults. A replica that dies or becomes unreachable mid-batch (``ActorDiedError``,
``ActorUnavailableError``, a node lost, no answer within ``ray.batch_timeout_s``) raises
:class:`~swiftshot.errors.WorkerLost`: the front retries the batch once on another replica, then
answers 503. Serve restarts the replica. A replica whose batch runs past ``batch_timeout_s``
fails Serve's health check (``check_health``) and is replaced.

Cancellation. ``abort(ids)``: once every item of a running batch is aborted its Serve request is
cancelled; the replica's task is cancelled at its next ``await`` and sets the stop flag the
engine polls between steps (Ray cannot interrupt the blocking engine call itself).

Autoscaling on queue depth. The queue lives in the front, so Ray's own request counts never see
it. The front reports its queue depth per class and its running items to a small named actor
(:class:`QueueStats`, summed over every front), each replica returns them from
``record_autoscaling_stats``, and :func:`queue_depth_policy` (Serve's custom policy hook) turns
them into a replica count; Serve applies ``min/max_replicas`` and the up/down delays on top.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from swiftshot.errors import ServiceError, WorkerLost
from swiftshot.runtime.aio import post
from swiftshot.runtime.executor import (
    Batch,
    BatchResult,
    EngineInfo,
    EventCallback,
    Health,
    WorkerState,
    describe_engine,
    pack_image,
    run_items,
    unpack_image,
)
from swiftshot.runtime.progress import Partial, Started

if TYPE_CHECKING:
    from swiftshot.config import RaySettings, Settings
    from swiftshot.engines.base import Engine

log = logging.getLogger(__name__)

STATS_ACTOR = "swiftshot-queue-stats"
COUNTED_CLASSES = ("realtime", "standard", "batch")
"""Queued classes that ask for more replicas; ``prefetch`` never scales the cluster up."""
ROUTER = "swiftshot.runtime.ray_router.FrontRouter"
"""Serve's request router for our deployments (``ray.router = front``)."""
STATS_TTL_S = 10.0
"""A front that stopped reporting for this long no longer counts (it died or left)."""

FULL = object()
"""``RayExecutor._pick``: every replica is linked and has ``max_ongoing_requests`` batches."""

_DEPLOY_LOCK = threading.Lock()
"""Serializes this process's Serve deploys. Serve's DeploymentConfig registers and unregisters
a module for pickling by value around each construction, which is not thread-safe: two engines
deployed at once from start() threads failed with "ray.serve._private.request_router is not
registered for pickle by value" (seen in the full suite, engines fake + studio)."""


class RayUnavailable(ServiceError):
    """Ray could not be started or joined, or the engine replicas could not be deployed."""

    status = 503
    code = "ray_unavailable"


# -- joining or starting Ray --------------------------------------------------------------------


def _probe(host: str, port: int, timeout_s: float) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise RayUnavailable(f"the Ray cluster at {host}:{port} is not reachable "
                             f"({e.strerror or e}); start it (ray start --head) or fix "
                             f"ray.address / --ray-address") from None


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"ray.address must be auto, HOST:PORT or ray://HOST:PORT; got "
                             f"{addr!r}")
    return host.strip("[]"), int(port)


def resolve_address(address: str) -> str:
    """``auto`` → the address of the cluster on this machine (RAY_ADDRESS, or the one ``ray
    start`` recorded); a clear error when there is none. Other forms are returned checked."""
    if address == "auto":
        found = os.environ.get("RAY_ADDRESS")
        if not found:
            from ray._private.services import get_ray_address_from_environment

            try:
                found = get_ray_address_from_environment("auto", None)
            except ConnectionError:
                found = None
        if not found:
            raise RayUnavailable("--ray-address auto: no Ray cluster is running on this machine "
                                 "(start one with `ray start --head`, or give HOST:PORT)")
        address = found
    if address.startswith("ray://"):
        _host_port(address[len("ray://"):])
    else:
        _host_port(address)
    return address


def serve_env(cfg: RaySettings) -> dict[str, str]:
    """The Ray Serve settings a driver, its local Ray and every node of a cluster it joins
    should share (deploy/k8s sets the same on its pods; a test holds them equal). Serve reads
    them once, when ``ray.serve`` is first imported in a process.

    ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` (``ray.throughput_optimized``) also turns on Serve's
    direct ingress: an HTTP server per replica of the app's ingress, which nothing of ours
    uses (batches come by the handle or our direct links) and which holds every stopping
    replica at least 30 s for load balancers — a downscale, replacement or redeploy kept its
    CPU/GPU that long. So it is switched off with it."""
    if not cfg.throughput_optimized:
        return {}
    return {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}


def connect(cfg: RaySettings) -> bool:
    """Make this process a Ray driver. Returns True when it started a local Ray (which
    :func:`disconnect` then shuts down). Raises :class:`RayUnavailable` quickly and clearly
    when a cluster is unreachable instead of hanging in ``ray.init``."""
    import ray

    if ray.is_initialized():
        return False
    # Replicas push the queue-depth metric this often (Serve's default, 10 s, is too slow to
    # follow a queue); read by processes this driver starts, so set before ray.init.
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
                          str(cfg.metrics_push_interval_s))
    for name, value in serve_env(cfg).items():  # read when ray.serve is first imported
        os.environ.setdefault(name, value)
    kwargs: dict[str, Any] = {"namespace": cfg.namespace, "logging_level": logging.WARNING,
                              "configure_logging": False}
    local = cfg.address is None
    if local:
        # a single-node Ray on loopback: no dashboard, a small object store
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind 127.0.0.1 only
        kwargs.update(num_cpus=cfg.num_cpus or os.cpu_count() or 1, include_dashboard=False,
                      object_store_memory=cfg.object_store_bytes)
        target = "a local Ray"
    else:
        address = resolve_address(cfg.address)  # type: ignore[arg-type]
        bare = address[len("ray://"):] if address.startswith("ray://") else address
        _probe(*_host_port(bare), min(cfg.connect_timeout_s, 10.0))
        kwargs["address"] = address
        target = f"the Ray cluster at {address}"
    if not local and "RAY_gcs_server_port_wait_time_s" not in os.environ:
        # ray.init retries the GCS for ~20 s by default; keep it inside our own timeout
        os.environ["RAY_gcs_server_port_wait_time_s"] = str(max(1, int(cfg.connect_timeout_s)))
    box: dict[str, BaseException | None] = {"error": None}

    def init() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as e:  # noqa: BLE001 - reported below
            box["error"] = e

    t = threading.Thread(target=init, name="swiftshot-ray-init", daemon=True)
    t.start()
    t.join(cfg.connect_timeout_s + (60.0 if local else 0.0))
    if t.is_alive():
        raise RayUnavailable(f"could not join {target} within {cfg.connect_timeout_s:g} s "
                             "(ray.connect_timeout_s)")
    if box["error"] is not None:
        raise RayUnavailable(f"could not join {target}: {box['error']}") from box["error"]
    return local


def no_auto_init() -> None:
    """From now on no Ray call in this process starts a Ray of its own. Ray's public APIs call
    ``ray.init()`` when Ray is not initialised (auto-connect); once this process is stopping,
    a thread Serve left behind (its long-poll client, whose loop has ended) calling one after
    ``ray.shutdown()`` booted a whole new local Ray — GCS, raylet, workers — during the
    process's exit: a front that was told to stop ran on for 30 s and was killed (seen in
    ``swiftshot serve --executor ray --ray-address`` under load), and the benchmark's shutdown
    "hung". Everything here joins Ray explicitly (:func:`connect`)."""
    try:
        from ray._private import auto_init_hook
    except ImportError:  # another Ray layout: nothing to turn off
        return
    auto_init_hook.enable_auto_connect = False


_LOOP_HANDLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[int]] = \
    weakref.WeakKeyDictionary()
"""Handles this process made on each event loop and has not released yet (ids)."""


def track_handle(handle: Any) -> None:
    """Note a handle made on the running loop (see :func:`release_handle`)."""
    _LOOP_HANDLES.setdefault(asyncio.get_running_loop(), set()).add(id(handle))


def release_handle(handle: Any) -> None:
    """Leave nothing of an already shut-down handle bound to the running loop. Serve's router
    runs on the caller's loop (``CurrentLoopRouter``, ray.throughput_optimized) and
    ``shutdown_async`` only stops its metrics; three things outlive it and the loop:

    - the client's handle cache (``serve.get_app_handle`` caches): ``client.shutdown()`` shuts
      every cached handle down again, on a loop that is gone — "coroutine
      'AsyncioRouter.shutdown' was never awaited" — and a later ``get_app_handle`` on another
      loop would be given this dead one;
    - the router's own long-poll client and the one shared by every router on this loop
      (``SharedRouterLongPollClient``, one per loop, never stopped by Serve): the next
      controller update after the loop ended found it not running — "LongPollClient ... has
      been disabled: Bound asyncio event loop is not running".

    So: out of the cache, and the long-poll clients stopped (the shared one with the last
    handle on this loop). ``stop()`` only takes effect when the pending poll returns, and
    then schedules nothing. Serve internals, each step guarded: another Ray layout only
    brings the log lines back."""
    from ray import serve

    loop = asyncio.get_running_loop()
    open_here = _LOOP_HANDLES.get(loop, set())
    open_here.discard(id(handle))
    try:
        client = serve.context._global_client  # the cached one: no controller call here
        if client is not None:
            for key in [k for k, h in client.handle_cache.items() if h is handle]:
                del client.handle_cache[key]
    except Exception as e:  # noqa: BLE001 - only cleanliness is at stake
        log.debug("could not drop the handle from Serve's cache: %s", e)
    inner = getattr(getattr(handle, "_router", None), "_asyncio_router", None)
    if inner is None or getattr(handle._router, "_asyncio_loop", None) is not loop:
        return  # a router on Serve's own loop thread: that loop never ends
    try:
        inner.long_poll_client.stop()
        if not open_here:
            from ray.serve._private.router import SharedRouterLongPollClient

            # the call AsyncioRouter made (same positional arguments: the same cached one)
            shared = SharedRouterLongPollClient.get_or_create(inner._controller_handle, loop)
            shared.long_poll_client.stop()
    except Exception as e:  # noqa: BLE001
        log.debug("could not stop Serve's long-poll clients on this loop: %s", e)


def disconnect(started_local: bool) -> None:
    import ray

    no_auto_init()
    if started_local and ray.is_initialized():
        ray.shutdown()


# -- the queue-depth signal -----------------------------------------------------------------------


class QueueStats:
    """Named actor (one per namespace): every front's queue depth per engine, summed."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], tuple[dict[str, float], float]] = {}
        self._channels: dict[str, dict[str, dict[str, Any]]] = {}
        """Application → replica id → its direct channel (host, port, token, name)."""

    def add_channel(self, app: str, replica: str, addr: dict[str, Any]) -> None:
        self._channels.setdefault(app, {})[replica] = dict(addr)

    def drop_channel(self, app: str, replica: str) -> None:
        self._channels.get(app, {}).pop(replica, None)

    def channels(self, app: str, replicas: list[str]) -> dict[str, dict[str, Any]]:
        """The channels of ``replicas`` that have registered; forgets the application's
        others (replicas Serve no longer runs: the front lists the live ones)."""
        known = self._channels.get(app, {})
        for rid in [r for r in known if r not in replicas]:
            del known[rid]
        return {r: known[r] for r in replicas if r in known}

    def report(self, front: str, engine: str, depth: dict[str, float]) -> None:
        self._by[(front, engine)] = (dict(depth), time.monotonic())

    def forget(self, front: str) -> None:
        for k in [k for k in self._by if k[0] == front]:
            del self._by[k]

    def get(self, engine: str) -> dict[str, float]:
        now = time.monotonic()
        out: dict[str, float] = {}
        for (front, eng), (depth, at) in list(self._by.items()):
            if now - at > STATS_TTL_S:
                del self._by[(front, eng)]
                continue
            if eng != engine:
                continue
            for k, v in depth.items():
                out[k] = out.get(k, 0.0) + float(v)
        return out


def stats_actor(namespace: str) -> Any:
    """The :class:`QueueStats` actor of ``namespace`` (created by whoever asks first)."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(QueueStats)
    return actor.options(name=STATS_ACTOR, namespace=namespace, get_if_exists=True,
                         lifetime="detached").remote()


def demand(metrics: Mapping[str, float]) -> float:
    """Requests that want a replica: queued in the counted classes plus running."""
    return sum(float(metrics.get(f"queued_{c}", 0.0)) for c in COUNTED_CLASSES) + \
        float(metrics.get("running", 0.0))


def queue_depth_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Serve custom autoscaling policy: ``ceil(demand / target)`` replicas, where demand is the
    fronts' queue (realtime + standard + batch) plus running requests, as the replicas report it
    (:meth:`EngineReplica.record_autoscaling_stats`; every replica reports the same global
    figures, so the freshest maximum is taken), and target is the deployment's
    ``target_ongoing_requests`` (``ray.target_queue_per_replica``). Serve applies min/max
    replicas and the up/down delays to what this returns."""
    metrics = ctx.aggregated_metrics or {}
    figures = {name: max(per_replica.values(), default=0.0)
               for name, per_replica in metrics.items() if per_replica}
    target = float(getattr(ctx.config, "target_ongoing_requests", None) or 1.0)
    want = demand(figures)
    desired = math.ceil(want / target - 1e-9) if want > 0 else 0
    return desired, {"demand": want}


class PriorityGate:
    """``capacity`` holders at once; waiters are let in by (rank, arrival), not FIFO.

    The replica's engine threads: a batch sent ahead of time waits here, and a realtime batch
    that arrives meanwhile goes before the lower-class batches already waiting. Used on one
    event loop."""

    def __init__(self, capacity: int) -> None:
        self.free = capacity
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Waiters not yet let in."""
        return sum(1 for _, _, f in self._waiting if not f.done())

    async def acquire(self, rank: int) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (rank, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # let in just as it was cancelled: pass the place on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


# -- the replica ------------------------------------------------------------------------------------


class EngineReplica:
    """One Serve replica: an engine loaded and warmed, running batches in its own thread.

    Everything the front needs back crosses as plain data: ``BatchResult`` with master bytes
    (the lossless encode runs here, like the product ops), errors as ``ServiceError``.
    """

    def __init__(self, settings: Settings, engine: str, model: str | None = None) -> None:
        import ray

        from swiftshot import pipeline
        from swiftshot.service import build_engine

        self.settings = settings
        self.engine_name = engine
        pipeline.configure(settings.ops)
        self.engine: Engine = build_engine(settings, engine, model=model)
        self.engine.load()
        shapes = list(settings.server.warmup_shapes)
        if shapes:
            self.engine.warmup(shapes)
        try:
            from ray import serve

            rid = serve.get_replica_context().replica_id.unique_id
        except Exception:  # noqa: BLE001 - outside Serve (unit use)
            rid = uuid.uuid4().hex[:8]
        self.replica_id = rid
        node = ray.get_runtime_context().get_node_id()
        self.name = f"replica-{rid}@{node[:8]}:{os.getpid()}"
        try:
            from ray import serve

            self.app_name: str | None = serve.get_replica_context().app_name
        except Exception:  # noqa: BLE001 - outside Serve (unit use)
            self.app_name = None
        self.node_id = node
        self._pool = ThreadPoolExecutor(max_workers=settings.ray.batches_per_replica,
                                        thread_name_prefix="swiftshot-replica")
        # engine.lower_class_nice, as the process executor's workers honour it: a batch with no
        # realtime item renders on a thread of lower OS priority (niceness is per thread on
        # Linux), so on a box the replicas share with the front its realtime work comes first.
        # The gate still bounds the batches that run at once to batches_per_replica.
        from swiftshot.runtime.process import _lower_this_thread

        nice = settings.engine.lower_class_nice
        self._lower = ThreadPoolExecutor(
            max_workers=settings.ray.batches_per_replica,
            thread_name_prefix="swiftshot-replica-lower", initializer=_lower_this_thread,
            initargs=(nice,)) if nice else None
        self._gate = PriorityGate(settings.ray.batches_per_replica)
        self._running: dict[int, float] = {}
        self._stats: Any = None
        self._stopped = False
        self._channel: Any = None
        self._channel_start: asyncio.Future[Any] | None = None
        try:  # Serve runs the constructor on the replica's event loop: listen from now on
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and self.app_name is not None and \
                settings.ray.transport == "direct":
            self._channel_start = loop.create_task(self._open_channel())
        if settings.ray.transport == "direct":  # masters of a few MB made and freed per batch
            from swiftshot.runtime.shm import keep_heap

            keep_heap(settings.ray.heap_keep_bytes)
        from swiftshot import telemetry

        self._deltas = telemetry.MetricDeltas()
        self._deltas.take()  # what loading and warm-up counted is not any batch's
        if settings.ray.batcher == "serve":
            from ray import serve

            self._batched = serve.batch(
                max_batch_size=settings.scheduler.max_batch_size,
                batch_wait_timeout_s=settings.scheduler.max_wait_ms / 1000.0,
                max_concurrent_batches=settings.ray.batches_per_replica)(self._run_many)

    def _pool_for(self, rank: int) -> ThreadPoolExecutor:
        """The lowered threads for a batch without a realtime item (``rank`` > 0), when
        ``engine.lower_class_nice`` is on; else the replica's own. (``ray.batcher = serve``
        requests carry no rank: they render at the replica's priority.)"""
        from swiftshot.runtime.process import runs_lowered

        if self._lower is not None and runs_lowered(rank, self.settings.engine.lower_class_nice):
            return self._lower
        return self._pool

    def _encode(self, image: Any) -> bytes:
        from swiftshot.delivery import codecs

        return codecs.encode_master(image, self.settings.delivery)

    def _work(self, batch: Batch, stop: threading.Event,
              on_partial: Callable[[int, Any], None] | None) -> BatchResult:
        import swiftshot.pipeline

        self._running[batch.id] = time.monotonic()
        try:
            result = run_items(self.engine, batch, run_batch=swiftshot.pipeline.run_batch,
                               should_stop=lambda: stop.is_set() or self._stopped,
                               on_partial=on_partial, encode=self._encode)
        finally:
            self._running.pop(batch.id, None)
        result.worker = self.name
        result.metrics = self._deltas.take()  # what the engine and ops counted here
        return result

    async def run(self, batch: Batch, rank: int = 1, *,
                  on_started: Callable[[], None] | None = None,
                  on_partial: Callable[[int, Any], None] | None = None) -> BatchResult:
        """One batch. ``rank`` is its class (0 realtime … 3 prefetch): a batch the front sent
        ahead (``ray.pipeline_depth``) waits here, realtime ones first, until one of the
        ``batches_per_replica`` engine threads is free; that wait comes back as the span
        ``queue``. ``on_started`` (called when an engine thread takes it) and ``on_partial``
        (previews, from the engine thread) are the direct channel's (ray_direct.run_batch)."""
        entered = time.time_ns()
        await self._gate.acquire(rank)  # cancelled while waiting: it simply leaves
        try:
            started = time.time_ns()
            if on_started is not None:
                on_started()
            stop = threading.Event()
            fut = asyncio.get_running_loop().run_in_executor(self._pool_for(rank), self._work,
                                                             batch, stop, on_partial)
            try:
                result = await asyncio.shield(fut)
            except asyncio.CancelledError:  # the front cancelled this request: stop between
                stop.set()                  # steps; the engine thread stays ours until then
                await asyncio.wait({fut})
                raise
        finally:
            self._gate.release()
        result.spans.insert(0, ("queue", entered, started, None))
        return result

    async def run_item(self, batch: Batch) -> BatchResult:
        """``ray.batcher = serve``: one request; ``@serve.batch`` gathers them (see
        :meth:`_run_many`)."""
        return await self._batched(batch)

    async def _run_many(self, batches: list[Batch]) -> list[BatchResult]:
        """The requests ``@serve.batch`` gathered, grouped by the engine's batch key, one
        engine call per group; each caller gets its own items' results."""
        info = describe_engine(self.engine)
        groups: dict[Any, list[Batch]] = {}
        for b in batches:
            groups.setdefault(info.batch_key(b.items[0].spec), []).append(b)
        out: dict[int, BatchResult] = {}
        loop = asyncio.get_running_loop()
        for members in groups.values():
            merged = Batch(members[0].id, [it for b in members for it in b.items],
                           {k: v for b in members for k, v in b.products.items()})
            result = await loop.run_in_executor(self._pool, self._work, merged,
                                                threading.Event(), None)
            by_item = {r.id: r for r in result.results}
            share = len(merged.items)
            for b in members:
                out[b.id] = BatchResult([by_item[it.id] for it in b.items], result.infer_s,
                                        result.master_s * len(b.items) / share, result.worker,
                                        # the call's metric deltas go back once
                                        result.metrics if b is members[0] else {},
                                        variant_s=result.variant_s * len(b.items) / share,
                                        spans=result.spans)
        return [out[b.id] for b in batches]

    async def run_stream(self, batch: Batch, rank: int = 1) -> AsyncIterator[tuple[Any, ...]]:
        """Events of one batch: ("started", worker) once an engine thread takes it (see
        :meth:`run` for the wait before), ("partial", item_id, packed image) ..., then
        ("result", BatchResult)."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        events: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def on_partial(item_id: int, image: Any) -> None:
            post(loop, events.put_nowait, ("partial", item_id, pack_image(image)))

        entered = time.time_ns()
        await self._gate.acquire(rank)
        try:
            started = time.time_ns()
            yield ("started", self.name)
            fut = loop.run_in_executor(self._pool_for(rank), self._work, batch, stop, on_partial)
            try:
                while not fut.done() or not events.empty():
                    getter = asyncio.ensure_future(events.get())
                    done, _ = await asyncio.wait({getter, fut},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter in done:
                        yield getter.result()
                    else:
                        getter.cancel()
                result = fut.result()
                result.spans.insert(0, ("queue", entered, started, None))
                yield ("result", result)
            except (asyncio.CancelledError, GeneratorExit):
                stop.set()
                raise
        finally:
            self._gate.release()

    async def ping(self) -> None:
        """Does nothing: the bare Serve round trip (benchmarks/rayserve.py)."""

    async def direct_address(self, _to: str | None = None) -> dict[str, Any]:
        """Where this replica's direct data channel listens (runtime/ray_direct.py), started
        on the first call: the IP its node has in the Ray cluster, a port the system chose, and
        the token a front must send first. ``_to`` is the replica id the front's router sent
        this to (ray_router.FrontRouter)."""
        if self._channel_start is None:
            self._channel_start = asyncio.ensure_future(self._open_channel())
        await asyncio.shield(self._channel_start)
        return self._address()

    async def _open_channel(self) -> Any:
        import ray

        from swiftshot.runtime.ray_direct import ReplicaChannel

        channel = ReplicaChannel(self, ray.util.get_node_ip_address())
        await channel.start()
        self._channel = channel
        if self.app_name is not None:  # where the fronts look it up (QueueStats)
            if self._stats is None:
                self._stats = stats_actor(self.settings.ray.namespace)
            self._stats.add_channel.remote(self.app_name, self.replica_id, self._address())
        return channel

    def _address(self) -> dict[str, Any]:
        channel = self._channel
        return {"host": channel.host, "port": channel.port, "token": channel.token,
                "name": self.name, "id": self.replica_id}

    async def direct_run(self, conn: Any, key: int, batch: Batch, rank: int) -> None:
        from swiftshot.runtime.ray_direct import run_batch

        await run_batch(self, conn, key, batch, rank)

    async def describe(self) -> dict[str, Any]:
        return {"info": describe_engine(self.engine).to_json(), "name": self.name,
                "node": self.node_id, "pid": os.getpid()}

    async def check_health(self) -> None:
        """Serve's health check: unhealthy (replaced) when a batch has run past
        ``ray.batch_timeout_s`` — the engine is wedged."""
        limit = self.settings.ray.batch_timeout_s
        now = time.monotonic()
        for started in list(self._running.values()):
            if now - started > limit:
                raise RuntimeError(f"a batch has run {now - started:.0f} s (> {limit:g} s): "
                                   "engine wedged")

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """The fronts' queue depth for this engine (summed over fronts), for
        :func:`queue_depth_policy`; plus this replica's own running batches."""
        if self._stats is None:
            self._stats = stats_actor(self.settings.ray.namespace)
        out = {f"queued_{c}": 0.0 for c in (*COUNTED_CLASSES, "prefetch")}
        out["running"] = 0.0
        out.update(await self._stats.get.remote(self.engine_name))
        out["replica_running"] = float(len(self._running))
        return out

    def __del__(self) -> Any:
        """Serve's graceful shutdown ends here (Serve awaits what this returns). The direct
        channel takes no new batch from now on; the batches it still runs (Serve does not see
        them as ongoing requests) may finish within ``graceful_shutdown_timeout_s`` — a
        coroutine Serve awaits. Then, or at once, everything left stops at its next step."""
        channel = getattr(self, "_channel", None)  # None too on a half-built replica
        if channel is not None and not channel.draining:
            channel.stop_accepting()
            if self._stats is not None and self.app_name is not None:
                try:
                    self._stats.drop_channel.remote(self.app_name, self.replica_id)
                except Exception:  # noqa: BLE001 - Ray going away: the entry expires anyway
                    pass
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # not Serve's call (the interpreter's own, at exit)
                pass
            else:
                if channel.running:
                    return self._drain(channel)
        self._stopped = True
        if channel is not None:
            channel.close()
        return None

    async def _drain(self, channel: Any) -> None:
        deadline = time.monotonic() + self.settings.ray.graceful_shutdown_timeout_s
        while channel.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._stopped = True
        channel.close()


# -- the front's side ------------------------------------------------------------------------------


def _lost_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rx

    names = ("ActorDiedError", "ActorUnavailableError", "RayActorError", "WorkerCrashedError",
             "NodeDiedError", "ObjectLostError", "OwnerDiedError", "ActorUnschedulableError")
    return tuple(getattr(rx, n) for n in names if hasattr(rx, n))


@dataclass
class _Running:
    ids: set[int]
    response: Any = None
    aborted: set[int] = field(default_factory=set)
    started: bool | None = None
    """Streamed calls: whether the replica said an engine thread took the batch (None: a
    unary call, unknown)."""


class RayExecutor:
    """Engines as Ray Serve deployments (see the module docstring)."""

    kind = "ray"

    def __init__(self, settings: Settings, engine: str | None = None, *,
                 model: str | None = None, local_engine: Engine | None = None,
                 depth: Callable[[], Mapping[str, int]] | None = None) -> None:
        from swiftshot.service import build_engine

        self.settings = settings
        self.cfg = settings.ray
        self.engine_name = engine or settings.engine.default
        self.model = model
        # an engine object, never loaded here, only to describe it before a replica exists
        self.engine = local_engine if local_engine is not None else \
            build_engine(settings, self.engine_name, model=model)
        self._info = describe_engine(self.engine, model)
        if self.cfg.batcher == "serve":  # the replicas batch: the front sends requests singly
            self._info = dataclasses.replace(self._info, max_batch_size=1)
        self.app_name = f"{self.cfg.app_prefix}-{self.engine_name}"
        self.depth_source = depth
        """Callable giving the front's queued requests per class for this engine (the Worker's
        ``depth``); reported for the autoscaler."""
        self._front = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._handle: Any = None
        self._stream_handle: Any = None
        self._base_handle: Any = None
        self._stats: Any = None
        self._started_local = False
        self._running: dict[int, _Running] = {}
        self._by_item: dict[int, int] = {}
        self._ids = itertools.count(1)
        self._replicas: dict[str, int] = {}
        self._seen: dict[str, WorkerState] = {}
        self._error: str | None = None
        self._ready = False
        self._stopped = False
        self._refresher: asyncio.Task[None] | None = None
        self._lost: tuple[type[BaseException], ...] = ()
        self._last_report: dict[str, float] | None = None
        self._last_report_at = 0.0
        # the direct data channel (ray.transport = direct; runtime/ray_direct.py)
        self._links: dict[str, Any] = {}
        """Replica id → its FrontLink (connected, or lost and not yet forgotten)."""
        self._known: set[str] = set()
        """The replicas this front's Serve router last listed as running."""
        self._connecting: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._unwatch: Callable[[], None] | None = None
        self._room: asyncio.Future[None] | None = None
        """Resolved when a direct batch finishes or the links change (a full link may have
        room now): batches waiting for a replica under ``max_ongoing_requests`` look again."""

    # -- Executor protocol ---------------------------------------------------------------

    def describe(self) -> EngineInfo:
        return self._info

    @property
    def slots(self) -> int:
        """Batches that run at once: running replicas × ``batches_per_replica``."""
        return self._running_replicas() * per_replica(self.settings)

    @property
    def ahead(self) -> int:
        """Batches the front may send beyond :attr:`slots`, to wait inside the replicas (one
        per replica per ``ray.pipeline_depth``); they do not run until a slot there frees."""
        return self._running_replicas() * ahead_per_replica(self.settings)

    @property
    def reserve(self) -> int:
        """Places beyond ``slots + ahead`` that only a realtime batch may take (one per
        replica, when anything is sent ahead): a realtime arrival is never held in the front
        behind batches that are merely waiting in the replicas."""
        return self._running_replicas() if ahead_per_replica(self.settings) else 0

    def _running_replicas(self) -> int:
        return max(1, self._replicas.get("RUNNING", 0))

    @property
    def direct(self) -> bool:
        """Batches go over the direct data channel (``ray.transport``): it needs our router
        (which lists the replicas) and our batcher (whole batches)."""
        cfg = self.cfg
        return cfg.transport == "direct" and cfg.router == "front" and cfg.batcher == "front"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._started_local = await loop.run_in_executor(None, connect, self.cfg)
            self._lost = _lost_errors()
            await asyncio.wait_for(loop.run_in_executor(None, self._deploy),
                                   self.cfg.start_timeout_s)
            self._make_handles()
        except TimeoutError:
            self._error = (f"the {self.engine_name} replicas were not running within "
                           f"{self.cfg.start_timeout_s:g} s (ray.start_timeout_s)")
            raise RayUnavailable(self._error) from None
        except RayUnavailable as e:
            self._error = e.message
            raise
        except Exception as e:
            self._error = f"{type(e).__name__}: {e}"
            raise RayUnavailable(f"could not deploy the {self.engine_name} engine on Ray: "
                                 f"{e}") from e
        await self._refresh()
        if self.cfg.transport == "direct" and not self.direct:
            log.warning("%s: %s", self.engine_name, self._transport()["note"])
        if self.direct:
            from swiftshot.runtime.shm import keep_heap, warm_bytes

            # warm heap for a few results of the largest size the server warms up for (a
            # result is still held while the next is copied out of a link's segment): the
            # first ones do not fault in fresh pages either
            keep_heap(self.cfg.heap_keep_bytes,
                      prefault=4 * warm_bytes(self.settings.server.warmup_shapes))
            await self._open_direct()
        self._ready = True
        self._refresher = asyncio.create_task(self._refresh_loop(), name="swiftshot-ray-status")

    def deployment(self) -> Any:
        """The Serve deployment of this engine with this server's settings (options, policy)."""
        return engine_deployment(self.settings, self.engine_name, self.model)

    def _deploy(self) -> None:
        with _DEPLOY_LOCK:
            self._deploy_locked()

    def _deploy_locked(self) -> None:
        from ray import serve

        self._stats = stats_actor(self.cfg.namespace)
        if self.cfg.deploy:
            app = self.deployment().bind(self.settings, self.engine_name, self.model)
            try:
                serve._run(app, name=self.app_name, route_prefix=None, _blocking=True)
            except Exception as e:
                why = self._deploy_failure()
                if why:  # what the replica's constructor raised (a model that cannot load)
                    raise RayUnavailable(f"the {self.engine_name} replicas could not start: "
                                         f"{why}") from e
                raise
        else:
            serve.status()  # reach the controller here, off the event loop

    def _deploy_failure(self) -> str | None:
        """The last line of the error Serve recorded for this application's deployment (the
        exception a replica's constructor raised, after Serve's bounded retries)."""
        from ray import serve

        try:
            app = serve.status().applications.get(self.app_name)
        except Exception:  # noqa: BLE001 - no better reason to give
            return None
        if app is None:
            return None
        for dep in app.deployments.values():
            lines = [ln.strip() for ln in (dep.message or "").splitlines() if ln.strip()]
            if lines:
                return lines[-1][:500]
        return (app.message or "").strip().splitlines()[-1][:500] if app.message else None

    def _make_handles(self) -> None:
        """Handles are made on the event loop: Serve may run its router on the caller's loop
        (RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0 / RAY_SERVE_THROUGHPUT_OPTIMIZED=1; read once,
        when ray.serve is first imported: the test session, which imports it earlier, gets
        routers on Serve's own thread)."""
        from ray import serve

        handle = serve.get_app_handle(self.app_name)
        self._base_handle = handle
        track_handle(handle)
        self._stream_handle = handle.options(method_name="run_stream", stream=True)
        self._handle = handle.options(
            method_name="run_item" if self.cfg.batcher == "serve" else "run")
        if self.direct:
            loop = asyncio.get_running_loop()
            from swiftshot.runtime import ray_direct

            self._unwatch = ray_direct.watch(
                self.app_name, lambda ids: post(loop, self._on_replicas, ids))

    # -- the direct data channel (runtime/ray_direct.py) ---------------------------------------

    async def _open_direct(self) -> None:
        """Link to the replicas running now (bounded). The router lists them once it has
        handled a request: a ping. A replica not linked yet is sent batches through Serve."""
        t = self.cfg.direct_connect_timeout_s
        resp = self._base_handle.options(method_name="ping").remote()
        try:
            await asyncio.wait_for(resp, t)
        except Exception as e:  # noqa: BLE001 - Serve still carries the batches
            resp.cancel()
            log.warning("%s: the replicas did not answer a ping (%s)", self.engine_name, e)
            return
        deadline = time.monotonic() + t
        while time.monotonic() < deadline and \
                len(self._links) < self._replicas.get("RUNNING", 1):
            self._connect_missing()
            pending = list(self._connecting.values())
            if pending:
                await asyncio.wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            else:
                await asyncio.sleep(0.02)  # the router has not listed them yet
        if not self._links:
            log.warning("%s: %s", self.engine_name, self._no_channel_note())
        elif len(self._links) < self._replicas.get("RUNNING", 1):
            log.warning("%s: direct links to %d of %d replicas after %g s; the others get "
                        "batches through Serve until they link", self.engine_name,
                        len(self._links), self._replicas.get("RUNNING", 0), t)

    def _no_channel_note(self) -> str:
        return (f"ray.transport = direct, but no replica of {self.app_name} registered a direct "
                f"channel within {self.cfg.direct_connect_timeout_s:g} s (ray.direct_connect_"
                "timeout_s) — were they deployed with ray.transport = serve? Every batch goes "
                "through Serve (the slower hop) until one does; /readyz shows it under "
                "'transport'")

    def _transport(self) -> dict[str, Any]:
        """``/readyz``: how this engine's batches travel (see :meth:`health`)."""
        cfg = self.cfg
        running = self._replicas.get("RUNNING", 0)
        links = [ln for ln in self._links.values() if ln.usable]
        out: dict[str, Any] = {"configured": cfg.transport, "replicas": running,
                               "linked": len(links),
                               "shared_memory": sum(1 for ln in links if ln.shared),
                               "note": None}
        if cfg.transport == "direct" and not self.direct:
            out["effective"] = "serve"
            out["note"] = ("ray.transport = direct needs ray.router = front and ray.batcher = "
                           "front; every batch goes through Serve")
        elif not self.direct:
            out["effective"] = "serve"
        elif not links:
            out["effective"] = "serve"
            if self._ready and running:
                out["note"] = self._no_channel_note()
        else:
            out["effective"] = "direct" if len(links) >= running else "mixed"
        return out

    def _on_replicas(self, ids: set[str]) -> None:
        """The router's list of running replicas changed: link to new ones; a replica no
        longer listed (being stopped) takes no new batch, and its link closes once idle."""
        if self._stopped:
            return
        self._known = ids
        for rid, link in list(self._links.items()):
            if rid not in ids:
                link.draining = True
                if not link.calls:
                    link.close()
                    self._links.pop(rid, None)
        self._connect_missing()

    def _connect_missing(self) -> None:
        now = time.monotonic()
        for rid in self._known:
            if rid in self._links or rid in self._connecting or self._retry_at.get(rid, 0) > now:
                continue
            self._start_connect(rid)

    def _start_connect(self, rid: str) -> None:
        task = asyncio.get_running_loop().create_task(self._connect(rid),
                                                      name=f"swiftshot-ray-link-{rid}")
        self._connecting[rid] = task
        task.add_done_callback(lambda _t: self._connecting.pop(rid, None))

    async def _connect(self, rid: str) -> None:
        """Link to replica ``rid``: its address and token from where it registered them
        (:class:`QueueStats`, written when its channel started), then connect and hello."""
        from swiftshot.runtime.ray_direct import FrontLink
        from swiftshot.runtime.shm import warm_bytes

        t = self.cfg.direct_connect_timeout_s
        link: Any = None
        try:
            found = await asyncio.wait_for(
                self._stats.channels.remote(self.app_name, sorted(self._known | {rid})), t)
            addr = found.get(rid)
            if addr is None:
                raise LookupError("its channel has not registered yet")
            link = FrontLink(rid, addr["token"], self._link_lost,
                             shm_bytes=self.cfg.result_shm_bytes,
                             warm_bytes=warm_bytes(self.settings.server.warmup_shapes))
            await asyncio.wait_for(asyncio.get_running_loop().create_connection(
                lambda: link, addr["host"], addr["port"]), t)
            await asyncio.wait_for(asyncio.shield(link.ready), t)
        except asyncio.CancelledError:
            if link is not None:
                link.close()
            raise
        except Exception as e:  # noqa: BLE001 - tried again; Serve carries batches meanwhile
            if link is not None:
                link.close()
            self._retry_at[rid] = time.monotonic() + self.cfg.status_interval_s
            if rid in self._known and not self._stopped:
                log.info("%s: no direct link to replica %s yet (%s: %s)", self.engine_name,
                         rid, type(e).__name__, e)
            return
        if self._stopped or (self._known and rid not in self._known):
            link.close()
            return
        self._retry_at.pop(rid, None)
        link.on_free = self._wake_room
        self._links[rid] = link
        self._wake_room()

    def _wake_room(self, _link: Any = None) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def _link_lost(self, link: Any) -> None:
        self._wake_room()
        if self._links.get(link.replica_id) is link:
            del self._links[link.replica_id]
        self._retry_at[link.replica_id] = time.monotonic() + self.cfg.status_interval_s

    def _pick(self, rank: int) -> Any:
        """The link for a batch of class ``rank``, as FrontRouter ranks replicas: realtime to
        an idle replica, else the one whose running batch began first; other classes to the
        fewest batches in flight — among the links with room under Serve's
        ``max_ongoing_requests`` (:func:`max_ongoing`), which Serve enforces only on its own
        requests. None (Serve carries it) when there is no link, or when every link is full
        and Serve runs replicas this front has not linked yet (just started); :data:`FULL`
        when every replica is linked and full: the batch waits in the front for room
        (:meth:`_when_room`), as Serve's router would hold it."""
        links = [ln for ln in self._links.values() if ln.usable]
        if not links:
            return None
        from swiftshot.runtime.ray_router import placement_key

        limit = max_ongoing(self.settings)
        room = [ln for ln in links if ln.inflight < limit]
        if not room:
            return None if self._replicas.get("RUNNING", 0) > len(links) else FULL
        keys = [placement_key(rank, ln.inflight, ln.busy_since) for ln in room]
        # equals in random order (as FrontRouter, fc1331c): a stable tie-break sends every
        # batch of a quiet spell to the same replica and none to a replacement
        lowest = min(keys)
        return random.choice([ln for ln, k in zip(room, keys, strict=True) if k == lowest])

    async def _when_room(self, batch: Batch, key: int, run: _Running,
                         on_event: EventCallback | None, stream: bool) -> BatchResult:
        """Wait until a linked replica has room (or Serve must carry the batch), then send.
        Bounded by ``batch_timeout_s`` (the caller's ``wait_for``)."""
        while True:
            if self._stopped:
                raise self._cancel_error()
            link = self._pick(batch.rank) if self._links else None
            if link is FULL:
                if self._room is None or self._room.done():
                    self._room = asyncio.get_running_loop().create_future()
                await asyncio.shield(self._room)
                continue
            if link is not None:
                return await self._call_direct(link, key, batch, run, on_event)
            if stream:
                return await self._call_stream(batch, run, on_event)
            return await self._call(batch, run, on_event)

    def _cancel_error(self) -> BaseException:
        from swiftshot.engines.base import Cancelled

        if self._stopped:
            return ServiceError("the server stopped before this request finished; retry",
                                status=503, code="shutting_down", retry_after=1.0)
        return Cancelled("every request of the batch went away")

    def _call_direct(self, link: Any, key: int, batch: Batch, run: _Running,
                     on_event: EventCallback | None) -> asyncio.Future[BatchResult]:
        """Send the batch over ``link`` at once; the future of its result."""
        from swiftshot.runtime.ray_direct import DirectCall

        call = DirectCall(link, key, batch, run, on_event, self._cancel_error)
        run.response = call
        link.submit(call)
        return call.future

    async def stop(self) -> None:
        self._stopped = True
        self._ready = False
        self._wake_room()  # batches waiting for a full replica's room: answered now
        if self._refresher is not None:
            self._refresher.cancel()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for run in list(self._running.values()):
            if run.response is not None:
                run.response.cancel()
        for task in list(self._connecting.values()):
            task.cancel()
        if self._connecting:
            await asyncio.wait(list(self._connecting.values()), timeout=5.0)
        links, self._links = list(self._links.values()), {}
        for link in links:
            link.close()
        loop = asyncio.get_running_loop()
        if self._stats is not None:
            self._stats.forget.remote(self._front)  # fire and forget: it expires anyway
        await self._close_handles()
        await loop.run_in_executor(None, disconnect, self._started_local)

    async def _close_handles(self) -> None:
        """Shut this front's Serve router down on its own event loop, bounded. (The router
        runs on the caller's loop, ``ray.throughput_optimized``; left alone it outlives that
        loop, and Serve's shutdown later tried to stop it on a loop that no longer runs:
        "coroutine 'AsyncioRouter.shutdown' was never awaited", the long-poll client
        "disabled", the controller's shutdown waiting out its 30 s.)"""
        handle, self._base_handle = self._base_handle, None
        if handle is None:
            return
        try:
            await asyncio.wait_for(handle.shutdown_async(), 5.0)
        except Exception as e:  # noqa: BLE001 - stopping anyway; the cluster cleans up
            log.warning("the %s handle's router did not shut down cleanly: %s",
                        self.engine_name, e)
        release_handle(handle)

    def health(self) -> Health:
        running = self._replicas.get("RUNNING", 0)
        workers = list(self._seen.values())[-running:] if running else []
        # replicas this front has not heard from yet still count (RUNNING means loaded + warm)
        workers += [WorkerState(f"replica-{i}", True, True)
                    for i in range(len(workers), running)]
        starting = sum(n for s, n in self._replicas.items()
                       if s in ("STARTING", "UPDATING", "RECOVERING"))
        workers += [WorkerState(f"starting-{i}", True, False) for i in range(starting)]
        if not self._ready:
            workers = [WorkerState(self.app_name, False, False, error=self._error)]
        return Health(self.kind, workers, self._error, extra={"transport": self._transport()})

    def abort(self, ids: Iterable[int]) -> None:
        for item_id in ids:
            batch_id = self._by_item.get(item_id)
            run = self._running.get(batch_id) if batch_id is not None else None
            if run is None:
                continue
            run.aborted.add(item_id)
            if run.aborted >= run.ids and run.response is not None:
                run.response.cancel()

    async def submit(self, batch: Batch, on_event: EventCallback | None = None) -> BatchResult:
        if self._stopped or self._handle is None:
            raise ServiceError("the server stopped before this request finished; retry",
                               status=503, code="shutting_down", retry_after=1.0)
        ids = {it.id for it in batch.items}
        run = _Running(ids)
        key = next(self._ids)
        self._running[key] = run
        for i in ids:
            self._by_item[i] = key
        self._report()
        try:
            # Batches sent ahead wait inside the replica: streamed, so the replica says when
            # one starts and a batch lost while still waiting is told apart (crash isolation
            # does not count that loss against its inputs).
            link = self._pick(batch.rank) if self._links else None
            stream = (on_event is not None and any(it.partials for it in batch.items)) or \
                ahead_per_replica(self.settings) > 0
            if link is FULL:  # every linked replica at max_ongoing_requests: wait for room
                coro = self._when_room(batch, key, run, on_event, stream)
            elif link is not None:  # sent now, so the next batch's pick counts it
                coro = self._call_direct(link, key, batch, run, on_event)
            elif stream:
                coro = self._call_stream(batch, run, on_event)
            else:
                coro = self._call(batch, run, on_event)
            result = await asyncio.wait_for(coro, self.cfg.batch_timeout_s)
        except TimeoutError:
            if run.response is not None:
                run.response.cancel()
            raise _unstarted(WorkerLost(f"no answer from a {self.engine_name} replica within "
                                        f"{self.cfg.batch_timeout_s:g} s", retry_after=1.0),
                             run) from None
        except asyncio.CancelledError:
            if run.response is not None:
                run.response.cancel()
            raise
        finally:
            # run ↔ its DirectCall (``call.run``) is a reference cycle: broken here, so the
            # call's future — the result and its few-MB masters — is freed as soon as the
            # caller drops the result, not at the cyclic GC's next pass. Left to the GC, every
            # result of ~25-30 requests stayed alive at once: each new one was copied into
            # fresh heap pages (768 page faults at 1024²) and the freed ones trimmed again,
            # which made whole rounds of the hop 3-6x slower (docs/PERFORMANCE.md, Ray hop)
            run.response = None
            del self._running[key]
            for i in ids:
                if self._by_item.get(i) == key:
                    del self._by_item[i]
            self._report()
        self._note(result.worker)
        return result

    # -- calls ---------------------------------------------------------------------------------

    async def _call(self, batch: Batch, run: _Running, on_event: EventCallback | None) -> BatchResult:
        run.response = self._handle.remote(batch, **self._rank(batch))
        if on_event is not None:
            # Dispatched only when a replica is free (slots), so it starts now; a batch that
            # wants previews takes run_stream, where the replica itself says it started.
            for it in batch.items:
                on_event(it.id, Started())
        try:
            return await run.response
        except BaseException as e:
            raise self._translate(e, run) from None

    async def _call_stream(self, batch: Batch, run: _Running,
                           on_event: EventCallback | None) -> BatchResult:
        gen = self._stream_handle.remote(batch, **self._rank(batch))
        run.response = gen
        run.started = False
        result: BatchResult | None = None
        try:
            async for event in gen:
                kind = event[0]
                if kind == "started":
                    run.started = True
                    if on_event is not None:
                        for it in batch.items:
                            on_event(it.id, Started())
                elif kind == "partial":
                    if on_event is not None:
                        on_event(event[1], Partial(0, unpack_image(event[2])))
                elif kind == "result":
                    result = event[1]
        except BaseException as e:
            raise self._translate(e, run) from None
        if result is None:
            raise WorkerLost(f"a {self.engine_name} replica ended a batch without a result",
                             retry_after=1.0)
        return result

    def _rank(self, batch: Batch) -> dict[str, int]:
        """The batch's class for the router and the replica's queue (``run_item`` takes none:
        ``@serve.batch`` calls carry only the batch)."""
        return {} if self.cfg.batcher == "serve" else {"rank": batch.rank}

    def _translate(self, e: BaseException, run: _Running) -> BaseException:
        """What the front sees of a failed Serve call (see :func:`_unstarted`)."""
        return _unstarted(self._translate_error(e, run), run)

    def _translate_error(self, e: BaseException, run: _Running) -> BaseException:
        import ray.exceptions as rx
        from ray.serve.exceptions import BackPressureError

        from swiftshot.engines.base import Cancelled

        if isinstance(e, asyncio.CancelledError):
            return e
        if isinstance(e, ServiceError) and not isinstance(e, rx.RayTaskError):
            return e
        cancelled = tuple(getattr(rx, n) for n in ("TaskCancelledError", "RequestCancelledError")
                          if hasattr(rx, n))
        if cancelled and isinstance(e, cancelled):
            if self._stopped:
                return ServiceError("the server stopped before this request finished; retry",
                                    status=503, code="shutting_down", retry_after=1.0)
            return Cancelled("every request of the batch went away")
        if isinstance(e, BackPressureError):
            return ServiceError(f"the {self.engine_name} replicas are full; retry",
                                status=503, code="overloaded", retry_after=1.0)
        if isinstance(e, rx.RayTaskError):
            cause = getattr(e, "cause", None)
            if isinstance(cause, ServiceError):
                return cause
            if self._lost and isinstance(cause, self._lost):
                return WorkerLost(f"a {self.engine_name} replica was lost mid-batch: "
                                  f"{type(cause).__name__}", retry_after=1.0)
            return ServiceError(f"internal error in a {self.engine_name} replica "
                                f"({type(cause).__name__ if cause else 'unknown'}: {cause})")
        if self._lost and isinstance(e, self._lost):
            return WorkerLost(f"a {self.engine_name} replica was lost mid-batch: "
                              f"{type(e).__name__}", retry_after=1.0)
        if isinstance(e, rx.RayError):
            return WorkerLost(f"Ray failed this batch: {type(e).__name__}: {e}", retry_after=1.0)
        return e

    # -- status, slots and the autoscaling signal -------------------------------------------

    def _note(self, worker: str) -> None:
        if worker and worker not in self._seen:
            pid = worker.rsplit(":", 1)[-1]
            self._seen[worker] = WorkerState(worker, True, True,
                                             pid=int(pid) if pid.isdigit() else None)

    def _depth(self) -> dict[str, float]:
        queued: Mapping[str, int] = {}
        if self.depth_source is not None:
            try:
                queued = self.depth_source()
            except Exception:  # noqa: BLE001 - the signal is best effort
                log.exception("queue depth source failed")
        out = {f"queued_{c}": float(queued.get(c, 0))
               for c in (*COUNTED_CLASSES, "prefetch")}
        out["running"] = float(sum(len(r.ids) for r in self._running.values()))
        return out

    def _report(self, force: bool = False) -> None:
        """Tell the stats actor this front's queue (on change, at most every 100 ms)."""
        if self._stats is None:
            return
        depth = self._depth()
        now = time.monotonic()
        if not force and (depth == self._last_report or now - self._last_report_at < 0.1):
            return
        self._last_report, self._last_report_at = depth, now
        self._stats.report.remote(self._front, self.engine_name, depth)

    async def _refresh(self) -> None:
        from ray import serve

        def status() -> dict[str, int]:
            app = serve.status().applications.get(self.app_name)
            if app is None:
                return {}
            counts: dict[str, int] = {}
            for dep in app.deployments.values():
                for state, n in dep.replica_states.items():
                    name = getattr(state, "value", str(state))
                    counts[name] = counts.get(name, 0) + n
            return counts

        try:
            self._replicas = await asyncio.get_running_loop().run_in_executor(None, status)
        except Exception as e:  # noqa: BLE001 - keep the last figures
            log.warning("serve.status() failed: %s", e)
        running = self._replicas.get("RUNNING", 0)
        if running < len(self._seen):  # replicas gone: forget the oldest we heard from
            for name in list(self._seen)[: len(self._seen) - running]:
                del self._seen[name]

    async def _refresh_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.cfg.status_interval_s)
            self._report(force=True)  # also a heartbeat, so an idle queue reads 0
            await self._refresh()
            if self.direct and not self._stopped:
                self._connect_missing()  # links lost or refused earlier: try again


# -- the Serve deployment and application ---------------------------------------------------------


def per_replica(settings: Settings) -> int:
    """Requests one replica takes at once: batches (``front``), or single requests for
    ``@serve.batch`` to gather (``serve``)."""
    cfg = settings.ray
    if cfg.batcher == "serve":
        return cfg.batches_per_replica * settings.scheduler.max_batch_size
    return cfg.batches_per_replica


def _unstarted(err: BaseException, run: _Running) -> BaseException:
    """``err``, marked ``WorkerLost.started = False`` when it is a lost batch the replica had
    not started yet (it waited behind another: crash isolation does not count it)."""
    if isinstance(err, WorkerLost) and run.started is False:
        err.started = False
    return err


def ahead_per_replica(settings: Settings) -> int:
    """Batches the front sends each replica ahead of time (``ray.pipeline_depth``; the front's
    batcher only: ``@serve.batch`` gathers whatever reaches the replica anyway)."""
    cfg = settings.ray
    return cfg.pipeline_depth if cfg.batcher == "front" else 0


def max_ongoing(settings: Settings) -> int:
    """Serve's ``max_ongoing_requests``: the batches a replica runs, those sent ahead, and one
    place kept for realtime when anything is sent ahead."""
    ahead = ahead_per_replica(settings)
    return per_replica(settings) + ahead + (1 if ahead else 0)


def deployment_options(cfg: RaySettings, settings: Settings | None = None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "max_ongoing_requests": max_ongoing(settings) if settings is not None else
        cfg.batches_per_replica,
        "ray_actor_options": {"num_cpus": cfg.replica_cpus, "num_gpus": cfg.replica_gpus},
        "health_check_period_s": cfg.health_check_period_s,
        "health_check_timeout_s": cfg.health_check_timeout_s,
        "graceful_shutdown_timeout_s": cfg.graceful_shutdown_timeout_s,
        "graceful_shutdown_wait_loop_s": min(2.0, max(0.1, cfg.graceful_shutdown_timeout_s / 4)),
        "logging_config": {"log_level": "WARNING", "enable_access_log": False},
    }
    if cfg.router == "front":
        opts["request_router_config"] = {"request_router_class": ROUTER}
    if cfg.min_replicas == cfg.max_replicas:
        opts["num_replicas"] = cfg.max_replicas
    else:
        opts["autoscaling_config"] = autoscaling_config(cfg)
    return opts


def autoscaling_config(cfg: RaySettings, *, policy: Any = None) -> dict[str, Any]:
    """Serve ``autoscaling_config`` driven by :func:`queue_depth_policy`."""
    out: dict[str, Any] = {
        "min_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
        "target_ongoing_requests": cfg.target_queue_per_replica,
        "upscale_delay_s": cfg.upscale_delay_s, "downscale_delay_s": cfg.downscale_delay_s,
        "look_back_period_s": cfg.look_back_period_s,
        "policy": {"policy_function": policy or f"{__name__}:queue_depth_policy"},
    }
    if cfg.initial_replicas is not None:
        out["initial_replicas"] = cfg.initial_replicas
    return out


def engine_deployment(settings: Settings, engine: str, model: str | None = None) -> Any:
    from ray import serve

    return serve.deployment(EngineReplica, name="engine",
                            **deployment_options(settings.ray, settings))


def app(args: Mapping[str, Any]) -> Any:
    """Serve application builder for a config file / KubeRay ``serveConfigV2``::

        import_path: swiftshot.runtime.ray_executor:app
        args: {engine: studio, model: null, config: /etc/swiftshot/swiftshot.toml}

    ``config`` (optional) is a swiftshot TOML file; environment ``SWIFTSHOT_…`` applies too.
    """
    from swiftshot.config import load_settings

    settings = load_settings(args.get("config"))
    engine = str(args.get("engine") or settings.engine.default)
    model = args.get("model")
    return engine_deployment(settings, engine, model).bind(settings, engine, model)
