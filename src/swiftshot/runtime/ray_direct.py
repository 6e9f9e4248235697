"""The direct data channel between the front and its Ray Serve replicas (``ray.transport = direct``).

Serve keeps the control: it places the replicas on the cluster's nodes, checks their health,
replaces dead ones and autoscales them (on the front's queue depth, which still counts every
batch sent here: ``RayExecutor._depth``). The batches and their results go over a TCP
connection of the front's own to each replica instead of through the Serve handle, whose bare
round trip (an actor call, gRPC stream reads, pickled replies, queue-length probes) cost
~2.5 ms idle on the dev VM — more than the 2 ms the whole hop may cost (docs/PERFORMANCE.md,
"Ray hop"). vLLM splits its processes the same way: control through the framework, data over
its own sockets.

::

    front                                                    replica (any node)
    FrontRouter.update_replicas ─► RayExecutor learns a replica id
    handle.direct_address(_to=id) ─── Serve, once ───►  starts ReplicaChannel (node IP, port 0)
                                 ◄── host, port, token ──
    FrontLink ══ TCP ═══ token ═════════════════════════► _ReplicaConn (checks it, raw bytes)
              ◄═ ("hello", name) ════════════════════════
              ══ ("run", key, Batch, rank) ══════════════► PriorityGate → engine thread
              ◄═ ("started", key) ═══════════════════════  (an engine thread took it)
              ◄═ ("partial", key, item, packed image) ═══  (previews, if asked)
              ◄═ ("result", key, BatchResult) | ("error", key, ServiceError)
              ══ ("cancel", key) ════════════════════════► stop between steps

Frames are ``multiprocessing.Connection``'s (a 4-byte length, runtime/pipe_reader.py), each a
pickle (protocol 5; the master bytes ride inline, one copy each way, no gRPC, no object
store). The first frame from the front is the replica's token as raw bytes, compared before
anything is unpickled: a stray client on the port can neither submit nor make the replica
unpickle. The token is random per replica and handed out only through Serve (which only the
cluster's own processes can call).

Results of a replica on the front's own machine skip the socket (``ray.result_shm_bytes``).
The front creates a shared-memory segment per link (runtime/shm.py's ``ResultArea``) and,
right after the token, offers its random name (``("attach", name, warm)``); a replica that can
map it (the same machine: elsewhere the name does not exist) commits and maps its first
``warm`` bytes (the largest master the server warms up for, ``shm.warm_bytes``), answers
``("attached", True)``, and the front maps those too and removes the name at once, so from
then on the memory belongs to the two mappings only and the kernel frees it when both are
unmapped or dead — a replica or front killed mid-transfer leaves nothing in ``/dev/shm``.
The link is usable only after that answer. The replica then copies every message's raw parts
into a free region of the segment (:class:`_Segment`, first fit) and sends only their place
(:data:`SHM_FLAG`); the front copies them into ``bytes`` and sends ``("release", start)``. A replica elsewhere answers False and keeps the socket, and a
message that finds no room goes over the socket too. Both ends keep warm malloc heap for the
few-MB copies (``ray.heap_keep_bytes``). Measured in docs/PERFORMANCE.md ("Ray hop ... shared
memory").

Faults (the same as the Serve path's): a connection lost before the replica said ``started``
fails the batch with ``WorkerLost(started=False)`` (the front sends it again,
``UNSTARTED_RESENDS``); after ``started`` with ``WorkerLost`` (retried once elsewhere, then a
503). A replica that is being stopped (downscaled, replaced) takes no new batch — it answers
``WorkerLost(started=False)`` — and finishes the ones it runs within its graceful shutdown. No
call waits without a bound: ``ray.batch_timeout_s`` covers every batch, the address look-up,
the connect and the hello are bounded by ``ray.direct_connect_timeout_s``.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import itertools
import logging
import pickle
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from swiftshot.errors import WorkerLost, as_service_error
from swiftshot.runtime.aio import post
from swiftshot.runtime.executor import pack_image, unpack_image
from swiftshot.runtime.pipe_reader import frame_header, frame_size, split_frames
from swiftshot.runtime.progress import Partial, Started
from swiftshot.runtime.shm import PREFIX as SHM_PREFIX
from swiftshot.runtime.shm import ResultArea, ResultWriter, ShmRef

if TYPE_CHECKING:
    from swiftshot.runtime.executor import Batch, BatchResult, EventCallback

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
RAW_FROM = 64 * 1024
"""``bytes`` this large (a master, a preview's pixels, a product photo's) leave the pickle and
cross as raw frames of their own: written from the object itself, read straight into their
final buffer (no copy into or out of a pickle stream)."""
READ_BYTES = 256 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
"""SO_SNDBUF/SO_RCVBUF of a channel's sockets: a 1024² raw master (3 MB) fits the kernel's
buffers whole, so the replica's one ``send`` hands all of it to the kernel (nothing is left for
asyncio to copy into its write buffer and send piecewise from later loop turns) and the front
reads it in few ``recv_into`` calls. Linux caps it at ``net.core.[rw]mem_max`` (4 MB on the dev
VM), which is no error."""
SHM_FLAG = 0x8000_0000
"""Set in a message's raw-part count when its raw parts lie in the link's result segment
(:class:`_Segment`) instead of following as frames; the frame then ends with the segment
offset of the first part and each part's length (8 bytes each)."""
_SEGMENTS = itertools.count(1)


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, raw: list[bytes]) -> None:
        super().__init__(file, protocol=5)
        self._raw = raw

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is bytes and len(obj) >= RAW_FROM:
            self._raw.append(obj)
            return len(self._raw) - 1
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, raw: list[bytes]) -> None:
        super().__init__(file)
        self._raw = raw

    def persistent_load(self, pid: Any) -> Any:
        return self._raw[pid]


def _write(transport: asyncio.Transport, msg: Any, segment: _Segment | None = None) -> None:
    """One message: a frame holding the count of raw parts and the pickle, then each raw part
    as a frame of its own (``Connection`` framing, runtime/pipe_reader.py) — or, when the link
    has a result ``segment`` with room, the raw parts copied into it and only their place at
    the end of the first frame (:data:`SHM_FLAG`)."""
    f = io.BytesIO()
    f.write(b"\0\0\0\0")
    raw: list[bytes] = []
    _Pickler(f, raw).dump(msg)
    start = segment.place(raw) if segment is not None and raw else None
    if start is not None:
        f.write(struct.pack(f"!{len(raw) + 1}Q", start, *map(len, raw)))
    meta = f.getbuffer()
    struct.pack_into("!I", meta, 0, len(raw) | (SHM_FLAG if start is not None else 0))
    transport.write(frame_header(len(meta)) + meta)
    del meta
    if start is not None:
        return
    for part in raw:
        transport.write(frame_header(len(part)))
        # a view: what the kernel did not take at once is sliced without a copy of the bytes
        # object (asyncio's ``data[n:]``); only that rest goes into the transport's buffer
        transport.write(memoryview(part))


def _widen(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        except OSError:  # pragma: no cover - a platform that refuses: the defaults stay
            pass


class _Segment:
    """The replica's side of a link's result segment (same machine as the front only; the
    front created it, runtime/shm.py): raw parts of the messages sent are copied into it, each
    message's parts side by side in one region, which stays taken until the front says it has
    copied them out (``release``). A message that does not fit goes over the socket."""

    def __init__(self, writer: ResultWriter) -> None:
        self.writer = writer
        self.held: dict[int, int] = {}
        """Regions the front has not released: start → end."""

    def place(self, parts: list[bytes]) -> int | None:
        """Copy ``parts`` into the first free region that holds them all; its start, or None."""
        n = sum(len(p) for p in parts)
        pos = 0
        for a, b in sorted(self.held.items()):
            if a - pos >= n:
                break
            pos = b
        at = pos
        for p in parts:
            if not self.writer.write_at(at, p):
                return None  # no room (or /dev/shm full): the socket takes this message
            at += len(p)
        self.held[pos] = at
        return pos

    def release(self, start: int) -> None:
        self.held.pop(start, None)

    def close(self) -> None:
        self.held.clear()
        self.writer.close()


class _Framed(asyncio.BufferedProtocol):
    """A connection that exchanges framed messages (after the raw token, see the subclasses).

    Reads go into a scratch buffer, except the body of a large frame, which the kernel writes
    straight into a buffer of its final size."""

    name = "direct"

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._scratch = bytearray(READ_BYTES)
        self._pending = bytearray()
        self._big: bytearray | None = None
        self._big_n = 0
        self._meta: bytes | None = None
        self._raw: list[bytes] = []
        self._raw_left = 0
        self.segment: _Segment | None = None
        """Sending side (a replica): where raw parts go when the front shares its memory."""
        self.area: ResultArea | None = None
        """Receiving side (the front): the segment the replica writes raw parts into."""
        self.via_segment = 0
        """Messages received whose raw parts came through :attr:`area`."""

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _widen(transport)

    def send(self, msg: Any) -> bool:
        if not self.open:
            return False
        _write(self.transport, msg, self.segment)  # type: ignore[arg-type]
        return True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- reading ---------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_n:]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_n += nbytes
            if self._big_n < len(self._big):
                return
            body, self._big, self._big_n = self._big, None, 0
            if not self._frame(bytes(body)):
                return
        else:
            self._pending += memoryview(self._scratch)[:nbytes]
        pending = self._pending
        while self.open:
            framed = frame_size(pending)
            if framed is None:
                return
            size, head = framed
            if not self._allow(size):
                return
            if len(pending) >= head + size:
                chunks = list(split_frames(pending))  # the whole frames at its front
                for payload in chunks:
                    if not self._frame(payload):
                        return
                continue
            if size - (len(pending) - head) >= RAW_FROM:  # the rest straight into place
                self._big = bytearray(size)
                have = len(pending) - head
                self._big[:have] = memoryview(pending)[head:]
                self._big_n = have
                pending.clear()
            return

    def _allow(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes may come now (a replica wants its token first)."""
        if size < 0:
            self._drop(f"a frame of size {size}")
            return False
        return True

    def _drop(self, why: str) -> None:
        log.error("%s: %s; closing the connection", self.name, why)
        self._discard()

    def _discard(self) -> None:
        """Nothing more is read from this connection: what was buffered goes, it closes."""
        self._pending.clear()
        self._big = None
        self.close()

    def _frame(self, payload: bytes) -> bool:
        """One frame: a message's head, or one of its raw parts."""
        if self._meta is None:
            count = int.from_bytes(payload[:4], "big")
            if count & SHM_FLAG:
                return self._from_segment(payload, count & ~SHM_FLAG)
            if count:
                self._meta, self._raw_left, self._raw = payload, count, []
                return True
            meta, raw = payload, []
        else:
            self._raw.append(payload)
            self._raw_left -= 1
            if self._raw_left:
                return True
            meta, raw, self._meta, self._raw = self._meta, self._raw, None, []
        return self._deliver(meta, raw)

    def _from_segment(self, payload: bytes, count: int) -> bool:
        """A message whose raw parts lie in :attr:`area`: copy them out, release their region
        (the replica may reuse it from now on), then read the message."""
        tail = 8 * (count + 1)
        if self.area is None or not count or len(payload) < 4 + tail:
            self._drop("a message in a shared segment this link does not have")
            return False
        start, *lens = struct.unpack_from(f"!{count + 1}Q", payload, len(payload) - tail)
        raw: list[bytes] = []
        pos = start
        try:
            for n in lens:
                raw.append(self.area.read(ShmRef(pos, n)))
                pos += n
        except ValueError as e:
            self._drop(f"a message outside its shared segment ({e})")
            return False
        self.send(("release", start))
        self.via_segment += 1
        return self._deliver(payload[:len(payload) - tail], raw)

    def _deliver(self, meta: bytes, raw: list[bytes]) -> bool:
        try:
            f = io.BytesIO(meta)
            f.seek(4)
            msg = _Unpickler(f, raw).load()
        except Exception as e:  # noqa: BLE001 - a peer that sends garbage is dropped
            self._drop(f"an unreadable message ({type(e).__name__}: {e})")
            return False
        self.on_message(msg)
        return self.open

    def on_message(self, msg: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# -- which replicas exist (told by the front's router) ----------------------------------------------


_WATCHERS: dict[str, list[Callable[[set[str]], None]]] = {}
_LATEST: dict[str, set[str]] = {}
_LOCK = threading.Lock()
"""The router may run on a loop thread of its own (``ray.throughput_optimized`` off)."""


def watch(app: str, fn: Callable[[set[str]], None]) -> Callable[[], None]:
    """Call ``fn(replica ids)`` (``ReplicaID.unique_id``) whenever this process's router of
    application ``app`` learns the running replicas, and once now if it already knows them.
    ``fn`` runs on the router's thread. Returns the function that stops it."""
    with _LOCK:
        _WATCHERS.setdefault(app, []).append(fn)
        known = _LATEST.get(app)
    if known is not None:
        fn(set(known))

    def unwatch() -> None:
        with _LOCK:
            fns = _WATCHERS.get(app, [])
            if fn in fns:
                fns.remove(fn)
            if not fns:
                _WATCHERS.pop(app, None)
                _LATEST.pop(app, None)

    return unwatch


def replicas_listed(app: str, ids: set[str]) -> None:
    """``FrontRouter.update_replicas``: tell the watchers of ``app``."""
    with _LOCK:
        _LATEST[app] = set(ids)
        fns = list(_WATCHERS.get(app, ()))
    for fn in fns:
        try:
            fn(set(ids))
        except Exception:  # noqa: BLE001 - a watcher must not break routing
            log.exception("replica watcher failed")


# -- the replica's side ---------------------------------------------------------------------------


class ReplicaChannel:
    """A replica's listener: authenticated connections from fronts, each running batches on
    the replica's engine threads (``replica.direct_run``)."""

    def __init__(self, replica: Any, host: str) -> None:
        self.replica = replica
        self.host = host
        self.port = 0
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self.draining = False
        """Set when Serve stops the replica: new batches are refused (not started)."""
        self.conns: set[_ReplicaConn] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ReplicaConn(self), self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def running(self) -> int:
        """Batches of this channel not finished (waiting at the gate or on an engine thread)."""
        return sum(len(c.tasks) for c in self.conns)

    def stop_accepting(self) -> None:
        self.draining = True
        if self._server is not None:
            self._server.close()

    def close(self) -> None:
        self.stop_accepting()
        for c in list(self.conns):
            c.close()


class _ReplicaConn(_Framed):
    def __init__(self, channel: ReplicaChannel) -> None:
        super().__init__()
        self.channel = channel
        self.name = f"direct channel of {channel.replica.name}"
        self.authed = False
        self.tasks: dict[int, asyncio.Task[None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.channel.conns.add(self)

    def _allow(self, size: int) -> bool:
        if not self.authed and size != TOKEN_BYTES:  # the token first, or nothing
            self._refuse("a first frame that is not a token")
            return False
        return super()._allow(size)

    def _frame(self, payload: bytes) -> bool:
        if self.authed:
            return super()._frame(payload)
        # The first frame is the token, raw: checked before anything is unpickled.
        if not hmac.compare_digest(payload, self.channel.token):
            self._refuse("a wrong token")
            return False
        self.authed = True
        self.send(("hello", self.channel.replica.name))
        return True

    def _refuse(self, why: str) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.warning("%s: refused %s (%s)", self.name, peer, why)
        self._discard()

    def on_message(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "run":
            _, key, batch, rank = msg
            if self.channel.draining:
                err = WorkerLost(f"{self.channel.replica.name} is stopping", retry_after=1.0)
                err.started = False
                self.send(("error", key, err))
                return
            task = asyncio.get_running_loop().create_task(
                self.channel.replica.direct_run(self, key, batch, rank))
            self.tasks[key] = task
            task.add_done_callback(lambda _t, key=key: self.tasks.pop(key, None))
        elif kind == "cancel":
            task = self.tasks.get(msg[1])
            if task is not None:
                task.cancel()
        elif kind == "release":
            if self.segment is not None:
                self.segment.release(msg[1])
        elif kind == "attach":
            self.send(("attached", self._attach(msg[1], msg[2] if len(msg) > 2 else 0)))

    def _attach(self, name: Any, warm: Any = 0) -> bool:
        """Map the front's result segment ``name``: possible only on the front's machine (the
        name is random; elsewhere it does not exist), and only once. Its first ``warm`` bytes
        (the largest result the server warms up for) are committed and mapped now, not page
        by page while the first such result is copied in."""
        if self.segment is not None or not isinstance(name, str) or "/" in name or \
                not name.startswith(SHM_PREFIX):
            return False
        try:
            self.segment = _Segment(ResultWriter(name))
        except (OSError, ValueError, ImportError) as e:
            log.debug("%s: no shared result segment (%s: %s); results go over the socket",
                      self.name, type(e).__name__, e)
            return False
        if isinstance(warm, int) and warm > 0:
            self.segment.writer.prefault(warm)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.conns.discard(self)
        for task in list(self.tasks.values()):  # the front is gone: nobody waits for these
            task.cancel()
        if self.segment is not None:  # its name is gone already: unmapped, the memory is freed
            segment, self.segment = self.segment, None
            segment.close()


async def run_batch(replica: Any, conn: _ReplicaConn, key: int, batch: Batch, rank: int) -> None:
    """One batch from a front (``EngineReplica.direct_run``): :meth:`EngineReplica.run`
    (the priority gate, an engine thread) saying ``started`` when it begins and sending
    previews as they come, then the answer."""
    loop = asyncio.get_running_loop()
    on_partial: Callable[[int, Any], None] | None = None
    if any(it.partials for it in batch.items):
        def on_partial(item_id: int, image: Any) -> None:
            post(loop, conn.send, ("partial", key, item_id, pack_image(image)))
    try:
        result = await replica.run(batch, rank, on_started=lambda: conn.send(("started", key)),
                                   on_partial=on_partial)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - the batch failed as a whole: say why
        conn.send(("error", key, as_service_error(e)))
        return
    conn.send(("result", key, result))


# -- the front's side -------------------------------------------------------------------------------


class DirectCall:
    """One batch sent over a :class:`FrontLink`, until its result, error or loss."""

    def __init__(self, link: FrontLink, key: int, batch: Batch, run: Any,
                 on_event: EventCallback | None,
                 cancelled: Callable[[], BaseException]) -> None:
        self.link = link
        self.key = key
        self.batch = batch
        self.run = run
        self.on_event = on_event
        self._cancelled = cancelled
        self.settled = False
        """Answered, failed or cancelled: nothing more goes to or comes from the replica."""
        self.future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()

    def cancel(self) -> None:
        """Every request of the batch went away (or the front stops, or the batch ran past
        its time, which cancelled the task awaiting :attr:`future`): tell the replica to stop
        it, and answer now."""
        if self.settled:
            return
        self.settled = True
        self.link.send(("cancel", self.key))
        self.link.finish(self.key)
        self.fail(self._cancelled())

    def done(self, result: BatchResult) -> None:
        self.settled = True
        if not self.future.done():
            self.future.set_result(result)

    def fail(self, exc: BaseException) -> None:
        self.settled = True
        if not self.future.done():
            self.future.set_exception(exc)
            self.future.exception()  # retrieved: its awaiter may have gone (a timeout)


class FrontLink(_Framed):
    """The front's connection to one replica (see the module doc)."""

    def __init__(self, replica_id: str, token: bytes, on_lost: Callable[[FrontLink], None],
                 shm_bytes: int = 0, warm_bytes: int = 0) -> None:
        super().__init__()
        self._shm_bytes = shm_bytes
        self._warm_bytes = warm_bytes
        """How much of the segment both ends map at link time (``shm.warm_bytes``)."""
        self._hello: str | None = None
        self.replica_id = replica_id
        self.name = f"direct link to replica {replica_id}"
        self._token = token
        self._on_lost = on_lost
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.calls: dict[int, DirectCall] = {}
        self.busy_since = 0.0
        self.draining = False
        """Serve no longer lists the replica (stopping): no new batches go to it."""
        self.lost = False
        self.on_free: Callable[[FrontLink], None] | None = None
        """Called when a batch of this link finished (room for another)."""

    @property
    def inflight(self) -> int:
        return len(self.calls)

    @property
    def usable(self) -> bool:
        return not self.draining and not self.lost and self.ready.done() and \
            not self.ready.cancelled() and self.ready.exception() is None and self.open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(frame_header(len(self._token)) + self._token)  # type: ignore[union-attr]
        if self._shm_bytes > 0:  # offer a result segment: a replica on this machine maps it
            self.area = ResultArea.create(self._shm_bytes, f"ray{next(_SEGMENTS)}")
            if self.area is not None:
                self.send(("attach", self.area.name, self._warm_bytes))

    def close(self) -> None:
        super().close()
        if self.area is not None:
            self.area.unlink()  # the mapping goes in connection_lost

    @property
    def shared(self) -> bool:
        """Results come through a shared-memory segment (the replica is on this machine)."""
        return self.area is not None and self.ready.done() and not self.lost

    def submit(self, call: DirectCall) -> None:
        if not self.calls:
            self.busy_since = time.monotonic()
        self.calls[call.key] = call
        call.run.started = False
        self.send(("run", call.key, call.batch, call.batch.rank))

    def finish(self, key: int) -> None:
        if self.calls.pop(key, None) is None:
            return
        if self.calls:
            self.busy_since = time.monotonic()  # the next one starts now
        if self.on_free is not None:
            self.on_free(self)

    def on_message(self, msg: Any) -> None:
        kind = msg[0]
        if kind == "hello":
            if self.area is not None:  # ready once the replica answered the segment offer
                self._hello = msg[1]
            elif not self.ready.done():
                self.ready.set_result(msg[1])
            return
        if kind == "attached":
            if self.area is not None:
                if msg[1]:
                    self.area.unlink()  # both mapped: from now on nothing of it has a name
                    self.area.prefault(self._warm_bytes)  # the replica committed them
                else:  # another machine: results come over the socket
                    self.area.close()
                    self.area = None
            if not self.ready.done():
                self.ready.set_result(self._hello or "")
            return
        call = self.calls.get(msg[1])
        if call is None:
            return  # a batch cancelled here meanwhile: its late events have nobody to go to
        if kind == "started":
            call.run.started = True
            if call.on_event is not None:
                for it in call.batch.items:
                    call.on_event(it.id, Started())
        elif kind == "partial":
            if call.on_event is not None:
                call.on_event(msg[2], Partial(0, unpack_image(msg[3])))
        elif kind == "result":
            self.finish(call.key)
            call.done(msg[2])
        elif kind == "error":
            self.finish(call.key)
            call.fail(msg[2])

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        why = f"{type(exc).__name__}: {exc}" if exc else "the connection closed"
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.name} closed before its hello "
                                                     f"({why})"))
            self.ready.exception()  # retrieved: nobody may be waiting any more
        calls, self.calls = self.calls, {}
        for call in calls.values():
            err = WorkerLost(f"the replica {self.replica_id} was lost mid-batch ({why})",
                             retry_after=1.0)
            if not call.run.started:
                err.started = False
            call.fail(err)
        if self.area is not None:
            area, self.area = self.area, None
            area.close()
        self._on_lost(self)


__all__ = ["DirectCall", "FrontLink", "ReplicaChannel", "replicas_listed", "run_batch", "watch"]
