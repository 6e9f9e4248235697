"""The loop's reader of a worker pipe (runtime/pipe_reader.py): messages in pieces or in bulk,
end of file mid-message, a closed loop — and never a thread or a descriptor left behind."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import struct
import threading
from multiprocessing.reduction import ForkingPickler

import pytest

from swiftshot.runtime.pipe_reader import READ_BYTES, PipeReader


def _frame(obj: object, *, extended: bool = False) -> bytes:
    payload = bytes(ForkingPickler.dumps(obj))
    if extended:  # the >2 GiB form of multiprocessing's header, on a small payload
        return struct.pack("!i", -1) + struct.pack("!Q", len(payload)) + payload
    return struct.pack("!i", len(payload)) + payload


async def _until(cond, timeout: float = 30.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.005)


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def test_a_message_arriving_byte_by_byte_is_delivered_once_whole():
    ours, theirs = mp.Pipe(duplex=True)
    got: list = []
    eofs: list = []
    reader = PipeReader(asyncio.get_running_loop(), ours, got.append, lambda: eofs.append(1))
    try:
        msg = ("done", 7, {"master": b"\x00\n" * 5000, "note": "x"})
        data = _frame(msg)
        for i in range(0, len(data), 997):  # pieces that split the header and the payload
            theirs._send(data[i:i + 997])  # noqa: SLF001 - raw bytes, as a slow writer
            await asyncio.sleep(0)
        await _until(lambda: got)
        await asyncio.sleep(0.05)
        assert got == [msg] and eofs == []
        for b in data[:7]:  # the header itself split byte by byte
            theirs._send(bytes([b]))
            await asyncio.sleep(0.01)
        assert len(got) == 1  # nothing delivered from a partial message
        theirs._send(data[7:])
        await _until(lambda: len(got) == 2)
        assert got[1] == msg
    finally:
        reader.close()
        theirs.close()
        ours.close()


async def test_many_messages_in_one_read_and_one_larger_than_a_read_all_arrive_in_order():
    ours, theirs = mp.Pipe(duplex=True)
    got: list = []
    reader = PipeReader(asyncio.get_running_loop(), ours, got.append, lambda: None)
    try:
        small = [("partial", i, b"p" * i) for i in range(50)]
        theirs._send(b"".join(_frame(m) for m in small))
        theirs._send(_frame(("ext", 1), extended=True))
        big = ("done", 1, os.urandom(3 * READ_BYTES + 17))
        writer = threading.Thread(target=theirs.send, args=(big,))  # blocks until read
        writer.start()
        await _until(lambda: len(got) == 52)
        writer.join(30)
        assert got == [*small, ("ext", 1), big]
    finally:
        reader.close()
        theirs.close()
        ours.close()


async def test_an_unreadable_message_is_skipped_and_the_next_one_delivered(caplog):
    ours, theirs = mp.Pipe(duplex=True)
    got: list = []
    reader = PipeReader(asyncio.get_running_loop(), ours, got.append, lambda: None, name="w9")
    try:
        garbage = b"not a pickle"
        theirs._send(struct.pack("!i", len(garbage)) + garbage + _frame(("ready", "{}")))
        await _until(lambda: got)
        assert got == [("ready", "{}")]
        assert "w9 sent an unreadable message" in caplog.text
    finally:
        reader.close()
        theirs.close()
        ours.close()


def _die_mid_message(conn) -> None:  # the child: half a frame, then gone
    data = _frame(("done", 1, b"x" * 100_000))
    conn._send(data[: len(data) // 2])
    os._exit(9)


async def test_a_worker_dying_mid_message_is_one_end_of_file_and_nothing_is_left():
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_die_mid_message, args=(theirs,), daemon=True)
    await asyncio.get_running_loop().run_in_executor(None, proc.start)
    theirs.close()
    got: list = []
    eofs: list = []
    reader = PipeReader(asyncio.get_running_loop(), ours, got.append, lambda: eofs.append(1))
    fd = reader._fd
    try:
        await _until(lambda: eofs, timeout=60)
        await asyncio.sleep(0.05)
        assert got == [] and eofs == [1]  # the half message is dropped, EOF said once
        assert reader.closed and not _fd_open(fd)  # it unregistered and closed its copy
        reader.close()  # idempotent
    finally:
        reader.close()
        await asyncio.get_running_loop().run_in_executor(None, proc.join, 30)
        ours.close()
    assert proc.exitcode == 9


def test_the_loop_closing_while_a_reader_is_registered_leaves_no_thread_or_descriptor():
    threads = set(threading.enumerate())
    loop = asyncio.new_event_loop()
    ours, theirs = mp.Pipe(duplex=True)
    got: list = []
    reader = PipeReader(loop, ours, got.append, lambda: got.append("eof"))
    fd = reader._fd
    theirs.send(("ready", "{}"))
    loop.run_until_complete(asyncio.sleep(0.05))
    assert got == [("ready", "{}")]
    loop.close()  # the owner went away without closing the reader
    theirs.send(("done", 1, None))  # nobody is called: no thread exists to call anyone
    theirs.close()
    assert got == [("ready", "{}")]
    reader.close()  # no loop to unregister from: only the descriptor goes
    assert reader.closed and not _fd_open(fd)
    ours.close()
    assert set(threading.enumerate()) <= threads


async def test_a_handler_that_closes_the_reader_stops_delivery():
    ours, theirs = mp.Pipe(duplex=True)
    got: list = []
    reader: PipeReader

    def once(msg) -> None:
        got.append(msg)
        reader.close()

    reader = PipeReader(asyncio.get_running_loop(), ours, once, lambda: got.append("eof"))
    try:
        theirs._send(_frame(1) + _frame(2))
        await _until(lambda: got)
        await asyncio.sleep(0.05)
        assert got == [1]
    finally:
        reader.close()
        theirs.close()
        ours.close()


@pytest.mark.parametrize("bad", [b"", b"\x00\x00"])
async def test_end_of_file_with_nothing_or_a_partial_header_is_end_of_file(bad):
    ours, theirs = mp.Pipe(duplex=True)
    eofs: list = []
    reader = PipeReader(asyncio.get_running_loop(), ours, lambda m: None, lambda: eofs.append(1))
    try:
        if bad:
            theirs._send(bad)
        theirs.close()
        await _until(lambda: eofs)
        assert eofs == [1] and reader.closed
    finally:
        reader.close()
        ours.close()


def _front_sends_a_batch_larger_than_the_socket_buffer(loop: asyncio.AbstractEventLoop) -> None:
    ours, theirs = mp.Pipe(duplex=True)
    reader = PipeReader(loop, ours, lambda m: None, lambda: None)
    got: list = []
    slow = threading.Thread(target=lambda: got.append(theirs.recv()))  # the worker, reading
    try:
        assert os.get_blocking(ours.fileno())
        big = ("batch", 1, os.urandom(4 << 20))  # ~20x a Unix socket's buffer
        slow.start()
        ours.send(big)  # the front's send: blocking, it must not fail with EAGAIN half-sent
        slow.join(30)
        assert got == [big]
    finally:
        reader.close()
        slow.join(30)
        theirs.close()
        ours.close()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_registering_the_reader_leaves_the_front_s_sends_blocking(kind):
    # uvloop's add_reader made the socket non-blocking: an on-model upload's batch failed with
    # "[Errno 11] Resource temporarily unavailable" in the full suite
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        _front_sends_a_batch_larger_than_the_socket_buffer(loop)
    finally:
        loop.close()
