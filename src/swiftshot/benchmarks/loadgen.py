"""The open-loop runner: send each planned request at its scheduled time, whatever came before.

The clock is injected (``now()``, ``sleep_until()``) so tests can drive the runner with a fake
clock and prove that a slow server does not delay later sends. ``HttpTarget`` turns a
:class:`~swiftshot.benchmarks.mix.PlannedRequest` into real HTTP against a loopback server.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from swiftshot.benchmarks.http import Client, Response
from swiftshot.benchmarks.mix import PlannedRequest, product_png
from swiftshot.benchmarks.stats import Outcome, parse_server_timing

Record = Callable[[Outcome], None]
Send = Callable[[PlannedRequest, Outcome, Record], Awaitable[None]]


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, t: float) -> None:
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def run_open_loop(schedule: Sequence[float], requests: Sequence[PlannedRequest], send: Send,
                        *, clock: Clock | None = None, timeout_s: float = 60.0,
                        drain_s: float = 10.0) -> list[Outcome]:
    """Send ``requests[i]`` at ``start + schedule[i]``; return every outcome, answered or not.

    After the last send, in-flight requests get ``drain_s`` more seconds; those still open are
    cancelled and recorded with status 0 and ``error="unfinished"``.
    """
    if len(schedule) != len(requests):
        raise ValueError(f"{len(schedule)} arrival times for {len(requests)} requests")
    clock = clock or RealClock()
    outcomes: list[Outcome] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(req: PlannedRequest, out: Outcome) -> None:
        try:
            await asyncio.wait_for(send(req, out, outcomes.append), timeout_s)
        except TimeoutError:
            out.error = f"client timeout after {timeout_s:g} s"
        except (OSError, asyncio.IncompleteReadError, ValueError) as e:
            out.error = f"{type(e).__name__}: {e}"
        if out.error and math.isnan(out.done):
            out.done = clock.now()

    start = clock.now()
    for t, req in zip(schedule, requests, strict=True):
        await clock.sleep_until(start + t)
        out = Outcome(kind=req.kind, priority=req.priority, scheduled=start + t)
        outcomes.append(out)
        tasks.append(asyncio.create_task(one(req, out)))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for out in outcomes:
        if out.status == 0 and out.error is None:
            out.error = "unfinished"
    return outcomes


async def run_closed_loop(requests: Callable[[int], PlannedRequest], send: Send, *,
                          concurrency: int, duration_s: float, warmup_s: float = 0.0,
                          timeout_s: float = 60.0) -> tuple[list[Outcome], float]:
    """``concurrency`` workers, each sending its next request as soon as the last one is answered.

    Returns the outcomes that finished after ``warmup_s`` and the length of that window: the
    completed-per-second over it is the server's capacity for these requests.
    """
    clock = RealClock()
    start = clock.now()
    measure_from = start + warmup_s
    stop = start + warmup_s + duration_s
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))

    async def worker() -> None:
        while clock.now() < stop:
            req = requests(next(counter))
            out = Outcome(kind=req.kind, priority=req.priority, scheduled=clock.now())
            try:
                await asyncio.wait_for(send(req, out, lambda o: None), timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                out.error = f"{type(e).__name__}: {e}"
                out.done = clock.now()
            if out.done >= measure_from and out.done <= stop:
                outcomes.append(out)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes, duration_s


class HttpTarget:
    """Sends planned requests to a server with the OpenAI-compatible generations route."""

    GENERATE = "/v1/images/generations"

    def __init__(self, client: Client, *, upload_route: str | None = None,
                 rng: random.Random | None = None, clock: Clock | None = None) -> None:
        self.client = client
        self.upload_route = upload_route
        self.clock = clock or RealClock()
        self._rng = rng or random.Random(1)
        self._products: list[bytes] = []

    async def send(self, req: PlannedRequest, out: Outcome, record: Record) -> None:
        if req.kind == "upload":
            if not self.upload_route:
                raise ValueError("the mix holds uploads but the server has no upload route")
            path, headers, body = self._upload(req)
        else:
            path, headers, body = self.GENERATE, {**req.headers, "Content-Type": "application/json"}, \
                json.dumps(req.body).encode()
        out.sent = self.clock.now()
        resp = await self.client.request("POST", path, headers, body)
        self._finish(out, resp)
        if req.fetch_headers is None or not out.ok:
            return
        url = _first_url(resp.body)
        if url is None:
            return
        fetch = Outcome(kind="fetch", priority=req.priority, scheduled=self.clock.now())
        record(fetch)
        fetch.sent = fetch.scheduled
        resp = await self.client.request("GET", url, req.fetch_headers)
        self._finish(fetch, resp)

    def _finish(self, out: Outcome, resp: Response) -> None:
        out.done = self.clock.now()
        out.status = resp.status
        out.x_cache = resp.headers.get("x-cache")
        out.server_timing = parse_server_timing(resp.headers.get("server-timing"))
        if not out.ok:
            out.error = resp.body[:200].decode("utf-8", "replace")

    def _upload(self, req: PlannedRequest) -> tuple[str, dict[str, str], bytes]:
        """A seller's product photo to cut out (remove.bg's form shape, as swiftshot serves it)."""
        if not self._products:
            self._products = [product_png(self._rng) for _ in range(8)]
        photo = self._rng.choice(self._products)
        boundary = uuid.uuid4().hex
        fields = {"size": "auto", "type": "product", "format": req.body.get("output_format", "webp")}
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image_file"; '
                     f'filename="product.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                     + photo + b"\r\n")
        parts.append(f"--{boundary}--\r\n".encode())
        headers = {**req.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        assert self.upload_route is not None
        return self.upload_route, headers, b"".join(parts)


def _first_url(body: bytes) -> str | None:
    try:
        data = json.loads(body)
        item = data["data"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    url = item.get("url") if isinstance(item, dict) else None
    if isinstance(url, str) and url.startswith("/"):
        return url
    if isinstance(url, str) and "://" in url:
        # Absolute URL built from public_url: fetch its path from the same loopback server.
        return "/" + url.split("://", 1)[1].split("/", 1)[-1]
    return None

