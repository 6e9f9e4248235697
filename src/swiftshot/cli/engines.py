"""``swiftshot engines``: list engines, the models found, and their optimisation switches."""

from __future__ import annotations

import argparse
import json

from swiftshot.cli import load_cli_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="list engines, models found and optimisation switches")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swiftshot.engines import ENGINE_NAMES, create_engine

    settings = load_cli_settings(args)
    rows = []
    for name in ENGINE_NAMES:
        try:
            engine = create_engine(name, settings)
            info = engine.describe() if hasattr(engine, "describe") else {}
            rows.append({"engine": name, "version": engine.version, "available": True, **info})
        except Exception as e:  # an engine whose extras are not installed is listed, not fatal
            rows.append({"engine": name, "available": False, "reason": str(e)})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        head = f"{row['engine']:<10} " + (f"v{row['version']}" if row["available"] else "unavailable")
        print(head)
        for k, v in row.items():
            if k not in ("engine", "version", "available"):
                print(f"    {k}: {v}")
    return 0
