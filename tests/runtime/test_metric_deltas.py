"""``telemetry.MetricDeltas``: what a worker ships after each batch. Plain counters and gauges
are read off their children directly (no ``collect()``); the result must be exactly what the
``collect()`` path gives, key for key, for every kind the registry holds."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swiftshot import telemetry


class _ByCollect(telemetry.MetricDeltas):
    """The reference: every collector through ``collect()``."""

    def _direct(self, c):  # noqa: ANN001, ANN202 - test double
        return None


def _registry() -> tuple[CollectorRegistry, dict]:
    reg = CollectorRegistry()
    m = {
        "plain": Counter("t_plain", "unlabelled counter", registry=reg),
        "labelled": Counter("t_labelled", "labelled counter", ["engine", "stage"], registry=reg),
        "gauge": Gauge("t_gauge", "labelled gauge", ["worker"], registry=reg),
        "solo": Gauge("t_solo", "unlabelled gauge", registry=reg),
        "fn": Gauge("t_fn", "gauge by function", registry=reg),
        "hist": Histogram("t_hist", "never shipped", registry=reg),
        "unused": Counter("t_unused", "labelled, no child yet", ["x"], registry=reg),
    }
    return reg, m


def test_direct_reading_gives_what_collect_gives_batch_after_batch() -> None:
    reg, m = _registry()
    box = {"v": 0.0}
    m["fn"].set_function(lambda: box["v"])
    fast, slow = telemetry.MetricDeltas(reg), _ByCollect(reg)
    assert fast.take() == slow.take() == {}
    steps = [
        lambda: m["plain"].inc(),
        lambda: m["labelled"].labels(engine="studio", stage="infer").inc(2.5),
        lambda: m["labelled"].labels(engine="studio", stage="ops").inc(),
        lambda: m["gauge"].labels(worker="w0").set(3),
        lambda: m["solo"].set(7),
        lambda: box.update(v=4.0),
        lambda: m["hist"].observe(1.0),
        lambda: m["gauge"].labels(worker="w0").set(0),
    ]
    seen_nonempty = 0
    for step in steps:
        step()
        got, want = fast.take(), slow.take()
        assert got == want
        seen_nonempty += bool(got)
    assert seen_nonempty == 7  # every step but the histogram's shipped something
    # the keys are the wire format the front parses (merge_metric_deltas)
    m["labelled"].labels(engine="studio", stage="infer").inc()
    got = fast.take()
    assert got == {'["counter", "t_labelled_total", {"engine": "studio", "stage": "infer"}]': 1.0}
    assert fast.take() == {}


def test_a_gauge_by_function_is_not_read_as_a_plain_one() -> None:
    reg, m = _registry()
    m["fn"].set_function(lambda: 5.0)
    d = telemetry.MetricDeltas(reg)
    assert d._direct(m["fn"]) is None
    assert d.take() == {'["gauge", "t_fn", {}]': 5.0}


def test_the_front_applies_a_key_again_and_follows_a_metric_registered_anew() -> None:
    """``apply_metric_deltas`` keeps each key's child after the first batch (no JSON parse or
    ``labels()`` per batch); batch after batch the counter adds up, and a metric unregistered
    and registered again under the same name gets the next deltas, not the old child."""
    reg = CollectorRegistry()
    old = Counter("swiftshot_test_applied", "t", ["kind"], registry=reg)
    key = '["counter", "swiftshot_test_applied", {"kind": "a"}]'
    for _ in range(3):
        telemetry.apply_metric_deltas("w", {key: 2.0}, registry=reg)
    assert reg.get_sample_value("swiftshot_test_applied_total", {"kind": "a"}) == 6.0
    reg.unregister(old)
    Counter("swiftshot_test_applied", "t", ["kind"], registry=reg)
    telemetry.apply_metric_deltas("w", {key: 1.0}, registry=reg)
    assert reg.get_sample_value("swiftshot_test_applied_total", {"kind": "a"}) == 1.0
    assert old.labels(kind="a")._value.get() == 6.0
