"""Server-sent events for the streaming endpoints (native ``/v1/render``, OpenAI images).

:class:`EventStream` runs one render as a task and turns its progress (``runtime.progress``:
queued, started, partial previews) and its end (the answer, or an error) into SSE events:

    event: <type>\\ndata: <one-line JSON with "type">\\n\\n

and a ``: keep-alive`` comment whenever nothing was sent for ``keepalive_s`` (a queued request
may wait long; proxies and browsers drop idle connections).

The HTTP status is decided by what happens *first*: a refusal before the render has made any
progress (bad input found late, 429/503 admission, overload) is the ordinary JSON error answer
with its status, so a client can check ``response.ok`` as for any request; once the stream is
open, a failure is an ``error`` event carrying the same error object and its status. A client
that hangs up cancels the render (the middleware cancels the task serving the response, and this
cancels the render task), exactly as for a plain request.

The formatting of each event (native or OpenAI names and fields) is the caller's: it passes
functions that build the data dicts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from PIL import Image

from swiftshot.api.errors import response_for
from swiftshot.runtime.progress import Event, Listener, Partial, Queued, Started

KEEPALIVE_S = 5.0
"""Seconds without an event before a ``: keep-alive`` comment is sent."""
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"),
           (b"cache-control", b"no-cache, no-store"),
           (b"x-accel-buffering", b"no")]  # nginx: pass each event on at once
KEEPALIVE = b": keep-alive\n\n"

Scope = MutableMapping[str, Any]
Data = dict[str, Any]


def frame(event_type: str, data: Data) -> bytes:
    """One SSE event; ``data`` is one line of JSON (orjson never writes a newline)."""
    return b"event: " + event_type.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def encode_preview(image: Image.Image, fmt: str) -> tuple[str, str, str]:
    """(base64, format, ``WxH``) of a preview. Previews are small and must be quick: AVIF is
    sent as WebP (its encoder is ~10x slower); JPEG drops alpha onto white. ``auto``: JPEG, or
    WebP when the preview has alpha (a 256² preview: JPEG 0.15 ms / 8 KB, PNG 6.4 ms / 97 KB)."""
    if fmt == "auto":
        fmt = "webp" if "A" in image.getbands() else "jpeg"
    fmt = {"avif": "webp", "jpg": "jpeg"}.get(fmt, fmt)
    if fmt not in ("png", "jpeg", "webp"):
        fmt = "webp"
    img = image
    if fmt == "jpeg" and img.mode != "RGB":
        if img.mode in ("RGBA", "LA"):
            bg = Image.new("RGB", img.size, (255, 255, 255))
            bg.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
            img = bg
        else:
            img = img.convert("RGB")
    elif img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, "PNG", compress_level=1)
    elif fmt == "jpeg":
        img.save(buf, "JPEG", quality=75)
    else:
        img.save(buf, "WEBP", quality=70, method=2)
    return base64.b64encode(buf.getvalue()).decode("ascii"), fmt, f"{image.width}x{image.height}"


def error_data(exc: BaseException) -> tuple[int, Data]:
    """(status, ``{"error": {...}}``) exactly as the JSON error answer would carry them, plus
    ``retry_after`` (seconds) when that answer would carry a Retry-After header."""
    response = response_for(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
    body = orjson.loads(response.body)
    retry = response.headers.get("retry-after")
    if retry is not None and retry.isdigit():
        body["retry_after"] = int(retry)
    return response.status_code, body


class EventStream:
    """An ASGI response streaming one render's events.

    ``work(listener)`` does the render (passing ``listener`` down to ``Service.render``) and
    returns the data of the final event. The ``on_*`` functions build each event's
    ``(type, data)``; ``on_queued``/``on_started`` may return None to send nothing (OpenAI has
    no such events). ``preview_format`` is the format previews are encoded in.
    """

    def __init__(self, work: Callable[[Listener], Awaitable[tuple[str, Data]]], *,
                 partials: int, preview_format: str,
                 on_partial: Callable[[int, str, str, str], tuple[str, Data]],
                 on_error: Callable[[int, Data], tuple[str, Data]],
                 on_queued: Callable[[Queued], tuple[str, Data] | None] = lambda e: None,
                 on_started: Callable[[Started], tuple[str, Data] | None] = lambda e: None,
                 on_end: Callable[[], None] | None = None,
                 keepalive_s: float | None = None) -> None:
        self.work = work
        self.partials = partials
        self.preview_format = preview_format
        self.on_partial = on_partial
        self.on_error = on_error
        self.on_queued = on_queued
        self.on_started = on_started
        self.on_end = on_end
        self.keepalive_s = KEEPALIVE_S if keepalive_s is None else keepalive_s
        self.status_code = 200
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        listener = Listener(self.events.put_nowait, self.partials)
        task = asyncio.ensure_future(self.work(listener))
        try:
            await self._serve(task, scope, receive, send)
        finally:
            if not task.done():
                task.cancel()  # the client went away (or sending failed): stop the render
                with contextlib.suppress(BaseException):
                    await task
            if self.on_end is not None:
                self.on_end()

    async def _serve(self, task: asyncio.Future[tuple[str, Data]], scope: Scope, receive: Any,
                     send: Any) -> None:
        started = False
        while not (task.done() and self.events.empty()):
            getter = asyncio.ensure_future(self.events.get())
            try:
                done, _ = await asyncio.wait({getter, task},
                                             timeout=self.keepalive_s if started else None,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if getter.done() and not getter.cancelled():
                if not started:
                    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                    started = True
                chunk = await self._frame(getter.result())
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            elif not done:  # nothing for keepalive_s
                await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
        exc = task.exception()
        if exc is not None and not started:
            # refused before any progress: the ordinary JSON error answer with its status
            response = response_for(_as_exception(exc))
            self.status_code = response.status_code
            await response(scope, receive, send)
            return
        if not started:  # a cache hit: the final at once
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        if exc is None:
            event_type, data = task.result()
        else:
            status, body = error_data(_as_exception(exc))
            self.status_code = status
            event_type, data = self.on_error(status, body)
        await send({"type": "http.response.body", "body": frame(event_type, data),
                    "more_body": False})

    async def _frame(self, event: Event) -> bytes:
        if isinstance(event, Queued):
            out = self.on_queued(event)
        elif isinstance(event, Started):
            out = self.on_started(event)
        elif isinstance(event, Partial):
            b64, fmt, size = await asyncio.to_thread(encode_preview, event.image,
                                                     self.preview_format)
            out = self.on_partial(event.index, b64, fmt, size)
        else:  # pragma: no cover - Event is closed
            out = None
        return b"" if out is None else frame(*out)


def _as_exception(exc: BaseException | None) -> Exception:
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(repr(exc))
