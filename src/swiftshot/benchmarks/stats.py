"""Outcomes of a load run turned into the figures the report shows.

Latency is measured from the request's *scheduled* arrival time, not from when the client got
round to sending it: a late send is the system's delay as a user would see it, and measuring
from the send would hide it (coordinated omission). The send lag is reported on its own so the
client's share of the delay is visible.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

CACHE_HITS = ("memory", "disk", "redis")
REFUSED = (429, 503)


@dataclass
class Outcome:
    """What happened to one request."""

    kind: str
    """"generate", "upload" or "fetch" (the GET of an image after a generation)."""
    priority: str
    scheduled: float
    """Monotonic time at which the arrival schedule said to send it."""
    sent: float = math.nan
    done: float = math.nan
    status: int = 0
    """HTTP status; 0 when no answer came (connection error or client timeout)."""
    x_cache: str | None = None
    server_timing: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (self.done - self.scheduled) * 1000.0

    @property
    def send_lag_ms(self) -> float:
        return (self.sent - self.scheduled) * 1000.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        return self.status in REFUSED


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100]; got {q}")
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def parse_server_timing(header: str | None) -> dict[str, float]:
    """``"cache;dur=0.2, infer;dur=31"`` → ``{"cache": 0.2, "infer": 31.0}`` (milliseconds)."""
    out: dict[str, float] = {}
    for metric in (header or "").split(","):
        parts = [p.strip() for p in metric.split(";")]
        if not parts[0]:
            continue
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key.strip() == "dur":
                try:
                    out[parts[0]] = float(value.strip().strip('"'))
                except ValueError:
                    pass
    return out


def latency_summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99), "max_ms": max(values) if values else math.nan}


def summarise(outcomes: Iterable[Outcome], window_s: float, slo_ms: dict[str, float]) -> dict[str, Any]:
    """Figures of one load phase.

    ``window_s`` is the length of the arrival schedule; goodput (answers within the SLO of
    their class, per second) and offered rate are taken over it. Throughput is over the span
    from the first send to the last answer.
    """
    outs = list(outcomes)
    gens = [o for o in outs if o.kind in ("generate", "upload")]
    result: dict[str, Any] = {"window_s": window_s, **_block(gens, window_s, slo_ms)}
    result["by_priority"] = {}
    for p in sorted({o.priority for o in gens}):
        of_class = [o for o in gens if o.priority == p]
        result["by_priority"][p] = {**_block(of_class, window_s, slo_ms),
                                    "cache": _cache_block(of_class),
                                    "breakdown": breakdown(of_class)}
    result["by_kind"] = {k: _block([o for o in outs if o.kind == k], window_s, slo_ms)
                         for k in sorted({o.kind for o in outs})}
    result["cache"] = _cache_block(gens)
    lags = [o.send_lag_ms for o in outs if not math.isnan(o.sent)]
    result["client"] = {"send_lag_p50_ms": percentile(lags, 50),
                        "send_lag_p99_ms": percentile(lags, 99),
                        "send_lag_max_ms": max(lags) if lags else math.nan}
    result["server_timing_ms"] = _server_timing_block(gens)
    return result


def _block(outs: list[Outcome], window_s: float, slo_ms: dict[str, float]) -> dict[str, Any]:
    ok = [o for o in outs if o.ok]
    lat = [o.latency_ms for o in ok]
    good = sum(1 for o in ok if o.latency_ms <= slo_ms.get(o.priority, slo_ms["default"]))
    refused = sum(1 for o in outs if o.refused)
    # Unanswered in time (client timeout, or still open when the phase ended) is lateness under
    # overload, not a server error; errors are 4xx/5xx answers and broken connections.
    late = sum(1 for o in outs if o.status == 0 and _late(o.error))
    failed = len(outs) - len(ok) - refused - late
    finished = [o.done for o in ok]
    starts = [o.sent for o in outs if not math.isnan(o.sent)]
    span = (max(finished) - min(starts)) if finished and starts else math.nan
    n = len(outs)
    return {
        "requests": n,
        "ok": len(ok),
        "offered_rps": n / window_s if window_s else math.nan,
        "throughput_rps": len(ok) / span if span and span > 0 else math.nan,
        "goodput_rps": good / window_s if window_s else math.nan,
        "slo_attainment": good / n if n else math.nan,
        "rejection_rate": refused / n if n else math.nan,
        "error_rate": failed / n if n else math.nan,
        "late_rate": late / n if n else math.nan,
        **latency_summary(lat),
    }


def _late(error: str | None) -> bool:
    return error is not None and (error == "unfinished" or error.startswith("client timeout"))


def _cache_block(gens: list[Outcome]) -> dict[str, Any]:
    answered = [o for o in gens if o.ok and o.x_cache]
    hits = [o for o in answered if o.x_cache in CACHE_HITS]
    misses = [o for o in answered if o.x_cache == "miss"]
    coalesced = [o for o in answered if o.x_cache == "coalesced"]
    n = len(answered)
    return {
        "answers_with_x_cache": n,
        "hit_ratio": len(hits) / n if n else math.nan,
        "coalesced_ratio": len(coalesced) / n if n else math.nan,
        "miss_ratio": len(misses) / n if n else math.nan,
        "by_tier": {t: sum(1 for o in hits if o.x_cache == t) for t in CACHE_HITS},
        "hit": latency_summary([o.latency_ms for o in hits]),
        "miss": latency_summary([o.latency_ms for o in misses]),
        "coalesced": latency_summary([o.latency_ms for o in coalesced]),
    }


def _server_timing_block(gens: list[Outcome]) -> dict[str, dict[str, float]]:
    stages = sorted({k for o in gens for k in o.server_timing})
    return {s: {"p50": percentile(v, 50), "p95": percentile(v, 95)}
            for s in stages
            if (v := [o.server_timing[s] for o in gens if s in o.server_timing])}


SERVER_STAGES = ("cache", "queue", "infer", "master", "variant", "hop", "encode", "coalesced")
"""Server-Timing stages a generation's answer may carry (see docs/ARCHITECTURE.md)."""


def breakdown(outs: list[Outcome], tail: float = 0.1) -> dict[str, Any]:
    """Where the time of the slowest answers went: the ``tail`` share (10 %) of answered
    requests with the highest latency, each split into the client's send lag, the server's
    stages (Server-Timing), ``handler`` (the server's ``total`` less its stages: validation,
    keying, cache writes, and waits for the event loop between them) and ``front`` (latency
    less the send lag and the server's ``total``: HTTP accept, parse and body read before the
    handler, the answer's way back — on a saturated front mostly waits for the event loop).
    Means over the tail, in ms, with the share of misses among them; the same for misses alone
    (their p50 and the mean of their slowest ``tail``)."""

    def split(o: Outcome) -> dict[str, float]:
        st = o.server_timing
        total = st.get("total", math.nan)
        staged = sum(st.get(k, 0.0) for k in SERVER_STAGES)
        lag = o.send_lag_ms
        return {"latency": o.latency_ms, "send_lag": lag,
                "front": o.latency_ms - lag - total,
                **{k: st.get(k, 0.0) for k in SERVER_STAGES},
                "handler": total - staged}

    def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
        keys = rows[0].keys() if rows else ()
        return {k: sum(r[k] for r in rows) / len(rows) for k in keys}

    def slowest(rows: list[Outcome]) -> list[Outcome]:
        n = max(1, math.ceil(tail * len(rows))) if rows else 0
        return sorted(rows, key=lambda o: o.latency_ms, reverse=True)[:n]

    ok = [o for o in outs if o.ok and "total" in o.server_timing]
    misses = [o for o in ok if o.x_cache == "miss"]
    tail_all = slowest(ok)
    out: dict[str, Any] = {
        "answers": len(ok), "tail_share": tail, "tail_n": len(tail_all),
        "tail_miss_share": (sum(1 for o in tail_all if o.x_cache == "miss") / len(tail_all)
                            if tail_all else math.nan),
        "tail_mean_ms": mean_of([split(o) for o in tail_all]),
        "misses": len(misses),
    }
    if misses:
        rows = [split(o) for o in misses]
        out["miss_p50_ms"] = {k: percentile([r[k] for r in rows], 50) for k in rows[0]}
        out["miss_tail_mean_ms"] = mean_of([split(o) for o in slowest(misses)])
    return out


def ratio(a: float, b: float) -> float:
    """a / b, NaN when either is missing or b is 0 (a ratio against nothing is not a number)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b
