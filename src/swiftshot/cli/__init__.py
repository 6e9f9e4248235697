"""The ``swiftshot`` command line.

Each sub-command lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Modules are found
by name, so adding a command touches no other file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from swiftshot import __version__


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swiftshot", description="Fast product images: generate, cut out, compose, serve."
    )
    parser.add_argument("--version", action="version", version=f"swiftshot {__version__}")
    parser.add_argument("--config", help="TOML settings file (else SWIFTSHOT_CONFIG, env, defaults)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from pydantic import ValidationError

    from swiftshot.engines import EngineError

    # a command run from the real command line (not main([...]) inside another program) may
    # re-execute its own process (serve: malloc tunables that only apply at start)
    args.own_process = argv is None
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"swiftshot: error: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:
        print(f"swiftshot: error: {format_validation_error(e)}", file=sys.stderr)
        return 2
    except EngineError as e:
        print(f"swiftshot: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def format_validation_error(e: object) -> str:
    """One line per problem: 'field: message'."""
    parts = []
    for err in e.errors():  # type: ignore[attr-defined]
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def load_cli_settings(args: argparse.Namespace):  # -> Settings
    from swiftshot.config import load_settings

    try:
        return load_settings(getattr(args, "config", None))
    except ValueError as e:
        raise CliError(str(e)) from None
