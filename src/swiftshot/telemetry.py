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
COALESCED = Counter(
    "swiftshot_coalesced_total", "Requests answered by joining an identical in-flight generation.",
    registry=REGISTRY)
GENERATIONS = Counter(
    "swiftshot_generations_total", "Images produced by an engine (one per spec run).",
    ["engine"], registry=REGISTRY)
BATCH_SIZE = Histogram(
    "swiftshot_batch_size", "Specs per engine call.",
    buckets=(1, 2, 4, 8, 16, 32, 50), registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "swiftshot_queue_depth", "Requests waiting, by priority class (the autoscaling signal).",
    ["priority"], registry=REGISTRY)
REJECTED = Counter(
    "swiftshot_rejected_total", "Requests refused, by reason (overload, deadline, rate_limit, draining, ...).",
    ["reason"], registry=REGISTRY)
