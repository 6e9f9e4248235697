"""bench serve says when its run cannot measure the realtime isolation: at nice 15-19 the
server's lowered work (engine.lower_class_nice, server.cpu_nice) is capped at 19."""

from __future__ import annotations

from swiftshot.benchmarks.serve import capped_warning, lowered_by


def test_a_run_at_nice_19_says_the_realtime_isolation_is_off():
    assert "isolation is off" in capped_warning(19, 5)
    assert "only 3 below" in capped_warning(16, 5)
    assert capped_warning(0, 5) is None and capped_warning(14, 5) is None
    assert capped_warning(19, 0) is None  # nothing lowered: nothing capped


def test_lowered_by_is_the_least_niceness_the_server_adds(monkeypatch):
    assert lowered_by() == 5  # the defaults: lower_class_nice 5, cpu_nice 0
    monkeypatch.setenv("SWIFTSHOT_SERVER__CPU_NICE", "2")
    assert lowered_by() == 2
    monkeypatch.setenv("SWIFTSHOT_ENGINE__LOWER_CLASS_NICE", "0")
    monkeypatch.setenv("SWIFTSHOT_SERVER__CPU_NICE", "0")
    assert lowered_by() == 0
