"""``swiftshot bench check``: run the quick benchmarks and hold them to ``perf/budgets.toml``.

Budgets are mostly ratios measured in the same run on the same machine (swiftshot against the
naive server, loaded against unloaded, cache hit against miss), so they survive a noisy shared CI
machine; absolute figures get generous ceilings only. Each budget also states the *goal* the
project aims for (docs/PERFORMANCE.md); the goal is reported, the budget is enforced.

Exit status: 0 when every budget holds, 1 naming each broken one (measured vs bound), 2 for a
bad budget file or arguments. ``--from FILE`` checks a saved result instead of running.

A budget's ``metric`` is a dotted path into the results, whose first part names the benchmark:
``serve`` is ``bench serve`` run with the ``args`` of ``[run.serve]``. Another benchmark module
``swiftshot.benchmarks.<name>`` can take part by exposing ``quick() -> dict``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftshot.benchmarks.machine import print_table, write_result

DEFAULT_BUDGETS = Path("perf/budgets.toml")


@dataclass(frozen=True)
class Budget:
    name: str
    metric: str
    min: float | None
    max: float | None
    goal: str
    why: str
    requires: Budget | None = None
    """A condition on the run itself (e.g. the naive server was really overloaded). When it
    does not hold, the run did not test what the budget is about: the budget is reported
    inconclusive, loudly, and does not fail the check."""

    def check(self, value: float | None) -> str | None:
        """None when the budget holds, else why it does not."""
        if value is None or not isinstance(value, int | float) or math.isnan(value):
            return f"{self.metric} was not measured"
        if self.min is not None and value < self.min:
            return f"{self.metric} = {value:.4g}, below the minimum {self.min:g}"
        if self.max is not None and value > self.max:
            return f"{self.metric} = {value:.4g}, above the maximum {self.max:g}"
        return None

    @property
    def bound(self) -> str:
        return " and ".join(p for p in (f"≥ {self.min:g}" if self.min is not None else "",
                                        f"≤ {self.max:g}" if self.max is not None else "") if p)


def load_budgets(path: Path) -> tuple[list[Budget], dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"budget file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"budget file {str(path)!r} is not valid TOML: {e}") from None
    budgets = []
    for i, b in enumerate(data.get("budget", [])):
        where = f"{path}: budget #{i + 1} ({b.get('name', 'unnamed')})"
        budgets.append(_budget(b, where))
    if not budgets:
        raise ValueError(f"budget file {str(path)!r} holds no [[budget]] entries")
    return budgets, data.get("run", {})


def _budget(b: dict[str, Any], where: str, nested: bool = False) -> Budget:
    allowed = {"name", "metric", "min", "max", "goal", "why"} | (set() if nested else {"requires"})
    unknown = set(b) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    if not isinstance(b.get("metric"), str) or "." not in b["metric"]:
        raise ValueError(f"{where}: metric must be a dotted path like 'serve.ratios.goodput'")
    if b.get("min") is None and b.get("max") is None:
        raise ValueError(f"{where}: give min, max or both")
    requires = None
    if "requires" in b:
        if not isinstance(b["requires"], dict):
            raise ValueError(f"{where}: requires must be a table {{metric, min, max}}")
        requires = _budget(b["requires"], f"{where} requires", nested=True)
    return Budget(str(b.get("name", b["metric"])), b["metric"], b.get("min"), b.get("max"),
                  str(b.get("goal", "")), str(b.get("why", "")), requires)


def lookup(results: dict[str, Any], path: str) -> Any:
    node: Any = results
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def evaluate(budgets: list[Budget], results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for b in budgets:
        value = lookup(results, b.metric)
        problem = b.check(value)
        status = "ok" if problem is None else "BROKEN"
        unmet = b.requires.check(lookup(results, b.requires.metric)) if b.requires else None
        if unmet is not None:
            status, problem = "inconclusive", f"the run did not meet {b.requires.bound} for this " \
                f"budget: {unmet}"  # type: ignore[union-attr]
        rows.append({"budget": b.name, "measured": value if value is not None else "-",
                     "bound": b.bound, "goal": b.goal, "status": status, "problem": problem})
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="the quick benchmarks (≤ 3 minutes on 2 cores): what CI runs")
    p.add_argument("--budgets", default=str(DEFAULT_BUDGETS), help="budget file (TOML)")
    p.add_argument("--from", dest="from_json", metavar="FILE",
                   help="check a saved `bench serve` JSON result instead of running")
    p.add_argument("--out", help="JSON result path (default bench/results/check.json)")


def main(args: argparse.Namespace) -> int:
    from swiftshot.cli import CliError

    try:
        budgets, runs = load_budgets(Path(args.budgets))
        results = _results(args, budgets, runs)
    except ValueError as e:
        raise CliError(str(e)) from None
    rows = evaluate(budgets, results)
    print("\nperformance budgets (perf/budgets.toml)")
    print_table(rows, ["budget", "measured", "bound", "goal", "status"])
    broken = [r for r in rows if r["status"] == "BROKEN"]
    from swiftshot.benchmarks.serve import json_safe

    path = write_result("check", json_safe({"budgets": rows, "results": results}), args.out)
    print(f"\nwrote {path}")
    for r in rows:
        if r["status"] == "inconclusive":
            print(f"budget inconclusive (not enforced this run): {r['budget']}: {r['problem']}")
    for r in broken:
        print(f"budget broken: {r['budget']}: {r['problem']} (goal {r['goal'] or 'none'})")
    return 1 if broken else 0


def _results(args: argparse.Namespace, budgets: list[Budget], runs: dict[str, Any]) -> dict[str, Any]:
    if args.from_json:
        try:
            data = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {args.from_json!r}: {e}") from None
        return {data.get("benchmark", "serve"): data}
    results: dict[str, Any] = {}
    for name in sorted({b.metric.split(".", 1)[0] for b in budgets}):
        if name == "serve":
            results["serve"] = _run_serve(runs.get("serve", {}), quick=args.quick)
        else:
            module = importlib.import_module(f"swiftshot.benchmarks.{name}")
            if not hasattr(module, "quick"):
                raise ValueError(f"budgets name benchmark {name!r} but swiftshot.benchmarks.{name} "
                                 "has no quick() to run")
            results[name] = module.quick()
    return results


def _run_serve(run_cfg: dict[str, Any], *, quick: bool) -> dict[str, Any]:
    from swiftshot.benchmarks import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    argv = [str(a) for a in run_cfg.get("args", ["--compare", "naive"])]
    if quick and "--quick" not in argv:
        argv.append("--quick")
    ns = parser.parse_args(argv)
    result = serve.run(ns)
    serve.report(result)
    write_result("serve-check", serve.json_safe(result))
    return result
