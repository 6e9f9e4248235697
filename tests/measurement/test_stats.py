"""Percentiles, per-class summaries, Server-Timing parsing, and /metrics diffs."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from swiftshot.benchmarks import scrape
from swiftshot.benchmarks.stats import Outcome, parse_server_timing, percentile, summarise


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentile_agrees_with_numpy(n):
    rng = random.Random(n)
    xs = [rng.expovariate(1.0) for _ in range(n)]
    for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)


def test_percentile_edges():
    assert math.isnan(percentile([], 50))
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_server_timing_header_is_parsed():
    h = 'cache;dur=0.21, queue;dur=3, infer;dur=31.5;desc="engine", encode;dur=4.0,total;dur=39'
    assert parse_server_timing(h) == {"cache": 0.21, "queue": 3.0, "infer": 31.5, "encode": 4.0,
                                      "total": 39.0}
    assert parse_server_timing(None) == {}
    assert parse_server_timing("miss, bad;dur=x") == {}


def _out(priority: str, latency_ms: float | None, status: int = 200, x_cache: str | None = "miss",
         kind: str = "generate", t0: float = 0.0) -> Outcome:
    o = Outcome(kind=kind, priority=priority, scheduled=t0, sent=t0 + 0.001, status=status,
                x_cache=x_cache)
    o.done = t0 + (latency_ms or 0) / 1000
    return o


def test_summary_counts_goodput_only_within_the_slo_of_each_class():
    outs = [
        _out("realtime", 100, x_cache="memory"), _out("realtime", 500),  # 500 > 400: not good
        _out("batch", 900, x_cache="disk"),  # batch SLO is 1000 below: good
        _out("standard", 50, status=429, x_cache=None),  # refused
        _out("standard", 50, status=500, x_cache=None),  # failed
        _out("standard", 300, x_cache="coalesced"),
        _out("standard", 5, kind="fetch", x_cache=None),  # not a generation
        _out("batch", None, status=0, x_cache=None),  # never answered: late, not an error
    ]
    outs[-1].error = "unfinished"
    s = summarise(outs, window_s=2.0, slo_ms={"default": 400, "batch": 1000})
    assert s["requests"] == 7 and s["ok"] == 4
    assert s["goodput_rps"] == pytest.approx(3 / 2.0)
    assert s["slo_attainment"] == pytest.approx(3 / 7)
    assert s["rejection_rate"] == pytest.approx(1 / 7)
    assert s["error_rate"] == pytest.approx(1 / 7)
    assert s["late_rate"] == pytest.approx(1 / 7)
    assert s["by_priority"]["realtime"]["goodput_rps"] == pytest.approx(0.5)
    assert s["by_priority"]["realtime"]["p50_ms"] == pytest.approx(300)
    assert s["by_kind"]["fetch"]["requests"] == 1
    c = s["cache"]
    assert c["hit_ratio"] == pytest.approx(2 / 4) and c["coalesced_ratio"] == pytest.approx(1 / 4)
    assert c["by_tier"] == {"memory": 1, "disk": 1, "redis": 0}
    assert c["hit"]["p50_ms"] == pytest.approx(500)  # hits were 100 and 900 ms
    assert s["client"]["send_lag_p50_ms"] == pytest.approx(1.0)


def test_latency_counts_from_the_scheduled_time_not_the_send():
    o = Outcome(kind="generate", priority="standard", scheduled=10.0, sent=10.5, done=10.6,
                status=200)
    assert o.latency_ms == pytest.approx(600)
    assert o.send_lag_ms == pytest.approx(500)


def _registry_text(values: list[float], hits: int) -> str:
    reg = CollectorRegistry()
    h = Histogram("swiftshot_stage_duration_seconds", "x", ["stage"], registry=reg,
                  buckets=(0.001, 0.01, 0.1, 1.0))
    c = Counter("swiftshot_cache_requests_total", "x", ["tier", "result"], registry=reg)
    for v in values:
        h.labels(stage="infer").observe(v)
    c.labels(tier="memory", result="hit").inc(hits)
    return generate_latest(reg).decode()


def test_metrics_diff_and_histogram_quantile():
    before = scrape.parse(_registry_text([0.5] * 10, hits=3))
    # After: 10 more at 5 ms and 10 more at 50 ms, 4 more hits.
    after = scrape.parse(_registry_text([0.5] * 10 + [0.005] * 10 + [0.05] * 10, hits=7))
    d = scrape.diff(before, after)
    assert scrape.total(d, "swiftshot_stage_duration_seconds_count", stage="infer") == 20
    # The 0.5 s observations were before: the diff's quantiles see only 5 ms and 50 ms.
    assert scrape.histogram_quantile(0.25, d, "swiftshot_stage_duration_seconds") == \
        pytest.approx(0.001 + 0.009 * 0.5)
    assert scrape.histogram_quantile(0.99, d, "swiftshot_stage_duration_seconds") < 0.1
    b = scrape.stage_breakdown(d)
    assert b["stages_ms"]["infer"]["mean"] == pytest.approx(27.5)
    assert b["cache_hits"] == 4
    assert math.isnan(scrape.histogram_quantile(0.5, {}, "nothing"))


def test_overhead_counts_only_misses_and_subtracts_the_engine_work():
    from swiftshot.benchmarks.serve import overhead

    outs = []
    for infer, total, latency in ((10.0, 14.0, 20.0), (20.0, 26.0, 30.0), (30.0, 33.0, 45.0)):
        o = _out("standard", latency)
        o.server_timing = {"infer": infer, "encode": 1.0, "total": total}
        outs.append(o)
    hit = _out("standard", 500, x_cache="memory")
    hit.server_timing = {"cache": 0.2, "total": 0.5}
    o = overhead([*outs, hit])
    assert o["misses"] == 3 and o["infer_p50_ms"] == 20.0
    assert o["server_overhead_p50_ms"] == pytest.approx(3.0)  # 14-11, 26-21, 33-31 → median 3
    assert o["server_ratio"] == pytest.approx(3.0 / 20.0)
    # from the send (1 ms after the schedule): 19-11, 29-21, 44-31 → median 8
    assert o["overhead_p50_ms"] == pytest.approx(8.0)
    assert o["ratio"] == pytest.approx(8.0 / 20.0)
    assert o["client_seen_ratio"] == pytest.approx(9.0 / 20.0)  # 20-11, 30-21, 45-31
    assert math.isnan(overhead([hit])["ratio"])


def test_overhead_counts_the_workers_encodes_as_work_and_the_hop_as_overhead():
    """Out of process the worker reports its engine, master and variant encodes: all three are
    work; the executor hop and the queue are overhead."""
    from swiftshot.benchmarks.serve import overhead

    o = _out("standard", 41.0)  # 40 ms from the send
    o.server_timing = {"queue": 1.0, "infer": 10.0, "master": 6.0, "variant": 12.0, "hop": 3.0,
                       "encode": 0.1, "total": 35.0}
    r = overhead([o])
    assert r["work_p50_ms"] == pytest.approx(28.1)
    assert r["overhead_p50_ms"] == pytest.approx(40.0 - 28.1)
    assert r["ratio"] == pytest.approx((40.0 - 28.1) / 10.0)
    assert r["server_ratio"] == pytest.approx((35.0 - 28.1) / 10.0)
    assert r["stages_p50_ms"]["hop"] == 3.0


def test_overhead_over_the_misses_alone_is_reported_beside():
    """Beside the figure, not instead: the server-side p50 over the misses that had no other
    request in flight from their send to their answer."""
    from swiftshot.benchmarks.serve import derived, in_flight_beside, overhead

    def miss(t0: float, latency: float, over: float) -> Outcome:
        o = _out("standard", latency, t0=t0)
        o.server_timing = {"infer": 4.0, "variant": 5.0, "total": 9.0 + over}
        return o

    alone = [miss(0.0, 20.0, 1.0), miss(1.0, 20.0, 2.0)]  # nothing else between 0 and 1.02 s
    crowded = [miss(2.0, 30.0, 10.0), miss(3.0, 30.0, 12.0)]
    hit = _out("standard", 5.0, x_cache="memory", t0=2.010)  # inside the first crowded miss
    fetch = _out("standard", 5.0, x_cache="memory", kind="fetch", t0=3.020)  # inside the second
    # a miss's own follow-up fetch, sent after its answer, is not company
    after = _out("standard", 2.0, x_cache="memory", kind="fetch", t0=1.030)
    outs = [*alone, *crowded, hit, fetch, after]
    beside = in_flight_beside(outs)
    assert [beside(o) for o in (*alone, *crowded)] == [0, 0, 1, 1]
    o = overhead(outs)
    assert o["misses"] == 4 and o["server_overhead_p50_ms"] == pytest.approx((2.0 + 10.0) / 2)
    assert o["alone_misses"] == 2 and o["alone_server_overhead_p50_ms"] == pytest.approx(1.5)
    assert o["alone_server_ratio"] == pytest.approx(1.5 / 4.0)
    assert o["server_ratio"] == pytest.approx(6.0 / 4.0)  # the figure itself unchanged
    loaded = {"by_priority": {}, "cache": {"hit_ratio": 0.0, "hit": {"p99_ms": 1.0}}}
    base = {"loaded": {**loaded, **{k: 1.0 for k in (
        "offered_rps", "goodput_rps", "throughput_rps", "slo_attainment", "p50_ms", "p95_ms",
        "p99_ms", "rejection_rate", "error_rate", "late_rate")}, "client": {
        "cpu_ms_per_request": 1.0, "send_lag_p99_ms": 0.0}}}
    d = derived({**base, "unloaded": {"overhead": o}})
    assert d["server_side_overhead_ratio_alone"] == pytest.approx(1.5 / 4.0)
    assert d["overhead_alone_misses"] == 2
    assert d["server_side_overhead_ratio"] == pytest.approx(6.0 / 4.0)


def test_overhead_beyond_the_naive_servers_own_round_trip():
    """The naive server says no X-Cache and reports infer + encode: its generations are its
    misses; the third figure is swiftshot's overhead less the naive one's, ÷ swiftshot's
    infer (the client-seen ratio stays as it was)."""
    from swiftshot.benchmarks.serve import beyond_naive, derived, overhead

    naive = []
    for latency in (10.0, 12.0, 14.0):
        o = _out("standard", latency, x_cache=None)
        o.server_timing = {"infer": 4.0, "encode": 3.0}
        naive.append(o)
    fetch = _out("standard", 1.0, x_cache=None, kind="fetch")
    fetch.server_timing = {"infer": 99.0}  # not a generation: not counted
    nv = overhead([*naive, fetch])
    assert nv["misses"] == 3 and nv["overhead_p50_ms"] == pytest.approx(11.0 - 7.0)
    sw_o = _out("standard", 16.0)
    sw_o.server_timing = {"infer": 5.0, "master": 0.5, "variant": 4.5, "total": 12.0}
    sw = overhead([sw_o])
    assert sw["overhead_p50_ms"] == pytest.approx(15.0 - 10.0) and sw["ratio"] == 1.0
    loaded = {"by_priority": {}, "cache": {"hit_ratio": 0.0, "hit": {"p99_ms": 1.0}}}
    base = {"loaded": {**loaded, **{k: 1.0 for k in (
        "offered_rps", "goodput_rps", "throughput_rps", "slo_attainment", "p50_ms", "p95_ms",
        "p99_ms", "rejection_rate", "error_rate", "late_rate")}, "client": {
        "cpu_ms_per_request": 1.0, "send_lag_p99_ms": 0.0}}}
    d_sw = derived({**base, "unloaded": {"overhead": sw}})
    d_nv = derived({**base, "unloaded": {"overhead": nv}})
    assert d_sw["overhead_p50_ms"] == 5.0 and d_sw["infer_p50_ms"] == 5.0
    assert beyond_naive(d_sw, d_nv) == pytest.approx((5.0 - 4.0) / 5.0)
    assert math.isnan(beyond_naive(d_sw, {}))  # no naive run: not a number


def test_goodput_ratio_against_a_naive_server_that_answered_nothing_in_time():
    from swiftshot.benchmarks.serve import compare

    base = {k: 1.0 for k in ("throughput_rps", "miss_capacity_rps", "p50_ms", "p95_ms", "p99_ms",
                             "realtime_p95_ms", "offered_rps")}
    r = compare({**base, "goodput_rps": 40.0}, {**base, "goodput_rps": 0.0}, window_s=60.0)
    assert r["goodput"] == pytest.approx(40 * 60) and r["goodput_is_lower_bound"] is True
    r = compare({**base, "goodput_rps": 40.0}, {**base, "goodput_rps": 4.0}, window_s=60.0)
    assert r["goodput"] == pytest.approx(10) and r["goodput_is_lower_bound"] is False


def test_miss_p50_on_the_same_requests_pairs_each_miss_with_the_naive_answer_to_it():
    """The i-th request of each server's loaded phase is the same request: swiftshot's misses
    are compared with the naive server's answers to those requests only, not with its answers
    to the repeats (kept frames in its engine, cheap), which swiftshot answered from its cache."""
    from swiftshot.benchmarks.serve import same_requests

    sw = [_out("standard", 16.0), _out("standard", 2.0, x_cache="memory"),
          _out("standard", 18.0), _out("standard", 3.0, x_cache="memory"),
          _out("standard", 20.0), _out("standard", 50.0, status=500, x_cache=None)]
    naive = []
    for latency, infer in ((15.0, 4.0), (6.0, 0.1), (17.0, 4.2), (5.0, 0.1), (14.0, 3.9),
                           (6.0, 0.1)):
        o = _out("standard", latency, x_cache=None)
        o.server_timing = {"infer": infer, "encode": 2.0}
        naive.append(o)
    r = same_requests(sw, naive)
    assert r["pairs"] == 3
    assert r["swiftshot_miss_p50_ms"] == pytest.approx(18.0)
    assert r["naive_p50_ms"] == pytest.approx(15.0)  # over 15, 17, 14; all answers' p50 is 10.0
    assert r["ratio"] == pytest.approx(18.0 / 15.0)
    assert r["naive_infer_p50_ms"] == pytest.approx(4.0)
    assert r["naive_rest"] == 3 and r["naive_rest_infer_p50_ms"] == pytest.approx(0.1)
    # not the same schedule (or no naive run): no figure rather than a wrong one
    assert same_requests(sw, naive[:-1])["pairs"] == 0
    assert math.isnan(same_requests(sw, [])["ratio"])
