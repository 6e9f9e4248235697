"""Metrics (Prometheus) and traces (OpenTelemetry), named so a dashboard can be built on them.

Every stage of the request path records its time here; the same figures go into the
``Server-Timing`` header. Metric objects live in one registry per process (``REGISTRY``), so tests
can read them and ``/metrics`` can expose them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8,
                    1.5, 3.0, 6.0, 12.0, 30.0, 60.0)

REQUEST_DURATION = Histogram(
    "swiftshot_request_duration_seconds", "Whole request time, by route and priority class.",
    ["route", "priority"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
STAGE_DURATION = Histogram(
    "swiftshot_stage_duration_seconds", "Time in one stage of the request path.",
    ["stage"], buckets=_LATENCY_BUCKETS, registry=REGISTRY)
CACHE_REQUESTS = Counter(
    "swiftshot_cache_requests_total", "Cache look-ups by tier and result (hit, miss).",
    ["tier", "result"], registry=REGISTRY)
PREFETCHED = Counter(
    "swiftshot_prefetched_total", "Work done ahead of demand at prefetch priority: variants "
    "encoded after a render, renders of POST /v1/prefetch.", ["kind"], registry=REGISTRY)
COALESCED = Counter(
    "swiftshot_coalesced_total", "Requests answered by joining an identical in-flight generation.",
    registry=REGISTRY)
RENDERS_OVERTAKEN = Counter(
    "swiftshot_renders_overtaken_total", "Renders of a miss sent to an engine before the disk "
    "tier was asked, which then held the master: the request was answered from the disk and "
    "the render stopped or dropped (service._Below).", registry=REGISTRY)
GENERATIONS = Counter(
    "swiftshot_generations_total", "Images produced by an engine (one per spec run).",
    ["engine"], registry=REGISTRY)
BATCH_SIZE = Histogram(
    "swiftshot_batch_size", "Specs per engine call.",
    buckets=(1, 2, 4, 8, 16, 32, 50), registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "swiftshot_queue_depth", "Requests waiting, by priority class (the autoscaling signal).",
    ["priority"], registry=REGISTRY)
LOOP_LAG = Histogram(
    "swiftshot_event_loop_lag_seconds", "How late the front's event loop ran a 20-ms timer "
    "(runtime.gate.LoopLag): the wait every await pays when the front is short of CPU.",
    buckets=_LATENCY_BUCKETS, registry=REGISTRY)
REJECTED = Counter(
    "swiftshot_rejected_total", "Requests refused, by reason (overload, deadline, rate_limit, draining, ...).",
    ["reason"], registry=REGISTRY)
RESPONSES = Counter(
    "swiftshot_responses_total", "Responses by route template and status class (2xx, 4xx, 5xx): "
    "the error-rate alert divides the 5xx by the whole.",
    ["route", "code"], registry=REGISTRY)
JOB_ITEMS = Gauge(
    "swiftshot_job_items", "Batch-job items in the job store, by status (queued, running, done, "
    "failed); queued is the batch backlog.", ["status"], registry=REGISTRY)
JOB_ITEM_OUTCOMES = Counter(
    "swiftshot_job_item_outcomes_total", "Batch-job item attempts by outcome (done, failed, "
    "retry, refused).", ["outcome"], registry=REGISTRY)
WEBHOOK_DELIVERIES = Counter(
    "swiftshot_webhook_deliveries_total", "Webhook attempts by result (delivered, retry, "
    "failed).", ["result"], registry=REGISTRY)


# -- Stage timing, Server-Timing and OpenTelemetry spans ------------------------------------------
# One ``Stages`` per request records (stage, start, end) once; the same record feeds the
# Server-Timing header, the stage histogram and, when an exporter is configured, one span per
# stage. Spans are emitted after the fact from the record, so tracing costs nothing when off.

import time as _time  # noqa: E402
from collections.abc import Mapping as _Mapping  # noqa: E402
from typing import Any as _Any  # noqa: E402


class Stages:
    """Stage timings of one request, on the monotonic clock (nanoseconds)."""

    __slots__ = ("t0_ns", "_epoch0_ns", "spans", "remote")

    def __init__(self) -> None:
        self.t0_ns = _time.perf_counter_ns()
        self._epoch0_ns = _time.time_ns()
        self.spans: list[tuple[str, int, int]] = []
        self.remote: list[tuple[str, int, int]] = []
        """Stages the engine worker recorded (engine, ops, encode), on the wall clock (epoch
        ns): emitted as children of the ``infer`` span (:func:`worker_spans`)."""

    def add(self, name: str, start_ns: int, end_ns: int) -> None:
        self.spans.append((name, start_ns, end_ns))

    def durations(self) -> dict[str, float]:
        """Seconds per stage; a stage that ran several times is summed."""
        out: dict[str, float] = {}
        for name, start, end in self.spans:
            out[name] = out.get(name, 0.0) + (end - start) / 1e9
        return out

    def total_s(self) -> float:
        return (_time.perf_counter_ns() - self.t0_ns) / 1e9

    def epoch_ns(self, perf_ns: int) -> int:
        return self._epoch0_ns + (perf_ns - self.t0_ns)


def server_timing(durations: _Mapping[str, float]) -> str:
    """``Server-Timing`` header value: ``cache;dur=0.041, infer;dur=812.3, total;dur=815.0`` (ms)."""
    return ", ".join(f"{name};dur={secs * 1000:.3f}" for name, secs in durations.items())


_OBSERVED_ELSEWHERE = frozenset({"total", "queue", "infer"})  # the worker records queue and infer


_STAGE_CHILDREN: dict[str, _Any] = {}
"""``STAGE_DURATION``'s child per stage, looked up once: ``labels()`` (a lock, the label
values' checks and a tuple) cost more than the ``observe``, and a miss observes 5-6 stages."""


def observe_stages(durations: _Mapping[str, float]) -> None:
    for name, secs in durations.items():
        if name not in _OBSERVED_ELSEWHERE:
            child = _STAGE_CHILDREN.get(name)
            if child is None:
                child = _STAGE_CHILDREN[name] = STAGE_DURATION.labels(name)
            child.observe(secs)


class Tracing:
    """OpenTelemetry for one app: exporter from settings, W3C ``traceparent`` honoured.

    ``otel_exporter``: ``none`` (default: no provider, nothing recorded), ``console``, ``otlp``
    (standard OTEL_EXPORTER_OTLP_* variables; needs opentelemetry-exporter-otlp installed) or
    ``memory`` (an InMemorySpanExporter on ``.exporter``, for tests).
    """

    def __init__(self, settings: _Any) -> None:
        self.exporter: _Any = None
        self._tracer: _Any = None
        self._propagator: _Any = None
        kind = settings.otel_exporter
        if kind == "none":
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        if kind == "memory":
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            self.exporter = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        elif kind == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as e:
                raise ValueError(
                    "telemetry.otel_exporter = 'otlp' needs the opentelemetry-exporter-otlp "
                    "package; install it or choose none, console or memory"
                ) from e
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.provider = provider
        self._tracer = provider.get_tracer("swiftshot")
        self._propagator = TraceContextTextMapPropagator()

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def emit(self, name: str, stages: Stages, headers: _Mapping[str, str] | None,
             attributes: _Mapping[str, _Any] | None = None,
             end_ns: int | None = None) -> None:
        """One server span for the request (child of the caller's ``traceparent``, if any) and
        one child span per recorded stage."""
        if self._tracer is None:
            return
        from opentelemetry import trace

        parent = self._propagator.extract(carrier=dict(headers or {}))
        end = end_ns if end_ns is not None else _time.perf_counter_ns()
        root = self._tracer.start_span(
            name, context=parent, kind=trace.SpanKind.SERVER,
            start_time=stages.epoch_ns(stages.t0_ns), attributes=dict(attributes or {}))
        ctx = trace.set_span_in_context(root)
        infer_ctx = ctx
        for stage, start, stop in stages.spans:
            span = self._tracer.start_span(f"swiftshot.{stage}", context=ctx,
                                           start_time=stages.epoch_ns(start))
            span.end(end_time=stages.epoch_ns(stop))
            if stage == "infer":
                infer_ctx = trace.set_span_in_context(span)
        # the worker's own stages (another process or machine): under the infer span
        for stage, start, stop in stages.remote:
            span = self._tracer.start_span(f"swiftshot.worker.{stage}", context=infer_ctx,
                                           start_time=start)
            span.end(end_time=stop)
        root.end(end_time=stages.epoch_ns(end))

    def shutdown(self) -> None:
        if self._tracer is not None:
            self.provider.shutdown()


HTTP_IN_FLIGHT = Gauge(
    "swiftshot_http_requests_in_flight", "HTTP requests being handled (set when /metrics is read).",
    registry=REGISTRY)
PROMPT_EMBED_CACHE = Counter(
    "swiftshot_prompt_embedding_cache_total", "Prompt-embedding look-ups of the diffusion engine "
    "by result: hit (the text encoder was skipped for that prompt) or miss (it ran).",
    ["result"], registry=REGISTRY)
PROMPT_EMBED_CACHE_BYTES = Gauge(
    "swiftshot_prompt_embedding_cache_bytes", "Bytes of text-encoder outputs held by the diffusion "
    "engine's prompt-embedding cache (bounded by engine.diffusion.prompt_cache_bytes).",
    registry=REGISTRY)


# -- Engine workers in other processes ------------------------------------------------------------
# Workers (processes, Ray replicas) keep no registry of their own that Prometheus would have to
# scrape: each batch result carries what the worker measured (engine + ops seconds, master encode
# seconds), and the front records it here, so the front's /metrics tells the whole truth.

WORKER_BATCHES = Counter(
    "swiftshot_worker_batches_total", "Batches run, by engine worker (inline, process-N, replica).",
    ["worker"], registry=REGISTRY)
WORKER_BUSY = Counter(
    "swiftshot_worker_busy_seconds_total", "Seconds an engine worker spent on batches (engine, "
    "ops and master encode), as it measured them.", ["worker"], registry=REGISTRY)
WORKER_RESTARTS = Counter(
    "swiftshot_worker_restarts_total", "Engine workers restarted after they died, by engine.",
    ["engine"], registry=REGISTRY)
WORKERS_WARM = Gauge(
    "swiftshot_workers_warm", "Engine workers loaded, warm and alive, by engine.",
    ["engine"], registry=REGISTRY)
CPU_POOL_REPLACED = Counter(
    "swiftshot_cpu_pool_replacements_total", "Times the front's pool of CPU processes (the "
    "removebg route's cutout work, server.cpu_processes) was replaced because a child died.",
    registry=REGISTRY)
SCHEDULER_HELD_BACK = Counter(
    "swiftshot_scheduler_held_back_total", "Times lower-class work was held back because only "
    "the slots reserved for realtime were free (scheduler.realtime_slots), by engine.",
    ["engine"], registry=REGISTRY)
SCHEDULER_LENT = Counter(
    "swiftshot_scheduler_lent_total", "Lower-class batches started on a realtime-reserved slot "
    "while it was lent (no realtime request for scheduler.lend_reserved_after_s), by engine.",
    ["engine"], registry=REGISTRY)


_worker_children: dict[str, tuple[_Any, _Any]] = {}


def add_worker_metrics(worker: str, busy_s: float, extra: _Mapping[str, float] | None = None) -> None:
    # after every batch, before its callers are answered: children looked up once per worker
    children = _worker_children.get(worker)
    if children is None:
        children = _worker_children[worker] = (WORKER_BATCHES.labels(worker),
                                               WORKER_BUSY.labels(worker))
    children[0].inc()
    children[1].inc(max(0.0, busy_s))
    if extra:
        apply_metric_deltas(worker, extra)


# -- Metrics across processes -----------------------------------------------------------------
# An engine worker process or Ray replica has its own copy of REGISTRY: what its engine and ops
# count (the prompt-embedding cache, ...) lands there. After each batch the worker takes what
# changed since the last batch (MetricDeltas.take) and ships it in BatchResult.metrics; the
# front adds counter deltas to its own counters and sums gauges over workers, so the front's
# one /metrics tells the whole truth. Keys are JSON ``[type, sample name, labels]``.

import json as _json  # noqa: E402
import threading as _threading  # noqa: E402
import weakref as _weakref  # noqa: E402


class MetricDeltas:
    """In a worker: counter increments and gauge values changed since the last :meth:`take`.

    Runs after every batch, on the batch's critical path, so it reads only counters and gauges:
    collectors of other kinds (histograms, summaries: never shipped) are not collected at all,
    and the wire key of each sample is built once and kept (``json.dumps`` per sample per batch
    was most of the ~300 µs a ``take`` cost with a registry of 20 families; now ~25 µs), and
    plain counters and gauges are read off their children without ``collect()`` (:meth:`_direct`)."""

    _SKIPPED = ("histogram", "summary", "info", "stateset", "enum")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or REGISTRY
        self._last: dict[str, float] = {}
        self._lock = _threading.Lock()
        self._keys: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = {}
        self._direct_keys: dict[tuple[_Any, tuple[str, ...]], str] = {}

    def _collectors(self) -> list[_Any]:
        out = []
        with self.registry._lock:
            collectors = list(self.registry._collector_to_names)
        for c in collectors:
            kind = getattr(c, "_type", None)  # prometheus_client's own metric classes
            if kind in self._SKIPPED:
                continue
            out.append(c)
        return out

    def take(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for collector in self._collectors():
                direct = self._direct(collector)
                if direct is not None:
                    for key, counter, value in direct:
                        self._note(out, key, counter, value)
                    continue
                for fam in collector.collect():
                    if fam.type not in ("counter", "gauge"):
                        continue
                    counter = fam.type == "counter"
                    for sample in fam.samples:
                        if sample.name.endswith("_created"):
                            continue
                        self._note(out, self._key(fam.type, sample.name, sample.labels),
                                   counter, float(sample.value))
        return out

    def _key(self, kind: str, name: str, labels: dict[str, str]) -> str:
        ident = (kind, name, tuple(labels.items()))
        key = self._keys.get(ident)
        if key is None:
            key = self._keys[ident] = _json.dumps([kind, name, labels], sort_keys=True)
        return key

    def _note(self, out: dict[str, float], key: str, counter: bool, value: float) -> None:
        last = self._last.get(key)
        if counter:
            if value != (last or 0.0):
                out[key] = value - (last or 0.0)
        elif last is None and value == 0.0:
            return  # a gauge never set in this worker is none of its business
        elif value != last:
            out[key] = value
        self._last[key] = value

    def _direct(self, c: _Any) -> list[tuple[str, bool, float]] | None:
        """A plain ``Counter``'s or ``Gauge``'s values read off its children, without
        ``collect()`` (which builds a ``Metric``, a ``Sample`` and a labels dict per child and
        sample, and a ``_created`` sample per counter: ~100 µs a batch with the worker's
        registry, on the batch's critical path, docs/PERFORMANCE.md fifth pass). Same keys and
        values as ``collect()`` gives; None for anything else (a custom collector, a gauge
        with ``set_function``), which is collected as before."""
        kind = type(c)
        if kind is Counter:
            counter, name = True, c._name + "_total"
        elif kind is Gauge:
            counter, name = False, c._name
        else:
            return None
        if "_child_samples" in vars(c):
            return None
        if not c._labelnames:
            return [(self._key("counter" if counter else "gauge", name, {}), counter,
                     float(c._value.get()))]
        if not c._metrics:
            return []  # no child yet: nothing counted here
        with c._lock:
            children = list(c._metrics.items())
        out = []
        keys = self._direct_keys
        for values, child in children:
            if "_child_samples" in vars(child):
                return None
            ident = (c, values)
            key = keys.get(ident)
            if key is None:
                key = keys[ident] = self._key("counter" if counter else "gauge", name,
                                              dict(zip(c._labelnames, values, strict=True)))
            out.append((key, counter, float(child._value.get())))
        return out


_gauges_by_worker: dict[str, dict[str, float]] = {}
_delta_children: _weakref.WeakKeyDictionary[CollectorRegistry, dict[str, tuple[str, _Any, str, _Any]]] = \
    _weakref.WeakKeyDictionary()
"""Per registry: a shipped key → (kind, the child it names, metric name, metric): the JSON
parse and ``labels()`` of each key once, not after every batch (the metric is checked to be
the one still registered under its name)."""
_gauges_lock = _threading.Lock()


def apply_metric_deltas(worker: str, deltas: _Mapping[str, float],
                        registry: CollectorRegistry | None = None) -> None:
    """On the front: what a worker's :class:`MetricDeltas` shipped. Counters are incremented;
    a gauge is set to the sum of the latest value each worker reported."""
    registry = registry or REGISTRY
    names = registry._names_to_collectors
    known = _delta_children.setdefault(registry, {})
    for key, value in deltas.items():
        found = known.get(key)
        if found is not None and names.get(found[2]) is found[3]:
            kind, child = found[0], found[1]
        else:
            try:
                kind, name, labels = _json.loads(key)
            except (ValueError, TypeError):
                continue
            metric = names.get(name)
            if metric is None:
                continue  # a metric this front does not know (another version): dropped
            try:
                child = metric.labels(**labels) if labels else metric
            except (ValueError, TypeError):
                continue  # label names that do not match: never break a batch over a metric
            known[key] = (kind, child, name, metric)
        try:
            if kind == "counter":
                if value > 0:
                    child.inc(value)
            elif kind == "gauge":
                with _gauges_lock:
                    _gauges_by_worker.setdefault(key, {})[worker] = value
                    child.set(sum(_gauges_by_worker[key].values()))
        except (ValueError, TypeError):
            continue  # label names that do not match: never break a batch over a metric


def forget_worker(worker: str, registry: CollectorRegistry | None = None) -> None:
    """On the front: a worker died (or was replaced). The gauges it reported stop counting
    in the sums: a gauge says what is true now, and a dead worker holds nothing (its prompt
    cache's bytes went with it). Counters keep what it counted: that happened."""
    names = (registry or REGISTRY)._names_to_collectors
    with _gauges_lock:
        for key, by_worker in list(_gauges_by_worker.items()):
            if by_worker.pop(worker, None) is None:
                continue
            try:
                _kind, name, labels = _json.loads(key)
                metric = names.get(name)
                if metric is not None:
                    (metric.labels(**labels) if labels else metric).set(sum(by_worker.values()))
            except (ValueError, TypeError):
                continue


def merge_metric_deltas(into: dict[str, float], more: _Mapping[str, float]) -> None:
    """Combine two shipments of one worker: counters add up, gauges take the later value."""
    for key, value in more.items():
        if key.startswith('["counter"'):
            into[key] = into.get(key, 0.0) + value
        else:
            into[key] = value


def trace_carrier() -> dict[str, str]:
    """W3C trace context to hand to a worker. Spans of the worker's stages are emitted by the
    front from the stage record the worker ships back (:func:`worker_spans`), so nothing is
    needed yet."""
    return {}


# -- Worker stages for spans --------------------------------------------------------------------
# The engine worker (a thread, a process, a Ray replica) records when its stages ran (engine,
# ops, encode) on the wall clock; BatchResult.spans carries them back and the front emits them
# as children of the request's infer span. The record is per thread (the batch's thread).

_worker_stages = _threading.local()


class worker_spans:  # noqa: N801 - a context manager, used like a function
    """``with worker_spans() as spans:`` — :func:`record_span` calls in this thread land in
    ``spans`` as ``(name, start_epoch_ns, end_epoch_ns)``."""

    def __enter__(self) -> list[tuple[str, int, int]]:
        self._outer = getattr(_worker_stages, "spans", None)
        _worker_stages.spans = []
        return _worker_stages.spans  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        _worker_stages.spans = self._outer


def record_span(name: str, start_ns: int, end_ns: int) -> None:
    """One worker stage (epoch ns, ``time.time_ns()``); a no-op outside :class:`worker_spans`."""
    spans = getattr(_worker_stages, "spans", None)
    if spans is not None:
        spans.append((name, start_ns, end_ns))
