"""The process executor's pipe helpers: ``Waiting`` (a message waits, asked with one poll(2)
on a poller made once) and ``send_message`` (the plain pickler, read by ``Connection.recv``
and the front's ``PipeReader`` alike)."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing import connection

from swiftshot.errors import WorkerLost
from swiftshot.runtime.process import Waiting, send_message


def test_waiting_says_when_a_message_or_the_end_waits_without_connection_poll(monkeypatch):
    a, b = mp.Pipe(duplex=True)

    def no_poll(*_a, **_kw):
        raise AssertionError("Connection.poll builds a selector per call")

    monkeypatch.setattr(connection.Connection, "poll", no_poll)
    waiting = Waiting(b)
    assert not waiting()
    a.send(("abort", [1, 2]))
    assert waiting()
    assert waiting()  # asking takes nothing
    assert b.recv() == ("abort", [1, 2])
    assert not waiting()
    a.close()
    assert waiting()  # end of file: the read that follows finds it


def test_send_message_is_read_as_a_connection_message_without_the_forking_pickler(monkeypatch):
    from multiprocessing.reduction import ForkingPickler

    a, b = mp.Pipe(duplex=True)

    def no_forking(*_a, **_kw):
        raise AssertionError("ForkingPickler copies copyreg's table per message")

    monkeypatch.setattr(ForkingPickler, "dumps", no_forking)
    msg = ("batch", 7, [(1, '{"prompt":"x"}', 0, ("k" * 64, None, ("t",)))], {}, {}, 2)
    send_message(a, msg)
    assert b.recv() == msg
    big = ("partial", 3, ("RGB", (128, 128), b"\x01" * (128 * 128 * 3)))  # header sent apart
    send_message(a, big)
    assert b.recv() == big
    err = WorkerLost("lost", retry_after=1.0)
    send_message(a, ("error", 8, err))
    kind, batch_id, got = b.recv()
    assert (kind, batch_id, type(got), got.message, got.status) == \
        ("error", 8, WorkerLost, "lost", err.status)
