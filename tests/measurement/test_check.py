"""`swiftshot bench check`: budgets loaded, checked against results, broken ones named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from swiftshot.benchmarks.check import Budget, evaluate, load_budgets
from swiftshot.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_budgets_load_and_name_real_result_fields():
    budgets, runs = load_budgets(ROOT / "perf" / "budgets.toml")
    assert len(budgets) >= 8
    assert "--compare" in runs["serve"]["args"]
    from swiftshot.benchmarks.serve import compare, derived

    fake_loaded = {"by_priority": {}, "cache": {"hit": {"p99_ms": 1.0}, "hit_ratio": 0.5}, "client": {
        "cpu_ms_per_request": 0.1, "send_lag_p99_ms": 1.0}, **{k: 1.0 for k in (
            "offered_rps", "goodput_rps", "throughput_rps", "slo_attainment", "p50_ms", "p95_ms", "p99_ms",
            "rejection_rate", "error_rate", "late_rate")}}
    d = derived({"loaded": fake_loaded})
    fields = {"derived": set(d), "ratios": set(compare(d, d))}
    named = [*budgets, *(b.requires for b in budgets if b.requires)]
    scale_fields = {"scaling_min", "p95_spread"}  # benchmarks/scale.py summarise()
    for b in named:
        parts = b.metric.split(".")
        if parts[0] == "scale":
            assert parts[1] in scale_fields, f"budget {b.name!r} names an unknown field {b.metric}"
            continue
        assert parts[0] == "serve"
        section = "ratios" if parts[1] == "ratios" else "derived"
        assert parts[-1] in fields[section], f"budget {b.name!r} names an unknown field {b.metric}"


def test_budget_bounds():
    b = Budget("x", "serve.a", min=2.0, max=4.0, goal="", why="")
    assert b.check(3.0) is None
    assert "below the minimum 2" in b.check(1.5)
    assert "above the maximum 4" in b.check(4.5)
    assert "not measured" in b.check(None)
    assert "not measured" in b.check(math.nan)


def test_evaluate_reads_dotted_paths():
    budgets = [Budget("goodput", "serve.ratios.goodput", 5.0, None, "≥ 5", ""),
               Budget("errors", "serve.swiftshot.derived.error_rate", None, 0.01, "0", "")]
    rows = evaluate(budgets, {"serve": {"ratios": {"goodput": 7.5},
                                        "swiftshot": {"derived": {"error_rate": 0.2}}}})
    assert [r["status"] for r in rows] == ["ok", "BROKEN"]
    assert rows[1]["measured"] == 0.2 and "0.01" in rows[1]["problem"]


@pytest.mark.parametrize("text, message", [
    ("", r"no \[\[budget\]\]"),
    ("[[budget]]\nmetric = 'serve.x'\n", "give min, max"),
    ("[[budget]]\nmetric = 'flat'\nmin = 1\n", "dotted path"),
    ("[[budget]]\nmetric = 'serve.x'\nmin = 1\nmaxx = 2\n", "unknown keys"),
    ("[[budget]\n", "not valid TOML"),
])
def test_bad_budget_files_are_named(tmp_path, text, message):
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_budgets(path)


def test_cli_exit_codes_and_broken_budgets_named(tmp_path, capsys):
    budgets = tmp_path / "b.toml"
    budgets.write_text("[[budget]]\nname = 'goodput'\nmetric = 'serve.ratios.goodput'\nmin = 5\n"
                       "goal = '≥ 5'\n\n[[budget]]\nname = 'p95'\nmetric = 'serve.ratios.p95'\n"
                       "max = 1\n")
    result = tmp_path / "serve.json"
    result.write_text(json.dumps({"benchmark": "serve", "ratios": {"goodput": 2.5, "p95": 0.5}}))
    out = tmp_path / "check.json"
    argv = ["bench", "check", "--budgets", str(budgets), "--from", str(result), "--out", str(out)]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "budget broken: goodput: serve.ratios.goodput = 2.5, below the minimum 5" in text
    assert "budget broken: p95" not in text
    saved = json.loads(out.read_text())
    assert "machine" in saved and [r["status"] for r in saved["budgets"]] == ["BROKEN", "ok"]

    result.write_text(json.dumps({"benchmark": "serve", "ratios": {"goodput": 9, "p95": 0.5}}))
    assert main(argv) == 0

    assert main(["bench", "check", "--budgets", str(tmp_path / "none.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_budget_whose_run_precondition_fails_is_inconclusive_not_broken(tmp_path, capsys):
    budgets = tmp_path / "b.toml"
    budgets.write_text(
        "[[budget]]\nname = 'goodput'\nmetric = 'serve.ratios.goodput'\nmin = 3\n"
        "requires = { metric = 'serve.ratios.naive_effective_load', min = 1.25 }\n")
    result = tmp_path / "serve.json"
    argv = ["bench", "check", "--budgets", str(budgets), "--from", str(result),
            "--out", str(tmp_path / "c.json")]
    # The naive server kept up (1.05x): the comparison says nothing, and must not fail CI...
    result.write_text(json.dumps({"benchmark": "serve", "ratios": {
        "goodput": 1.2, "naive_effective_load": 1.05}}))
    assert main(argv) == 0
    assert "budget inconclusive (not enforced this run): goodput" in capsys.readouterr().out
    # ...but when it was overloaded the same ratio is a broken budget.
    result.write_text(json.dumps({"benchmark": "serve", "ratios": {
        "goodput": 1.2, "naive_effective_load": 2.0}}))
    assert main(argv) == 1
    assert "budget broken: goodput" in capsys.readouterr().out


def test_scale_summary_names_the_budgeted_fields():
    from swiftshot.benchmarks.scale import summarise

    rows = [{"workers": 1, "capacity_rps": 18.0, "p95_ms": 150.0},
            {"workers": 2, "capacity_rps": 30.0, "p95_ms": 100.0}]
    out = summarise(rows, 50.0)
    assert out["scaling_min"] == pytest.approx(30 / 36, abs=1e-3)
    assert out["p95_spread"] == pytest.approx(1.5)
    assert rows[1]["p95_over_device"] == 2.0
