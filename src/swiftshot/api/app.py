"""``create_app``: the FastAPI application of ``swiftshot serve``.

Routes live in ``swiftshot.api.routes_*`` modules, each exposing ``router``; every such module
is found by name and included, so a new family of endpoints is one new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

import swiftshot.api
from swiftshot import __version__, telemetry
from swiftshot.api import errors, openapi
from swiftshot.api.auth import Auth
from swiftshot.api.middleware import InFlight, ServiceMiddleware
from swiftshot.config import Settings, load_settings
from swiftshot.engines import Engine
from swiftshot.runtime import memory

log = logging.getLogger("swiftshot.api")


def route_modules() -> list[str]:
    return sorted(f"swiftshot.api.{m.name}" for m in pkgutil.iter_modules(swiftshot.api.__path__)
                  if m.name.startswith("routes_"))


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               service: object | None = None) -> FastAPI:
    """The app, with a :class:`~swiftshot.service.Service` built from ``settings`` (or given).

    The engine loads and warms up in the background after start-up, so ``/healthz`` answers at
    once and ``/readyz`` says 503 until it is done.
    """
    from swiftshot.service import Service

    settings = settings or load_settings()
    memory.tune_malloc()  # big blocks mmapped: freed photos go back to the OS (runtime/memory)
    auth = Auth(settings.auth)  # a bad keys file fails here, before anything starts
    svc = service if service is not None else (
        Service(settings, engine=engine) if engine is not None else Service.from_settings(settings))
    tracing = telemetry.Tracing(settings.telemetry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def start() -> None:
            try:
                await svc.start()
                # Start-up leaves ~10^5 long-lived objects (engine tables, modules); a full
                # collection walking them took 86 ms mid-request in a profile. Freezing them
                # keeps the collector to what requests allocate.
                gc.collect()
                gc.freeze()
            except Exception as e:  # noqa: BLE001 - reported by /readyz and the log
                app.state.start_error = f"{type(e).__name__}: {e}"
                log.exception("engine start failed")

        starting = asyncio.create_task(start(), name="swiftshot-start")
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await starting
            await svc.stop()
            tracing.shutdown()

    app = FastAPI(title="swiftshot", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.service = svc
    app.state.auth = auth
    app.state.tracing = tracing
    app.state.inflight = InFlight()
    app.state.etags = {}
    app.state.start_error = None
    errors.install(app)
    for name in route_modules():
        app.include_router(importlib.import_module(name).router)
    openapi.install(app)  # every route documented (api/openapi_routes.py)
    from swiftshot.api import routes_delivery, routes_images, routes_render

    # The cache-hit paths skip the framework's routing and exception layers (see middleware).
    app.add_middleware(ServiceMiddleware, max_body_bytes=settings.server.max_body_bytes,
                       inflight=app.state.inflight,
                       fast_get={"/i/": routes_delivery.fast_asgi(app.state)},
                       fast_post={"/v1/images/generations": routes_images.generations,
                                  "/v1/render": routes_render.render})
    return app


def serving_entry(app: FastAPI) -> Any:
    """What ``swiftshot serve`` hands uvicorn: the app behind the serving fast path for
    ``/i/`` memory hits (api/fast_path.py), or the app itself when ``server.fast_hits`` is off."""
    from swiftshot.api.fast_path import HitFastPath

    return HitFastPath(app) if app.state.settings.server.fast_hits else app
