"""The direct channel's framing (runtime/ray_direct.py) without Ray: messages whose large
``bytes`` cross as raw frames, delivered whole and equal however the stream is cut; a replica
connection that gets anything but its token first unpickles nothing and closes."""

from __future__ import annotations

import os
import pickle
import random
import struct

import pytest

from swiftshot.errors import WorkerLost
from swiftshot.runtime import ray_direct
from swiftshot.runtime.executor import BatchResult, ItemResult


class Wire:
    """A transport that keeps what is written (and can be closed)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, b) -> None:
        self.data += b

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default


class Sink(ray_direct._Framed):
    def __init__(self) -> None:
        super().__init__()
        self.got: list[object] = []
        self.connection_made(Wire())

    def on_message(self, msg) -> None:
        self.got.append(msg)


def feed(proto: ray_direct._Framed, data: bytes, rng: random.Random) -> None:
    """Deliver ``data`` the way asyncio does: into get_buffer(), in pieces of random size."""
    pos = 0
    while pos < len(data) and not proto.transport.is_closing():
        buf = proto.get_buffer(-1)
        n = min(len(buf), len(data) - pos, rng.choice((1, 7, 4096, 70_000, 1 << 20)))
        buf[:n] = data[pos:pos + n]
        proto.buffer_updated(n)
        pos += n


def result(master: bytes) -> BatchResult:
    return BatchResult([ItemResult(7, master=master, width=8, height=8),
                        ItemResult(8, error=WorkerLost("gone", retry_after=1.0))], 0.01,
                       0.002, "replica-x", spans=[("engine", 1, 2, None)])


@pytest.mark.parametrize("seed", range(4))
def test_messages_with_raw_parts_arrive_whole_however_the_stream_is_cut(seed):
    rng = random.Random(seed)
    big = rng.randbytes(3 * 1024 * 1024 + 13)  # a 1024² raw master
    small = rng.randbytes(500)
    msgs = [("result", 1, result(big)), ("started", 2), ("result", 3, result(small)),
            ("partial", 4, 7, ("RGB", (512, 512), rng.randbytes(512 * 512 * 3))),
            ("result", 5, result(big))]
    wire = Wire()
    for m in msgs:
        ray_direct._write(wire, m)
    # the big bytes did not go through the pickle: the stream is barely larger than them
    assert len(wire.data) < 2 * len(big) + 512 * 512 * 3 + 10_000
    sink = Sink()
    feed(sink, bytes(wire.data), rng)
    assert len(sink.got) == len(msgs)
    for want, got in zip(msgs, sink.got, strict=True):
        assert got[:2] == want[:2]
        if want[0] == "result":
            assert got[2].results[0].master == want[2].results[0].master
            assert type(got[2].results[0].master) is bytes
            assert got[2].results[1].error == want[2].results[1].error
            assert got[2].spans == want[2].spans
        elif want[0] == "partial":
            assert got[3] == want[3]


class Replica:
    name = "replica-test"


def replica_conn() -> ray_direct._ReplicaConn:
    channel = ray_direct.ReplicaChannel(Replica(), "127.0.0.1")
    conn = ray_direct._ReplicaConn(channel)
    conn.connection_made(Wire())
    return conn


class Boom:
    def __reduce__(self):  # unpickling this would run code: it must never be unpickled
        return (pytest.fail, ("the replica unpickled a frame before the token",))


@pytest.mark.parametrize("first", ["pickle", "wrong token", "huge"])
def test_a_replica_connection_unpickles_nothing_before_its_token(first):
    conn = replica_conn()
    if first == "pickle":
        payload = pickle.dumps(Boom())
        data = struct.pack("!i", len(payload)) + payload
    elif first == "wrong token":
        data = struct.pack("!i", ray_direct.TOKEN_BYTES) + bytes(ray_direct.TOKEN_BYTES)
        payload = b"\0\0\0\0" + pickle.dumps(Boom())
        data += struct.pack("!i", len(payload)) + payload
    else:
        data = struct.pack("!i", 1 << 30)
    feed(conn, data, random.Random(0))
    assert conn.transport.closed and not conn.authed
    assert conn.transport.data == b""  # no hello


def test_the_right_token_gets_a_hello():
    conn = replica_conn()
    token = conn.channel.token
    feed(conn, struct.pack("!i", len(token)) + token, random.Random(0))
    assert conn.authed and not conn.transport.closed
    sink = Sink()
    feed(sink, bytes(conn.transport.data), random.Random(0))
    assert sink.got == [("hello", "replica-test")]


# -- results through the link's shared segment (a replica on the front's machine) ----------------


@pytest.fixture
def segment():
    """The front's area and the replica's writer of one link, as the handshake leaves them
    (attached, the name removed)."""
    from swiftshot.runtime.shm import ResultArea, ResultWriter, leftover

    area = ResultArea.create(8 * 1024 * 1024, "raytest")
    writer = ResultWriter(area.name)
    area.unlink()
    try:
        yield area, ray_direct._Segment(writer)
    finally:
        writer.close()
        area.close()
        assert not [n for n in leftover(os.getpid()) if "-raytest-" in n]


@pytest.mark.parametrize("seed", range(2))
def test_raw_parts_cross_through_the_segment_and_are_released(segment, seed):
    area, seg = segment
    rng = random.Random(seed)
    big = rng.randbytes(3 * 1024 * 1024 + 13)
    preview = ("RGB", (256, 256), rng.randbytes(256 * 256 * 3))
    msgs = [("result", 1, result(big)), ("partial", 2, 7, preview), ("started", 3),
            ("result", 4, result(big[::-1]))]
    wire = Wire()
    for m in msgs:
        ray_direct._write(wire, m, seg)
    assert len(wire.data) < 10_000  # only the messages' heads crossed the socket
    assert len(seg.held) == 3  # three messages with raw parts, each its own region
    sink = Sink()
    sink.area = area
    feed(sink, bytes(wire.data), rng)
    assert [m[:2] for m in sink.got] == [m[:2] for m in msgs]
    assert sink.got[0][2].results[0].master == big
    assert sink.got[3][2].results[0].master == big[::-1]
    assert type(sink.got[0][2].results[0].master) is bytes
    assert sink.got[1][3] == preview and sink.via_segment == 3
    # the front released each region as it copied it out; the replica frees them
    back = Sink()
    feed(back, bytes(sink.transport.data), rng)
    assert sorted(m[0] for m in back.got) == ["release"] * 3
    for _, start in back.got:
        seg.release(start)
    assert seg.held == {}


def test_a_full_segment_sends_over_the_socket(segment):
    area, seg = segment
    big = random.Random(1).randbytes(5 * 1024 * 1024)
    wire = Wire()
    ray_direct._write(wire, ("result", 1, result(big)), seg)  # 5 of 8 MB: in the segment
    ray_direct._write(wire, ("result", 2, result(big)), seg)  # not released yet: no room
    assert len(seg.held) == 1 and len(wire.data) > len(big)
    sink = Sink()
    sink.area = area
    feed(sink, bytes(wire.data), random.Random(2))
    assert [m[2].results[0].master == big for m in sink.got] == [True, True]
    assert sink.via_segment == 1


def test_a_reference_outside_the_segment_closes_the_link(segment):
    area, seg = segment
    wire = Wire()
    ray_direct._write(wire, ("result", 1, result(bytes(100_000))), seg)
    data = bytearray(wire.data)
    struct.pack_into("!Q", data, len(data) - 16, area.size)  # the region's start, moved out
    sink = Sink()
    sink.area = area
    feed(sink, bytes(data), random.Random(3))
    assert sink.got == [] and sink.transport.closed
    no_area = Sink()  # a link that offered no segment gets no segment message either
    feed(no_area, bytes(wire.data), random.Random(3))
    assert no_area.got == [] and no_area.transport.closed


def test_a_replica_maps_only_a_segment_of_ours():
    conn = replica_conn()
    assert not conn._attach("/etc/passwd") and not conn._attach("swiftshot-r-0-missing")
    assert conn.segment is None
