"""A worker's pipe read by the front's event loop itself (``loop.add_reader``), no thread.

The process executor used one reader thread per worker: ``Connection.recv`` blocked there, and
every message crossed to the loop with ``call_soon_threadsafe`` — a thread wake-up, a GIL
hand-off and a self-pipe write per message, on a box where the loop, the reader and the cache's
write-behind thread share two cores (docs/PERFORMANCE.md, 2026-12-04). Since result bytes cross
by shared memory (runtime/shm.py) the messages are small, so the loop can read them itself when
epoll says the socket is readable, without ever blocking:

* bytes are taken with ``recv(MSG_DONTWAIT)`` on a duplicate of the connection's socket, so a
  spurious wake-up costs a ``BlockingIOError``, never a stall; the socket itself stays in
  blocking mode (uvloop's ``add_reader`` turns it non-blocking; it is turned back), because the
  front still *sends* batches on it with ``Connection.send``, which must not fail half-sent;
* ``multiprocessing.Connection``'s framing is parsed here (a 4-byte big-endian signed length,
  or ``-1`` and an 8-byte length for >2 GiB), so a message arriving in pieces waits in a buffer
  until it is whole, and several arriving together are all delivered;
* end of file (the worker died, even in the middle of a message) or a read error unregisters
  the reader, closes the duplicate and calls ``on_eof`` once; a partial message is dropped.

Nothing is left behind: :meth:`close` (idempotent) unregisters and closes the duplicate; once
the loop is closed there is nothing to unregister and only the descriptor is closed. No thread
exists, so nothing can post to a closed loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from multiprocessing.reduction import ForkingPickler
from typing import Any

log = logging.getLogger(__name__)

READ_BYTES = 1 << 18
"""Bytes asked for per ``recv`` (a Unix socket's buffer is ~200 KB)."""


class PipeReader:
    """Reads pickled ``multiprocessing.Connection`` messages from ``conn`` on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: Any,
                 on_message: Callable[[Any], None], on_eof: Callable[[], None],
                 name: str = "pipe") -> None:
        self._loop = loop
        self._on_message = on_message
        self._on_eof = on_eof
        self.name = name
        self._buf = bytearray()
        # a duplicate: its own descriptor to register and close, the same socket underneath
        self._sock: socket.socket | None = socket.socket(fileno=os.dup(conn.fileno()))
        self._fd = self._sock.fileno()
        loop.add_reader(self._fd, self._readable)
        # uvloop (libuv's uv_poll_init) switches the descriptor to non-blocking, and that flag
        # belongs to the socket, shared with the connection the front sends on: a batch larger
        # than the socket's buffer then failed half-sent with EAGAIN (an on-model upload in
        # the full suite). Reads here never block anyway (MSG_DONTWAIT), so put it back.
        os.set_blocking(self._fd, True)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Stop reading: unregister (if the loop is still open) and close the duplicate."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        sock.close()

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_BYTES, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return  # woken for nothing: try again when epoll says so
        except OSError as e:
            log.warning("%s: read failed (%s); treating it as end of file", self.name, e)
            data = b""
        if not data:
            if self._buf:
                log.error("%s: end of file %d bytes into a message; dropped", self.name,
                          len(self._buf))
            self._buf.clear()
            self.close()
            self._on_eof()
            return
        self._buf += data
        for payload in split_frames(self._buf):
            try:
                msg = ForkingPickler.loads(payload)
            except Exception as e:  # noqa: BLE001 - an unpicklable message: skip it
                log.error("%s sent an unreadable message: %s", self.name, e)
                continue
            self._on_message(msg)
            if self._sock is None:
                return  # the handler closed us


def frame_header(size: int) -> bytes:
    """``multiprocessing.Connection``'s length prefix for a ``size``-byte message: 4 bytes
    big-endian signed, or ``-1`` and 8 bytes for a message of 2 GiB or more."""
    if size > 0x7FFFFFFF:
        return struct.pack("!iQ", -1, size)
    return struct.pack("!i", size)


def frame_size(buf: bytearray) -> tuple[int, int] | None:
    """The size of the message whose :func:`frame_header` starts ``buf`` and the header's own
    length, or None while the header is not whole (the size is negative for a corrupt one)."""
    if len(buf) < 4:
        return None
    size = int.from_bytes(buf[:4], "big", signed=True)
    if size != -1:
        return size, 4
    if len(buf) < 12:
        return None
    return struct.unpack("!Q", buf[4:12])[0], 12


def split_frames(buf: bytearray) -> Iterator[bytes]:
    """The whole messages at the front of ``buf`` (``Connection`` framing, see
    :func:`frame_header`), each removed from it as it is yielded; a partial one stays for the
    next read."""
    while True:
        framed = frame_size(buf)
        if framed is None:
            return
        size, head = framed
        if size < 0 or len(buf) < head + size:
            return
        with memoryview(buf) as whole:  # one copy out (a bytearray slice would be two)
            part = whole[head:head + size]
            payload = bytes(part)
            part.release()
        del buf[:head + size]
        yield payload


__all__ = ["PipeReader", "READ_BYTES", "frame_header", "frame_size", "split_frames"]
