"""OpenTelemetry: one span per stage under the request span, continuing the caller's trace."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from swiftshot.api.app import create_app
from swiftshot.config import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def test_spans_per_stage_and_traceparent_honoured(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", engine={"default": "fake"},
                        server={"warmup_shapes": [(64, 64)]},
                        telemetry={"otel_exporter": "memory"})
    app = create_app(settings)
    exporter = app.state.tracing.exporter
    with TestClient(app) as c:
        r = c.post("/v1/images/generations",
                   json={"prompt": "traced", "size": "64x64", "response_format": "b64_json"},
                   headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert r.status_code == 200
        spans = exporter.get_finished_spans()
        root = next(s for s in spans if s.name == "POST /v1/images/generations")
        assert format(root.context.trace_id, "032x") == TRACE_ID
        assert format(root.parent.span_id, "016x") == PARENT_ID
        children = {s.name: s for s in spans if s.parent and s.parent.span_id == root.context.span_id}
        assert {"swiftshot.cache", "swiftshot.queue", "swiftshot.infer", "swiftshot.master",
                "swiftshot.encode"} <= set(children)
        for s in children.values():
            assert root.start_time <= s.start_time <= s.end_time <= root.end_time
        # the header and the spans tell the same story
        for stage in ("cache", "queue", "infer", "encode", "total"):
            assert f"{stage};dur=" in r.headers["server-timing"]

        exporter.clear()
        hit = c.post("/v1/images/generations", json={"prompt": "traced", "size": "64x64"})
        assert hit.headers["x-cache"] == "memory"
        names = {s.name for s in exporter.get_finished_spans()}
        assert "swiftshot.cache" in names and "swiftshot.infer" not in names
        fresh = [s for s in exporter.get_finished_spans() if s.name.startswith("POST")]
        assert fresh and format(fresh[0].context.trace_id, "032x") != TRACE_ID  # new trace


def test_no_exporter_records_nothing(tmp_path):
    settings = Settings(data_dir=tmp_path / "var", engine={"default": "fake"},
                        server={"warmup_shapes": [(64, 64)]})
    app = create_app(settings)
    assert not app.state.tracing.enabled and app.state.tracing.exporter is None


def test_the_worker_process_stages_are_child_spans_of_the_request(tmp_path):
    """The engine runs in a worker process: its own stages (engine, ops, encode) come back
    with the result and appear under the request's infer span, in the caller's trace."""
    import pytest

    pytest.importorskip("opentelemetry.sdk")
    settings = Settings(data_dir=tmp_path / "var",
                        engine={"default": "fake", "executor": "process", "workers": 1,
                                "fake": {"delay_s": 0.05}},
                        server={"warmup_shapes": [(64, 64)]},
                        telemetry={"otel_exporter": "memory"})
    app = create_app(settings)
    exporter = app.state.tracing.exporter
    with TestClient(app) as c:
        end = time.monotonic() + 120
        while c.get("/readyz").status_code != 200:  # the worker process loads and warms up
            assert time.monotonic() < end, c.get("/readyz").text
            time.sleep(0.05)
        r = c.post("/v1/render", json={"prompt": "traced in a worker", "size": "64x64"},
                   headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        assert r.status_code == 200, r.text
        spans = exporter.get_finished_spans()
        infer = next(s for s in spans if s.name == "swiftshot.infer")
        worker = {s.name: s for s in spans
                  if s.parent is not None and s.parent.span_id == infer.context.span_id}
        assert {"swiftshot.worker.engine", "swiftshot.worker.ops",
                "swiftshot.worker.encode"} <= set(worker), [s.name for s in spans]
        for s in worker.values():
            assert format(s.context.trace_id, "032x") == TRACE_ID
            assert s.start_time <= s.end_time
        engine, ops, encode = (worker[f"swiftshot.worker.{n}"] for n in ("engine", "ops",
                                                                         "encode"))
        # the fake engine sleeps 50 ms in the worker; its stages come in order
        assert engine.end_time - engine.start_time >= 40_000_000
        assert engine.end_time <= ops.start_time <= ops.end_time <= encode.start_time
