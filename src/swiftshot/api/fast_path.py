"""The serving fast path: ``GET``/``HEAD /i/...`` memory-tier hits answered ahead of the app.

``swiftshot serve`` hands uvicorn a :class:`HitFastPath` wrapped around the FastAPI app. For a
request it can answer plainly — ``GET`` or ``HEAD`` under ``/i/``, a well-formed key and
parameters, the variant in the in-process cache tier — it sends the answer itself: the same
status, headers and body as the full app (``routes_delivery.memory_hit`` shares its code with
``resolve``), the same side effects (prefetch profile, popularity count, cache-hit counter),
counted in the in-flight drain count and in ``swiftshot_request_duration_seconds`` /
``swiftshot_responses_total`` under ``route="/i/{name}"`` as the service middleware counts it.
Everything else — other paths and methods, misses, bad keys and parameters (the 4xx JSON), a
``Width`` hint that needs the master's size, FastAPI's own OpenTelemetry instrumentation when a
global provider turns it on — goes to the full app unchanged, having cost a prefix test.

Why: a memory hit is a dict probe, and the layers FastAPI puts around every request
(``ServerErrorMiddleware``, its exception-telemetry and body-limit middlewares, which read the
OpenTelemetry providers per request) plus a labelled histogram look-up cost as much as it
(docs/PERFORMANCE.md, "HTTP hot path"). ``server.fast_hits = false`` turns it off.
"""

from __future__ import annotations

import time

from swiftshot.api import routes_delivery
from swiftshot.api.middleware import ASGIApp, Receive, Scope, Send, record_request

ROUTE = "/i/{name}"
"""The route label of the request metrics, as the service middleware gives ``/i/`` requests."""


class HitFastPath:
    """Raw ASGI entry point: plain ``/i/`` memory hits here, everything else to ``app``."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app = app
        """The full FastAPI app (its ``state`` holds the service, ETags and in-flight count)."""
        self.enabled = enabled
        self._state = app.state  # type: ignore[attr-defined]
        self._framework_telemetry: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not self.enabled or not scope["path"].startswith("/i/")
                or scope["method"] not in ("GET", "HEAD") or self._framework_instrumented()):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        hit = routes_delivery.memory_hit(self._state, scope)
        if hit is None:
            await self.app(scope, receive, send)
            return
        status, headers, body = hit
        inflight = self._state.inflight
        counted = inflight.enter()
        failed = True
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            failed = False
        finally:
            inflight.leave(counted)
            record_request(ROUTE, "none", status, failed, time.perf_counter() - t0)

    def _framework_instrumented(self) -> bool:
        # FastAPI opens a server span per request when a global OpenTelemetry provider is set
        # (opentelemetry-instrument, say; swiftshot's own tracing uses its own provider). Asked
        # once, at the first /i/ request: asking per request reads os.environ three times.
        if self._framework_telemetry is None:
            native = getattr(self.app, "_native_telemetry", None)
            self._framework_telemetry = bool(native is not None and native.enabled())
        return self._framework_telemetry
