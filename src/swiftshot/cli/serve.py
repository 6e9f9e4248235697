"""``swiftshot serve``: the HTTP service (uvicorn, uvloop, httptools), drained on SIGTERM.

On SIGTERM (or the first Ctrl-C): ``/readyz`` turns 503 so a load balancer stops sending, new
generation requests get 503 + Retry-After, in-flight requests finish (up to
``server.drain_timeout_s``), then the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from types import FrameType
from typing import Any

from swiftshot.cli import CliError, load_cli_settings

log = logging.getLogger("swiftshot.serve")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP service", description=__doc__)
    p.add_argument("--host", default=None, help="address to bind (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="TCP port (default: server.port, 8000; 0: any free)")
    p.add_argument("--engine", action="append", default=None, metavar="NAME[=MODEL]",
                   help="engine to offer: studio (default) or diffusion[=MODEL_FOLDER]; repeat "
                        "for several (the first is the default)")
    p.add_argument("--model", default=None, help="diffusers pipeline folder (diffusion engine)")
    p.add_argument("--executor", choices=("inline", "process", "ray"), default=None,
                   help="what runs the engines: process (default: engine worker processes), "
                        "inline (a thread of this process) or ray")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes per engine (default: 1 per GPU, else 1 per core); "
                        "with --executor ray: replicas per engine (a fixed count)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --executor ray: join this cluster (auto, HOST:PORT, "
                        "ray://HOST:PORT) instead of starting a local Ray")
    p.add_argument("--config", default=argparse.SUPPRESS,
                   help="TOML settings file (else SWIFTSHOT_CONFIG, env, defaults)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Any:
    settings = load_cli_settings(args)
    if args.host is not None:
        settings.server.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise CliError(f"--port must be between 0 and 65535; got {args.port}")
        settings.server.port = args.port
    if args.engine:
        from swiftshot.service import parse_offer

        try:
            offers = [parse_offer(e) for e in args.engine]
        except ValueError as e:
            raise CliError(str(e)) from None
        settings.engine.default = offers[0][0]
        settings.engine.serve = list(args.engine) if len(offers) > 1 or offers[0][1] else []
    if args.model is not None:
        settings.engine.diffusion.model = args.model
    if args.executor is not None:
        settings.engine.executor = args.executor
    elif "executor" not in settings.engine.model_fields_set:
        settings.engine.executor = "process"  # serve's default; the library's is inline
    if args.workers is not None:
        if not 1 <= args.workers <= 64:
            raise CliError(f"--workers must be between 1 and 64; got {args.workers}")
        settings.engine.workers = args.workers
    if getattr(args, "ray_address", None) is not None:
        if settings.engine.executor != "ray":
            raise CliError("--ray-address needs --executor ray")
        settings.ray.address = args.ray_address
    return settings


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from swiftshot.api.app import create_app, serving_entry
    from swiftshot.errors import ServiceError
    from swiftshot.service import Service

    settings = _settings(args)
    if getattr(args, "own_process", False) and settings.server.malloc_huge_pages:
        _reexec_with_huge_pages()
    if settings.engine.executor == "ray":
        _join_ray(settings)
    try:
        # an unknown engine is a CLI error (exit 2), not a crash
        svc = Service.from_settings(settings)
    except (ServiceError, ValueError) as e:
        raise CliError(str(e)) from None
    engine = svc.info
    try:
        app = create_app(settings, service=svc)
    except ValueError as e:  # a bad api_keys_file and the like
        raise CliError(str(e)) from None
    sock = _bind(settings.server.host, settings.server.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"swiftshot serving on http://{shown}:{port}  (engine {engine.name} v{engine.version}; "
          f"offers {svc.offered_names()}; executor {settings.engine.executor})", flush=True)
    config = uvicorn.Config(serving_entry(app), loop="uvloop", http="httptools", lifespan="on",
                            access_log=settings.server.access_log, log_level="info",
                            timeout_graceful_shutdown=max(1.0, settings.server.drain_timeout_s))
    server = DrainingServer(config, app)
    server.run(sockets=[sock])
    return 0


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str] | None:
    """The environment to re-execute with so that glibc's malloc uses transparent huge pages
    (``server.malloc_huge_pages``), or None when there is nothing to do: not Linux, not glibc
    ≥ 2.35 (older ones ignore the tunable), or ``GLIBC_TUNABLES`` already sets it."""
    import platform

    if not sys.platform.startswith("linux"):
        return None
    libc, version = platform.libc_ver()
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return None
    if libc != "glibc" or (major, minor) < (2, 35):
        return None
    current = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in current:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{current}:{HUGE_PAGES_TUNABLE}" if current else HUGE_PAGES_TUNABLE
    return env


def _reexec_with_huge_pages() -> None:
    """Re-execute this very command (same PID, same arguments) with malloc on huge pages, once.

    glibc reads its tunables only when a process starts, so they cannot be switched on later.
    Each miss copies a new ~1 MB master out of the worker's shared memory into the memory
    tier; on fresh 4 KB pages that cost ~0.45 ms of page faults per miss, on 2 MB pages ~0.08
    (docs/PERFORMANCE.md, 2026-12-04). Any failure to re-execute is logged and ignored."""
    env = huge_pages_env(os.environ)
    if env is None or not getattr(sys, "orig_argv", None):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as e:
        log.warning("could not restart with huge pages for malloc (%s); serving without", e)


def _join_ray(settings: Any) -> None:
    """Start or join Ray before serving: an unreachable cluster is a clear error (exit 2)
    within ``ray.connect_timeout_s``, not a server that hangs or never gets ready."""
    try:
        from swiftshot.runtime.ray_executor import RayUnavailable, connect
    except ImportError as e:
        raise CliError(f"--executor ray needs Ray Serve: pip install 'swiftshot[ray]' ({e})") \
            from None
    try:
        connect(settings.ray)
    except RayUnavailable as e:
        raise CliError(e.message) from None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class DrainingServer:
    """uvicorn.Server whose first exit signal drains before uvicorn's own shutdown begins."""

    def __new__(cls, config: Any, app: Any) -> Any:
        import uvicorn

        class _Server(uvicorn.Server):
            def __init__(self) -> None:
                super().__init__(config)
                self._drain_task: asyncio.Task[None] | None = None
                self._loop: asyncio.AbstractEventLoop | None = None

            async def serve(self, sockets: list[socket.socket] | None = None) -> None:
                self._loop = asyncio.get_running_loop()
                await super().serve(sockets)

            # uvicorn's capture_signals routes SIGTERM and SIGINT here.
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if self._drain_task is not None or self._loop is None:
                    self.force_exit = self.force_exit or self._drain_task is not None
                    super().handle_exit(sig, frame)
                    return
                self._loop.call_soon_threadsafe(self._begin_drain)

            def _begin_drain(self) -> None:
                self._drain_task = asyncio.ensure_future(self._drain())

            async def _drain(self) -> None:
                timeout = app.state.settings.server.drain_timeout_s
                t0 = time.monotonic()
                svc = app.state.service
                svc.draining = True
                log.info("draining: waiting up to %.1f s for in-flight requests", timeout)
                try:
                    idle = await app.state.inflight.wait_idle(timeout)
                    await svc.drain(max(0.0, timeout - (time.monotonic() - t0)))
                    if not idle:
                        log.warning("drain timeout: %d requests still in flight",
                                    app.state.inflight.waiting_for)
                finally:
                    self.should_exit = True

        return _Server()
