"""Alert rules, their unit tests, the scrape config and the dashboard, checked with promtool;
every swiftshot_* metric they name must be one the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "swiftshot-dashboard.json"
METRIC_RE = re.compile(r"\bswiftshot_[a-z0-9_]+")


def promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is needed (Debian package prometheus; .ci/run installs it)"
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_are_valid():
    r = promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_alert_rules_fire_on_synthetic_series():
    r = promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_rule_tests_catch_a_wrong_threshold(tmp_path):
    # The unit tests must bite: with a realtime budget of 5 s the latency alert cannot fire.
    rules = (PROM / "alerts.yml").read_text()
    loosened = rules.replace('{priority="realtime"} > 0.4', '{priority="realtime"} > 5')
    assert loosened != rules
    (tmp_path / "alerts.yml").write_text(loosened)
    shutil.copy(PROM / "alerts_test.yml", tmp_path / "alerts_test.yml")
    r = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert r.returncode != 0 and "SwiftshotRealtimeLatencyHigh" in r.stdout + r.stderr


def test_scrape_config_is_valid():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in data["panels"] for t in p["targets"]]


def test_dashboard_queries_parse(tmp_path):
    # promtool has no "check expression"; a rule file of recording rules gets the same parser.
    exprs = [e.replace("$__rate_interval", "5m").replace("$job", ".*") for e in dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dash.yml").write_text(yaml.safe_dump(rules))
    r = promtool("check", "rules", "dash.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_has_the_panels_an_operator_needs():
    titles = " ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for word in ("latency", "stage", "error", "throughput", "queue", "cache hit", "batch"):
        assert word in titles, f"no dashboard panel about {word}"


def exported_names() -> set[str]:
    from swiftshot.telemetry import REGISTRY

    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def named_metrics(texts: list[str]) -> set[str]:
    return {m for t in texts for m in METRIC_RE.findall(t)}


def rule_exprs() -> list[str]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_named_is_exported(source):
    texts = rule_exprs() if source == "alerts" else dashboard_exprs()
    named = named_metrics(texts)
    assert len(named) >= 5, named
    missing = named - exported_names()
    assert not missing, f"{source} names metrics swiftshot does not export: {sorted(missing)}"


def test_metric_check_would_catch_a_typo():
    assert named_metrics(["rate(swiftshot_cache_request_total[5m])"]) - exported_names() == \
        {"swiftshot_cache_request_total"}
