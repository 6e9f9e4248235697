"""Read the server's ``/metrics`` before and after a run; the difference is what the run caused.

Only counters and histogram series are diffed (gauges are read as they stand at the end).
Stage percentiles are estimated from the histogram buckets the way Prometheus'
``histogram_quantile`` does it: linear within the bucket that holds the rank.
"""

from __future__ import annotations

import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def diff(before: Series, after: Series) -> Series:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def _select(series: Series, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(lbl), v) for (n, lbl), v in series.items()
            if n == name and all(dict(lbl).get(k) == want for k, want in labels.items())]


def total(series: Series, name: str, **labels: str) -> float:
    return sum(v for _, v in _select(series, name, **labels))


def histogram_quantile(q: float, series: Series, name: str, **labels: str) -> float:
    """Quantile q (0-1) of histogram ``name`` (summed over other labels) from its buckets."""
    buckets: dict[float, float] = {}
    for lbl, v in _select(series, f"{name}_bucket", **labels):
        le = float(lbl["le"])
        buckets[le] = buckets.get(le, 0.0) + v
    if not buckets:
        return math.nan
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return math.nan
    rank = q * count
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            if math.isinf(b):
                return prev_bound
            if c == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = b, c
    return bounds[-1]


def stage_breakdown(d: Series) -> dict[str, Any]:
    """What the server says the run cost, stage by stage, from a diff of two scrapes."""
    name = "swiftshot_stage_duration_seconds"
    stages = sorted({dict(lbl)["stage"] for (n, lbl) in d if n == f"{name}_count"})
    out: dict[str, Any] = {"stages_ms": {}}
    for stage in stages:
        n = total(d, f"{name}_count", stage=stage)
        if n <= 0:
            continue
        out["stages_ms"][stage] = {
            "count": n,
            "mean": 1000 * total(d, f"{name}_sum", stage=stage) / n,
            "p50": 1000 * histogram_quantile(0.5, d, name, stage=stage),
            "p95": 1000 * histogram_quantile(0.95, d, name, stage=stage),
        }
    lag = "swiftshot_event_loop_lag_seconds"
    n = total(d, f"{lag}_count")
    if n > 0:  # not a request stage: how late the front's loop ran, shown beside them
        out["stages_ms"]["(loop lag)"] = {
            "count": n, "mean": 1000 * total(d, f"{lag}_sum") / n,
            "p50": 1000 * histogram_quantile(0.5, d, lag),
            "p95": 1000 * histogram_quantile(0.95, d, lag)}
    hits = total(d, "swiftshot_cache_requests_total", result="hit")
    out["cache_lookups"] = {
        f"{dict(lbl).get('tier')}:{dict(lbl).get('result')}": v
        for lbl, v in _select(d, "swiftshot_cache_requests_total")
    }
    out["cache_hits"] = hits
    out["coalesced"] = total(d, "swiftshot_coalesced_total")
    out["generations"] = total(d, "swiftshot_generations_total")
    batches = total(d, "swiftshot_batch_size_count")
    out["batches"] = batches
    out["mean_batch_size"] = total(d, "swiftshot_batch_size_sum") / batches if batches else math.nan
    out["rejected"] = {dict(lbl).get("reason", ""): v
                       for lbl, v in _select(d, "swiftshot_rejected_total") if v}
    return out
