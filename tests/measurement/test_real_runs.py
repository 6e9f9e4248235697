"""Real HTTP runs of the load generator: the naive server (fake engine) always; swiftshot serve
and Locust marked slow. Small loads — these prove the machinery, not speed."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from swiftshot.benchmarks import procs, serve

ROOT = Path(__file__).resolve().parents[2]


def _args(**kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    argv: list[str] = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        argv += [flag] if v is True else [flag, str(v)]
    return parser.parse_args(argv)


@pytest.fixture
def naive_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTSHOT_ENGINE__FAKE__DELAY_S", "0.005")
    port = procs.free_port()
    env = procs.server_env(tmp_path, "fake", "64x64")
    with procs.running(procs.naive_command(port, "fake", "64x64"), env, port, ready_timeout_s=60) as url:
        yield url


def test_small_run_against_the_naive_server(naive_url, tmp_path):
    args = _args(url=naive_url, engine="fake", size="64x64", rate=25, duration=1.5,
                 unloaded_s=0.8, hits_s=0.5, calibrate_s=0.8, calibrate_concurrency=2,
                 drain_s=3, fetch_share=0.5, upload_share=0.3, out=tmp_path / "serve.json")
    result = serve.run(args)
    sw = result["swiftshot"]
    assert result["rate_rps"] == 25 and result["capacity"]["measured_on"] == "given (--rate)"
    assert sw["capacity"]["rps"] > 0  # measured and reported even when --rate is given
    loaded = sw["loaded"]
    assert 15 <= loaded["requests"] <= 60  # ~25/s for 1.5 s, Poisson
    assert loaded["ok"] == loaded["requests"] and loaded["error_rate"] == 0
    assert loaded["by_kind"]["fetch"]["ok"] > 0  # image URLs were fetched with browser headers
    assert loaded["by_kind"]["upload"]["ok"] > 0  # product photos were cut out
    assert sw["upload_route"] == "/v1.0/removebg" and sw["upload_share"] == 0.3
    assert set(loaded["by_priority"]) <= {"realtime", "standard", "batch"}
    assert loaded["p50_ms"] <= loaded["p95_ms"] <= loaded["p99_ms"]
    # The naive server sends no X-Cache and has no /metrics: reported as not measured.
    assert math.isnan(loaded["cache"]["hit_ratio"]) and "server" not in loaded
    assert loaded["client"]["cpu_ms_per_request"] > 0
    assert math.isnan(sw["hits"]["cache"]["hit_ratio"])  # the hit-only phase ran, found no cache
    serve.report(result)
    path = serve.write_result("serve", serve.json_safe(result), args.out)
    saved = json.loads(path.read_text())  # strict JSON: NaN became null
    assert saved["machine"]["cores"] and saved["swiftshot"]["derived"]["cache_hit_ratio"] is None


def test_compare_naive_gives_ratios(naive_url, tmp_path):
    # The target here is itself a naive server: the ratios must come out near 1.
    args = _args(url=naive_url, compare="naive", engine="fake", size="64x64", duration=1.5,
                 unloaded_s=0.8, calibrate_s=1.0, calibrate_concurrency=2, load=0.5, drain_s=3,
                 hits_s=0)
    result = serve.run(args)
    assert set(result) >= {"swiftshot", "naive", "ratios", "capacity"}
    assert result["capacity"]["measured_on"] == "naive"
    assert result["rate_rps"] == pytest.approx(0.5 * result["capacity"]["rps"])
    assert set(result["ratios"]) >= {"goodput", "p95", "throughput", "miss_capacity"}
    assert 0.3 < result["ratios"]["goodput"] < 3
    # the naive server reports its own work (Server-Timing infer + encode): its round trip is
    # measured, and the overhead beyond it is a number
    nv, sw = result["naive"]["derived"], result["swiftshot"]["derived"]
    assert nv["infer_p50_ms"] > 0 and nv["overhead_p50_ms"] > 0
    assert math.isfinite(sw["overhead_beyond_naive_ratio"])
    # the same requests on both servers, in the same order; a naive target says no X-Cache,
    # so it has no misses to pair
    assert result["same_requests"]["pairs"] == 0 and math.isnan(result["ratios"]["miss_p50_same_requests"])


@pytest.mark.slow
def test_run_against_swiftshot_serve(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTSHOT_ENGINE__FAKE__DELAY_S", "0.01")
    args = _args(spawn=True, engine="fake", size="64x64", rate=30, duration=2, unloaded_s=1,
                 hits_s=1, hits_rate=30, calibrate_s=0, drain_s=5, priority_mix="realtime=1,batch=1",
                 upload_share=0.2)
    result = serve.run(args)
    sw = result["swiftshot"]
    loaded = sw["loaded"]
    assert loaded["ok"] >= 0.9 * loaded["requests"] > 0
    assert loaded["cache"]["hit_ratio"] > 0.2  # the Zipf head repeats: swiftshot caches it
    assert set(loaded["by_priority"]) == {"realtime", "batch"}
    assert loaded["by_kind"]["upload"]["ok"] > 0 and sw["upload_route"] == "/v1.0/removebg"
    stages = loaded["server"]["stages_ms"]
    assert "cache" in stages and loaded["server"]["generations"] > 0  # /metrics was diffed
    assert sw["hits"]["cache"]["hit_ratio"] == 1.0
    assert sw["hits"]["server_cpu_ms_per_request"] > 0  # the spawned server's CPU was read
    d = sw["derived"]
    assert d["cache_hit_p99_ms"] > 0 and d["cache_hit_ratio"] == loaded["cache"]["hit_ratio"]
    assert sw["unloaded"]["requests"] > 0


@pytest.mark.slow
def test_locustfile_drives_the_mix(naive_url, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
         # 10 s, not 3: at load 18 the users spent the whole of 3 s starting and the run once
         # ended without a single generate request
         "--host", naive_url, "-u", "3", "-r", "3", "-t", "10s", "--engine-model", "fake",
         "--size", "64x64", "--only-summary", "--csv", str(tmp_path / "loc")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = (tmp_path / "loc_stats.csv").read_text().splitlines()
    names = {row.split(",")[1] for row in rows[1:]}
    assert any(n.startswith("generate [") for n in names) and "Aggregated" in names


@pytest.mark.slow
def test_locustfile_refuses_a_remote_host(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
         "--host", "http://192.0.2.1:8000", "-u", "1", "-r", "1", "-t", "2s", "--only-summary"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "loopback" in out
    assert "Max retries exceeded" not in out  # refused before any user sent a request


def test_a_server_that_cannot_start_is_one_clear_cli_error(capsys):
    from swiftshot.cli import main

    assert main(["bench", "serve", "--engine", "nosuch", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "before it was ready" in err and "unknown engine 'nosuch'" in err
