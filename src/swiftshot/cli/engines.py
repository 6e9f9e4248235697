"""``swiftshot engines``: list engines, the models found, and their optimisation switches."""

from __future__ import annotations

import argparse
import json

from swiftshot.cli import load_cli_settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="list engines, models found and optimisation switches")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--probe", action="store_true",
                   help="run the diffusion backend probe now where auto has not decided yet "
                        "(loads the model with each backend; minutes for a real model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swiftshot.engines import ENGINE_NAMES, create_engine

    settings = load_cli_settings(args)
    rows = []
    for name in ENGINE_NAMES:
        try:
            engine = create_engine(name, settings)
            pending = getattr(engine, "backend_pending", False)
            if pending and args.probe:
                engine.load()  # backend auto: the probe measures, decides and caches
                pending = False
            info = engine.describe() if hasattr(engine, "describe") else {}
            # reading the version of an undecided auto engine would run the probe
            version = "(decided by the auto probe at first load)" if pending else engine.version
            rows.append({"engine": name, "version": version, "available": True, **info})
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
