"""The Executor seam: what the front (HTTP, cache, single-flight, scheduler) needs from whatever
runs engines — a thread in this process (``inline``), engine worker processes on this machine
(``process``, runtime/process.py), or Ray Serve replicas (``ray``).

::

    Service ─► runtime.Worker (front dispatcher: the pure Scheduler picks batches, up to
               │               ``executor.slots`` of them run at once; deadlines, cancellation,
               │               retry-once on a lost worker, metrics)
               ▼
             Executor.submit(Batch) ─► pipeline.run_batch (engine → ops → preset)
                                     ─► master encode (lossless) ─► BatchResult

Implementing an executor (the contract; the shared suite tests/runtime/test_executor_contract.py
runs against each kind):

``kind``
    ``"inline" | "process" | "ray"``; shown by ``GET /readyz``.
``describe() -> EngineInfo``
    Name, version, capabilities, the spec fields that decide a batch, the fields the engine
    ignores and its defaults. Callable before :meth:`start` (build the engine object without
    loading weights, or ship a serialised ``EngineInfo``). The front keys the cache and batches
    with it: ``info.normalized_and_key(spec, ops_version)``, ``info.batch_key(spec)``.
``slots``
    How many batches may run at once (workers × batches each; 1 for ``inline``). May change
    (a worker lost, replicas added): the front reads it before every dispatch.
``async start()``
    Load and warm every worker (``settings.server.warmup_shapes``); raise
    :class:`~swiftshot.errors.ServiceError` (or anything) when the engine cannot load — the
    server then stays not-ready and ``/readyz`` shows the message.
``async stop()``
    Stop workers; a batch still running is failed with a 503 (never left hanging).
``health() -> Health``
    Executor kind, one :class:`WorkerState` per worker/replica (alive, warm, last error);
    ``ready`` when at least one worker can take a batch.
``async submit(batch, on_event=None) -> BatchResult``
    Run one batch (items share one batch key) and return one :class:`ItemResult` per item, in
    order. A failure that belongs to one item (an op that cannot run on its photo, an engine
    that crashes on its prompt) is that item's ``error``; the others still get their images —
    the shared :func:`run_items` isolates a failing batch by rerunning its items one by one.
    A failure of the worker itself (process died, replica unreachable) raises
    :class:`~swiftshot.errors.WorkerLost`; the front retries that batch once, then answers 503.
    ``on_event(item_id, event)`` is called *on the event loop* with ``progress.Started`` when
    the batch begins in the worker and ``progress.Partial`` (a preview image) for items that
    asked for ``partials`` (engine previews are made only then: ``on_step.previews``). Across a
    process boundary a preview travels as raw pixels (:func:`pack_image`, ~1/8 side).
``abort(ids)``
    The clients of these item ids went away. Once every item of a running batch is aborted the
    worker stops it between steps (``submit`` then raises ``Cancelled``); a partly aborted
    batch runs on.

Everything in a :class:`Batch` and a :class:`BatchResult` is serialisable so it can cross a
process or network boundary: specs as JSON (``RenderSpec.model_dump_json``), product photos by
content hash with their pixels (:func:`pack_image`), results as encoded master bytes (the master
encode runs in the worker), errors as :class:`~swiftshot.errors.ServiceError`, which pickles.
Only ``inline`` may hand back a decoded ``image`` (it saves a decode in the same process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from PIL import Image

from swiftshot.errors import ServiceError, as_service_error
from swiftshot.inputs import PhotoFile
from swiftshot.runtime.aio import post
from swiftshot.runtime.progress import Partial, Started

if TYPE_CHECKING:
    from swiftshot.config import Settings
    from swiftshot.engines.base import Engine
    from swiftshot.spec import RenderSpec

EXECUTOR_KINDS = ("inline", "process", "ray")
CAPABILITIES = ("previews", "inpaint", "img2img")


# -- what the front knows of an engine ----------------------------------------------------------


@dataclass(frozen=True)
class EngineInfo:
    """An engine as the front sees it; plain data (``to_json``/``from_json``)."""

    name: str
    version: str
    model: str | None = None
    capabilities: frozenset[str] = frozenset()
    """Subset of :data:`CAPABILITIES`: ``previews`` (step previews), ``inpaint``, ``img2img``."""
    batch_fields: tuple[str, ...] = ("width", "height")
    """Spec fields that must be equal for two specs to share one engine call."""
    ignored_fields: frozenset[str] = frozenset()
    """Spec fields the engine does not use: cleared in the canonical form (one cache entry)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Values filled in when a request leaves the field out (the engine's own settings, e.g.
    diffusion's ``default_steps``)."""
    batch_gain: bool = True
    """False: the engine renders a batch's items in turn; the scheduler sends one at a time."""
    max_batch_size: int | None = None

    def normalized_and_key(self, spec: RenderSpec, ops_version: str) -> tuple[RenderSpec, str]:
        return spec.normalized_and_key(self.name, self.version, ops_version,
                                       ignored=self.ignored_fields, defaults=self.defaults)

    def normalized(self, spec: RenderSpec) -> RenderSpec:
        return spec.normalized(ignored=self.ignored_fields, defaults=self.defaults)

    def batch_key(self, spec: RenderSpec) -> Hashable:
        return (self.name, self.model, *(getattr(spec, f) for f in self.batch_fields))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "model": self.model,
                "capabilities": sorted(self.capabilities), "batch_fields": list(self.batch_fields),
                "ignored_fields": sorted(self.ignored_fields), "defaults": dict(self.defaults),
                "batch_gain": self.batch_gain, "max_batch_size": self.max_batch_size}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EngineInfo:
        return cls(d["name"], d["version"], d.get("model"), frozenset(d.get("capabilities", ())),
                   tuple(d.get("batch_fields", ("width", "height"))),
                   frozenset(d.get("ignored_fields", ())), dict(d.get("defaults", {})),
                   bool(d.get("batch_gain", True)), d.get("max_batch_size"))


def describe_engine(engine: Engine, model: str | None = None) -> EngineInfo:
    """:class:`EngineInfo` of an engine object (not loaded). Engines declare it through optional
    attributes: ``ignored_fields``, ``spec_defaults``, ``batch_fields``, ``capabilities``,
    ``batch_gain``, ``max_batch_size``; the fallbacks are spec.py's tables."""
    from swiftshot.spec import engine_defaults, engine_ignored

    caps = set(getattr(engine, "capabilities", ()))
    if getattr(engine, "run_inpaint", None) is not None:
        caps.add("inpaint")
    if getattr(engine, "run_img2img", None) is not None:
        caps.add("img2img")
    return EngineInfo(
        name=engine.name, version=str(engine.version),
        model=model if model is not None else getattr(engine, "model_name", None),
        capabilities=frozenset(caps),
        batch_fields=tuple(getattr(engine, "batch_fields", ("width", "height"))),
        ignored_fields=frozenset(getattr(engine, "ignored_fields", engine_ignored(engine.name))),
        defaults=dict(getattr(engine, "spec_defaults", engine_defaults(engine.name))),
        batch_gain=bool(getattr(engine, "batch_gain", True)),
        max_batch_size=getattr(engine, "max_batch_size", None))


# -- what crosses ----------------------------------------------------------------------------------


@dataclass
class Item:
    id: int
    spec: RenderSpec
    """Normalised. Crosses a process boundary as ``spec.model_dump_json()``."""
    partials: int = 0
    """Previews wanted (0..3) for this item."""
    store: tuple[str, float | None, tuple[str, ...]] | None = None
    """(cache key, ttl, tags) when the worker may write this item's meta, master and
    variants to the machine's disk cache tier itself (``process``: the master then never
    crosses into the front; see :attr:`ItemResult.stored`). None: the front stores them."""


@dataclass
class Batch:
    id: int
    items: list[Item]
    products: dict[str, Image.Image | PhotoFile] = field(default_factory=dict)
    """Product photos (and other uploaded images) the specs name by SHA-256: decoded, or
    uploads the front checked by their header only (:class:`~swiftshot.inputs.PhotoFile`,
    decoded where the batch runs, :class:`Photos`). They cross a process boundary as their
    uploaded file when they have one, else as raw pixels (:func:`pack_product`; a pickled
    Batch — Ray — does the same)."""
    trace: dict[str, str] = field(default_factory=dict)
    """W3C trace context (``traceparent``) of the dispatching span, for the worker's spans."""
    rank: int = 1
    """Class of its most urgent request (0 realtime, 1 standard, 2 batch, 3 prefetch): a
    worker holding several batches runs the lower rank first (``ray`` executor)."""

    def __getstate__(self) -> dict[str, Any]:
        # pickled (Ray's handle, the direct channel): photos as their files, not as PIL's own
        # pickle (raw pixels plus an info dict that holds the file too)
        state = dict(self.__dict__)
        state["products"] = {k: pack_product(v) for k, v in self.products.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["products"] = {k: unpack_product(v) for k, v in state["products"].items()}
        self.__dict__.update(state)


@dataclass
class ItemResult:
    id: int
    master: bytes | None = None
    """The master, losslessly encoded (``delivery.codecs.encode_master``)."""
    image: Image.Image | None = None
    """``inline`` only: the decoded image (the front encodes the master itself then)."""
    width: int = 0
    height: int = 0
    error: ServiceError | None = None
    variants: dict[tuple[str, int], bytes] = field(default_factory=dict)
    """Delivery variants encoded in the worker beside the master, by (format, quality): the
    spec's own ``output_format`` at full width, which is what the request that made the
    render asks for first (its encode then runs in the worker, not on the front's GIL)."""
    quality: dict[str, Any] = field(default_factory=dict)
    """What the preset's check and the cutout said of the image (``ops.presets.quality_of``:
    compliance verdict, cutout confidence), read where the image was made: only the image's
    ``info`` knows the cutout's confidence, and the image does not cross to the front."""
    stored: Any = False
    """In a worker: True when it writes this item's cache entries itself (asked by
    :attr:`Item.store`; ``master`` is then left out of what the front copies). On the front
    (``process``): an ``asyncio.Future`` that resolves to None once they are on disk, or to
    the master's bytes when the worker could not write them (the front stores them then)."""


@dataclass
class BatchResult:
    results: list[ItemResult]
    infer_s: float
    """Seconds of engine + ops for the batch, measured in the worker."""
    master_s: float = 0.0
    """Seconds of master encoding in the worker (0 when the front encodes)."""
    worker: str = ""
    """Which worker ran it (``inline``, ``process-2``, a replica id)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """What the engine and ops counted in the worker during this batch (counter deltas, gauge
    values: ``telemetry.MetricDeltas``); the front applies them to its own /metrics."""
    variant_s: float = 0.0
    """Seconds of delivery-variant encoding in the worker (``ItemResult.variants``)."""
    spans: list[tuple[str, int, int, int | None]] = field(default_factory=list)
    """The worker's stages (name, start, end in epoch ns, item id or None for the whole
    batch): engine, ops, encode. The front emits them as child spans of each request's
    ``infer`` span."""


EventCallback = Callable[[int, Any], None]


@dataclass
class WorkerState:
    name: str
    alive: bool
    warm: bool
    pid: int | None = None
    error: str | None = None
    restarts: int = 0
    busy: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "alive": self.alive, "warm": self.warm, "pid": self.pid,
                "error": self.error, "restarts": self.restarts, "busy": self.busy}


@dataclass
class Health:
    executor: str
    workers: list[WorkerState]
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Executor-specific facts for ``/readyz`` (``ray``: how batches travel, ``transport``)."""

    @property
    def ready(self) -> bool:
        return any(w.alive and w.warm for w in self.workers)

    @property
    def warm(self) -> int:
        return sum(1 for w in self.workers if w.alive and w.warm)

    def to_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "ready": self.ready, "workers": len(self.workers),
                "warm": self.warm, "error": self.error,
                "detail": [w.to_json() for w in self.workers], **self.extra}


@runtime_checkable
class Executor(Protocol):
    kind: str

    def describe(self) -> EngineInfo: ...

    @property
    def slots(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health(self) -> Health: ...

    async def submit(self, batch: Batch, on_event: EventCallback | None = None) -> BatchResult: ...

    def abort(self, ids: Iterable[int]) -> None: ...


# -- the shared batch runner (inside whatever runs the engine) -------------------------------------

RunBatch = Callable[..., list[Image.Image]]


def run_items(engine: Engine, batch: Batch, *, run_batch: RunBatch,
              should_stop: Callable[[], bool] = lambda: False,
              on_partial: Callable[[int, Image.Image], None] | None = None,
              encode: Callable[[Image.Image], bytes] | None = None,
              encode_variant: Callable[[Image.Image, RenderSpec], tuple[tuple[str, int], bytes]]
              | None = None) -> BatchResult:
    """Run ``batch`` through ``run_batch`` (pipeline.run_batch) and give one result per item.

    ``should_stop()`` is asked between steps (True: the engine stops, ``Cancelled`` raises).
    Previews go to ``on_partial(item_id, image)`` for each item that asked for some. When the batch fails with a ServiceError other than Cancelled and holds more than one
    item, each item is rerun alone so one bad input fails only its own request. ``encode``
    (the master encoder) runs here when given; else results carry the image.
    """
    from swiftshot import telemetry
    from swiftshot.engines.base import Cancelled
    from swiftshot.ops.presets import quality_of

    t0 = time.perf_counter()
    # uploads not decoded yet are decoded here, once, when an item's ops first use them
    photos = Photos(batch.products)
    with telemetry.worker_spans() as stage_spans:
        try:
            images = _run(engine, batch.items, photos, run_batch, should_stop, on_partial)
            outcomes: list[Image.Image | ServiceError] = list(images)
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - isolate the item at fault
            if len(batch.items) == 1:
                outcomes = [as_service_error(e)]
            else:
                outcomes = []
                for item in batch.items:
                    try:
                        outcomes.append(_run(engine, [item], photos, run_batch,
                                             should_stop, on_partial)[0])
                    except Cancelled:
                        raise
                    except Exception as e1:  # noqa: BLE001
                        outcomes.append(as_service_error(e1))
    spans: list[tuple[str, int, int, int | None]] = [(n, a, b, None) for n, a, b in stage_spans]
    infer_s = time.perf_counter() - t0
    results: list[ItemResult] = []
    master_s = variant_s = 0.0
    for item, out in zip(batch.items, outcomes, strict=True):
        if isinstance(out, ServiceError):
            results.append(ItemResult(item.id, error=out))
        elif encode is not None:
            t1 = time.perf_counter()
            e0 = time.time_ns()
            master = encode(out)
            t2 = time.perf_counter()
            master_s += t2 - t1
            variants = dict([encode_variant(out, item.spec)]) if encode_variant else {}
            variant_s += time.perf_counter() - t2
            spans.append(("encode", e0, time.time_ns(), item.id))
            results.append(ItemResult(item.id, master=master, width=out.width, height=out.height,
                                      variants=variants, quality=quality_of(out)))
        else:
            results.append(ItemResult(item.id, image=out, width=out.width, height=out.height))
    return BatchResult(results, infer_s, master_s, variant_s=variant_s, spans=spans)


def _run(engine: Engine, items: Sequence[Item], products: Mapping[str, Image.Image],
         run_batch: RunBatch, should_stop: Callable[[], bool],
         on_partial: Callable[[int, Image.Image], None] | None) -> list[Image.Image]:
    from swiftshot.engines.base import Cancelled, EngineError

    if should_stop():
        raise Cancelled("every request of the batch went away before it started")
    specs = [it.spec for it in items]

    def on_step(i: int, n: int, preview: Any) -> bool:
        if preview is not None and on_partial is not None:
            images = preview if isinstance(preview, (list, tuple)) else [preview]
            for item, image in zip(items, images, strict=False):
                if item.partials and image is not None:
                    on_partial(item.id, image)
        return not should_stop()

    # the engine decodes previews only if someone in this batch wants them
    on_step.previews = max((it.partials for it in items), default=0)  # type: ignore[attr-defined]

    if products:
        images = run_batch(engine, specs, on_step, products=products)
    else:
        images = run_batch(engine, specs, on_step)
    images = list(images)
    if len(images) != len(specs):
        raise EngineError(f"engine {engine.name} returned {len(images)} images for "
                          f"{len(specs)} specs")
    return images


def pack_image(image: Image.Image) -> tuple[str, tuple[int, int], bytes]:
    """An image as plain data (mode, size, raw pixels): ~0.1 ms to pack, no codec."""
    return image.mode, image.size, image.tobytes()


def unpack_image(packed: tuple[str, tuple[int, int], bytes]) -> Image.Image:
    mode, size, data = packed
    return Image.frombytes(mode, tuple(size), data)  # type: ignore[arg-type]


SOURCE_INFO = "swiftshot.source"
"""``Image.info`` key of an uploaded photo's own file bytes (``api.common.load_upload``): the
photo decoded by ``inputs.load_image`` from them, under the server's limits."""

_ENCODED = "encoded"  # never a PIL mode
_FILE = "file"  # nor this: an upload not decoded yet (inputs.PhotoFile)


def pack_product(image: Image.Image | PhotoFile) -> tuple[Any, ...]:
    """A product photo for another process: an upload not decoded yet as its file (decoded
    there, once); a decoded one as its uploaded file when it carries one that is much smaller
    than its pixels (a 2000² JPEG: ~0.3-1 MB against 12 MB raw, which took ~40 ms through a
    pipe), else its raw pixels (:func:`pack_image`)."""
    if isinstance(image, PhotoFile):
        return (_FILE, image.data, image.param, image.max_side)
    src = image.info.get(SOURCE_INFO)
    if isinstance(src, bytes) and len(src) * 4 < image.width * image.height * len(image.getbands()):
        return (_ENCODED, src, image.mode, image.size)
    return pack_image(image)


def unpack_product(packed: tuple[Any, ...]) -> Image.Image | PhotoFile:
    """Inverse of :func:`pack_product`. An upload the front did not decode stays a
    :class:`~swiftshot.inputs.PhotoFile` (decoded by :class:`Photos` where it is used, so a
    corrupt one fails its own requests as a 4xx, not the unpickling of the batch). A file the
    front decoded is decoded as the front decoded it, by the same
    ``inputs.load_image`` bounded to the size the front got (its ``max_work_side`` reduction,
    whatever this process's own settings say), so the pixels are the same. The front has
    validated the file under its limits already: they are not applied again here."""
    if packed[0] == _FILE:
        _, data, param, max_side = packed
        return PhotoFile(data, param, max_side)
    if packed[0] == _ENCODED:
        _, data, mode, size = packed
        image = PhotoFile(data, max_side=max(size)).decode()
        if image.mode != mode or tuple(image.size) != tuple(size):
            raise RuntimeError(f"a product photo decoded to {image.mode} {image.size} here, "
                               f"{mode} {tuple(size)} in the front")
        return image
    return unpack_image(packed)  # type: ignore[arg-type]


class Photos(Mapping[str, Image.Image]):
    """A batch's photos by SHA-256, each :class:`~swiftshot.inputs.PhotoFile` decoded the first
    time its pixels are asked for, in the thread that runs the engine, and kept: a photo that
    does not decode raises its :class:`~swiftshot.inputs.PhotoError` (a 4xx) for each request
    that uses it, and for no other (``run_items`` reruns a failed batch item by item)."""

    def __init__(self, products: Mapping[str, Image.Image | PhotoFile]) -> None:
        self._given = dict(products)
        self._done: dict[str, Image.Image | BaseException] = {}

    def __getitem__(self, sha: str) -> Image.Image:
        got = self._done.get(sha)
        if got is None:
            given = self._given[sha]
            if isinstance(given, PhotoFile):
                try:
                    got = given.decode()
                except ServiceError as e:
                    got = e
            else:
                got = given
            self._done[sha] = got
        if isinstance(got, BaseException):
            raise got
        return got

    def __contains__(self, sha: object) -> bool:
        return sha in self._given

    def __iter__(self):
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)


# -- inline: one inference thread in this process ----------------------------------------------------


class InlineExecutor:
    """The engine in one thread of this process (tests, the CLI, ``--executor inline``)."""

    kind = "inline"

    def __init__(self, engine: Engine, settings: Settings, *, run_batch: RunBatch | None = None,
                 model: str | None = None) -> None:
        import swiftshot.pipeline

        self.engine = engine
        self.settings = settings
        self._info = describe_engine(engine, model)
        self._run_batch = run_batch or swiftshot.pipeline.run_batch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftshot-infer")
        self._aborted: set[int] = set()
        self._stopped = False
        self._warm = False
        self._error: str | None = None
        self._busy = 0

    def describe(self) -> EngineInfo:
        return self._info

    @property
    def slots(self) -> int:
        return 1

    async def start(self) -> None:
        """Load and warm up; a load that fails is tried again ``engine.load_retries`` times
        with doubling waits (``engine.load_backoff_s``), the reason in :meth:`health`."""
        shapes = list(self.settings.server.warmup_shapes)
        retries = self.settings.engine.load_retries
        for attempt in range(retries + 1):
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, self._load, shapes)
                break
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
                if attempt == retries or self._stopped:
                    if not retries:
                        self._error = why
                        raise
                    self._error = f"{why} (gave up after {attempt + 1} tries)"
                    raise ServiceError(self._error, status=503, code="start_failed") from e
                delay = self.settings.engine.load_backoff_s * 2 ** attempt
                self._error = (f"{why} (load try {attempt + 1} of {retries + 1} failed; "
                               f"retrying in {delay:g} s)")
                await asyncio.sleep(delay)
        self._error = None
        self._warm = True

    def _load(self, shapes: Sequence[tuple[int, int]]) -> None:
        self.engine.load()
        if shapes:
            self.engine.warmup(shapes)

    async def stop(self) -> None:
        self._stopped = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def health(self) -> Health:
        return Health(self.kind, [WorkerState("inline", not self._stopped, self._warm,
                                              error=self._error, busy=self._busy)], self._error)

    def abort(self, ids: Iterable[int]) -> None:
        self._aborted.update(ids)

    async def submit(self, batch: Batch, on_event: EventCallback | None = None) -> BatchResult:
        loop = asyncio.get_running_loop()
        ids = [it.id for it in batch.items]

        def should_stop() -> bool:
            return self._stopped or all(i in self._aborted for i in ids)

        def on_partial(item_id: int, image: Image.Image) -> None:
            if on_event is not None:
                post(loop, on_event, item_id, Partial(0, image))

        def work() -> BatchResult:
            if on_event is not None:
                for i in ids:
                    post(loop, on_event, i, Started())
            return run_items(self.engine, batch, run_batch=self._run_batch,
                             should_stop=should_stop, on_partial=on_partial)

        self._busy += 1
        try:
            result = await loop.run_in_executor(self._pool, work)
        finally:
            self._busy -= 1
            self._aborted.difference_update(ids)
        result.worker = "inline"
        return result
