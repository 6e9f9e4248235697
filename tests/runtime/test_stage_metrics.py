"""``telemetry.observe_stages``: each request's stage durations into
``swiftshot_stage_duration_seconds``, with the per-stage child looked up once."""

from __future__ import annotations

import pytest

from swiftshot import telemetry


def _sum(stage: str) -> float:
    return telemetry.REGISTRY.get_sample_value("swiftshot_stage_duration_seconds_sum",
                                               {"stage": stage}) or 0.0


def test_stages_are_observed_and_labels_looked_up_once(monkeypatch):
    stages = {"cache": 0.25, "master": 0.5, "hop": 0.125, "total": 9.0, "infer": 9.0}
    telemetry.observe_stages(stages)  # children made here if no request made them before
    before = {s: _sum(s) for s in stages}
    calls: list[tuple] = []
    real = telemetry.STAGE_DURATION.labels

    def counted(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(telemetry.STAGE_DURATION, "labels", counted)
    telemetry.observe_stages(stages)
    assert calls == [], f"labels() looked up again per request: {calls}"
    # The sums carry what earlier tests observed: a difference of floats, not exact.
    assert {s: _sum(s) - before[s] for s in stages} == pytest.approx(
        {"cache": 0.25, "master": 0.5, "hop": 0.125, "total": 0.0, "infer": 0.0}, abs=1e-9)
