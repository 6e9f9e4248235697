"""``swiftshot bench models|serve|check``: benchmarks that print a table and write JSON."""

from __future__ import annotations

import argparse
import importlib


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: models, ops, serve, check (budgets)")
    bsub = p.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    for name, help_ in (("models", "per-stage latency of the engines and encoders"),
                        ("ops", "product photo through cutout, backdrop, shadow, preset, encode"),
                        ("serve", "open-loop load generator against a running or spawned server"),
                        ("scale", "executor throughput and p95 on 1, 2, 4, 8 workers (simulated device)"),
                        ("check", "quick benchmarks checked against perf/budgets.toml")):
        module = _load(name)
        bp = bsub.add_parser(name, help=help_)
        if module is not None:
            module.add_arguments(bp)
            bp.set_defaults(func=module.main)
        else:
            bp.set_defaults(func=lambda args, n=name: _missing(n))


def _load(name: str):
    try:
        return importlib.import_module(f"swiftshot.benchmarks.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"swiftshot.benchmarks.{name}":
            return None
        raise


def _missing(name: str) -> int:
    from swiftshot.cli import CliError

    raise CliError(f"bench {name} is not available in this build")
