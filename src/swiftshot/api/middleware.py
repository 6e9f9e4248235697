"""The one middleware: body limit, disconnect → cancel, in-flight count, request metrics
(duration by route and priority; responses by route template and status class).

Pure ASGI (no BaseHTTPMiddleware): on a cache hit it adds a counter bump and a histogram
observation, nothing more.

Bodies (POST/PUT/PATCH) are read here in full, counting bytes against ``max_body_bytes``, so a
too-large body is refused with 413 as soon as the limit is passed (or at once from its
Content-Length). The route then runs as a task while this middleware waits for the client to
hang up; if it does, the task is cancelled, which cancels the queued work down to the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from swiftshot import telemetry
from swiftshot.api.errors import error_response
from swiftshot.runtime.aio import wait_event

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Endpoint = Callable[[Any], Awaitable[Any]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(Exception):
    pass


class InFlight:
    """Requests being handled now; a drain waits for the ones that began before it.

    Requests arriving during the drain (probes, cache hits, refusals) are not waited for: on a
    busy server the total would seldom touch zero and every drain would last its full timeout.
    """

    def __init__(self) -> None:
        self.count = 0
        self._before_drain = 0
        self._draining = False
        self._idle = asyncio.Event()

    def enter(self) -> bool:
        """Count a request in; returns whether the drain must wait for it."""
        self.count += 1
        if self._draining:
            return False
        self._before_drain += 1
        return True

    def leave(self, waited_for: bool) -> None:
        self.count -= 1
        if waited_for:
            self._before_drain -= 1
            if self._before_drain == 0 and self._draining:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Begin draining; wait until the requests that were in flight have finished."""
        self._draining = True
        if self._before_drain == 0:
            return True
        return await wait_event(self._idle, timeout_s)

    @property
    def waiting_for(self) -> int:
        return self._before_drain


class ServiceMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, inflight: InFlight,
                 fast_get: Mapping[str, ASGIApp] | None = None,
                 fast_post: Mapping[str, Endpoint] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.inflight = inflight
        self.fast_get = tuple((fast_get or {}).items())
        """(path prefix, ASGI app) answered ahead of the framework for GET/HEAD (the hot path)."""
        self.fast_post = dict(fast_post or {})
        """Exact path → endpoint for POST: called here without the framework's routing and
        exception layers (which cost more than a cache hit); errors are mapped the same way."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        counted = self.inflight.enter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failed = True
        try:
            if scope["method"] in _BODY_METHODS:
                await self._with_body(scope, receive, send_status)
            else:
                await self._get(scope, receive, send_status)
            failed = False
        finally:
            self.inflight.leave(counted)
            record_request(_route_label(scope), scope.get("state", {}).get("priority", "none"),
                           status, failed, time.perf_counter() - t0)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            for prefix, fast in self.fast_get:
                if path.startswith(prefix):
                    await fast(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        length = _content_length(scope)
        if length is not None and length > self.max_body_bytes:
            raise BodyTooLarge
        return await _read(receive, self.max_body_bytes)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(scope, receive)
        except BodyTooLarge:
            await _send(send, error_response(
                413, f"request body is larger than server.max_body_bytes "
                f"({self.max_body_bytes} bytes)", code="body_too_large",
                headers={"Connection": "close"}))
            return
        if body is None:  # the client left while sending
            return
        done = asyncio.Event()

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                chunk, body = body, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        endpoint = self.fast_post.get(scope["path"]) if scope["method"] == "POST" else None
        call = self.app(scope, replay, send) if endpoint is None else \
            _call_endpoint(endpoint, scope, replay, send)
        task = asyncio.ensure_future(call)
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                # the client hung up: nobody will read the answer, stop the work behind it
                task.cancel()
                done.set()
            try:
                await task
            except asyncio.CancelledError:
                if not watcher.done():
                    raise
        finally:
            done.set()
            watcher.cancel()
            if not task.done():
                task.cancel()


async def _call_endpoint(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.requests import Request

    from swiftshot.api.errors import response_for

    try:
        response = await endpoint(Request(scope, receive))
    except Exception as e:  # noqa: BLE001 - mapped exactly as the app's exception handlers do
        response = response_for(e)
    await response(scope, receive, send)


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send(send: Send, response: Any) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_PLAIN_ROUTES = frozenset({"/", "/healthz", "/readyz", "/metrics", "/v1/images/generations",
                           "/v1/render"})


def _status_class(status: int, failed: bool) -> str:
    # An exception that escaped is a server error whatever was sent before it. No answer and
    # no exception means the client hung up first: counted as nginx's 499, not against us.
    if failed:
        return "5xx"
    if not status:
        return "4xx"
    return f"{min(max(status // 100, 1), 5)}xx"


def record_request(route: str, priority: str, status: int, failed: bool, seconds: float) -> None:
    """Count one request: ``swiftshot_request_duration_seconds{route, priority}`` and
    ``swiftshot_responses_total{route, code}`` (this middleware and the serving fast path)."""
    _duration(route, priority).observe(seconds)
    _response_counter(route, _status_class(status, failed)).inc()


_DURATION_CHILDREN: dict[tuple[str, str], Any] = {}


def _duration(route: str, priority: str) -> Any:
    child = _DURATION_CHILDREN.get((route, priority))
    if child is None:
        child = _DURATION_CHILDREN[(route, priority)] = telemetry.REQUEST_DURATION.labels(
            route, priority)
    return child


_RESPONSE_CHILDREN: dict[tuple[str, str], Any] = {}


def _response_counter(route: str, code: str) -> Any:
    # labels() costs more than inc() on the hit path; routes are templates, so this stays small.
    child = _RESPONSE_CHILDREN.get((route, code))
    if child is None:
        child = _RESPONSE_CHILDREN[(route, code)] = telemetry.RESPONSES.labels(route, code)
    return child


def _route_label(scope: Scope) -> str:
    # Routes added with add_route (the cheap ones) leave no "route" in the scope under
    # FastAPI's included routers; label them from the path, never with the raw path itself.
    path = getattr(scope.get("route"), "path", None)
    if path:
        return path
    raw = scope.get("path", "")
    if raw.startswith("/i/"):
        return "/i/{name}"
    return raw if raw in _PLAIN_ROUTES else "unmatched"
