"""The direct data channel (``ray.transport = direct``, runtime/ray_direct.py) on the real
two-node loopback cluster: batches go over the front's own links, not the Serve handle, their
results through each link's shared segment (every node of the loopback cluster is on this
machine) or, with it off, over the socket; a stray client on a replica's port is refused; a
replica Serve replaces is linked again, and a replica killed mid-transfer leaves nothing of
ours in /dev/shm."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import struct
import time

import pytest

from swiftshot.delivery import codecs
from swiftshot.engines.base import FakeEngine
from swiftshot.errors import WorkerLost
from swiftshot.runtime import shm
from swiftshot.runtime.progress import Partial, Started
from tests.ray.test_ray_executor import batch, delete_app, node_of, ray_settings

pytestmark = pytest.mark.ray


def named_segments() -> list[str]:
    """This process's direct-link segments that still have a name in /dev/shm."""
    return [n for n in shm.leftover(os.getpid()) if n.startswith(f"{shm.PREFIX}-{os.getpid()}-ray")]


def big_batch(prompt: str):
    b = batch(prompt)
    b.items[0].spec = b.items[0].spec.model_copy(update={"width": 1024, "height": 1024})
    return b


@pytest.fixture
async def direct(ray_cluster, tmp_path):
    from swiftshot.runtime.ray_executor import RayExecutor

    ex = RayExecutor(ray_settings(tmp_path, replicas=2, delay_s=0.05, steps=4,
                                  transport="direct"))
    await ex.start()
    through_serve: list[str] = []

    async def refused(*args, **kwargs):  # the Serve data path must not be taken
        through_serve.append("serve")
        raise AssertionError("a batch went through the Serve handle")

    ex._call = refused
    ex._call_stream = refused
    try:
        yield ex
    finally:
        assert through_serve == []
        await ex.stop()
        await delete_app(ex.app_name)
        assert named_segments() == []


async def test_batches_and_previews_cross_the_direct_links(direct, ray_cluster):
    assert direct.direct and len(direct._links) == 2, direct._links
    batches = [batch(f"bag {i}", partials=1 if i % 2 else 0) for i in range(8)]
    events: list[tuple[int, object]] = []
    results = await asyncio.gather(*(direct.submit(b, lambda i, e: events.append((i, e)))
                                     for b in batches))
    assert {node_of(r.worker) for r in results} == {n[:8] for n in ray_cluster.node_ids}
    for b, r in zip(batches, results, strict=True):
        (it,) = b.items
        assert codecs.decode_master(r.results[0].master).tobytes() == \
            FakeEngine._image(it.spec).tobytes()
        mine = [e for i, e in events if i == it.id]
        assert isinstance(mine[0], Started)  # said by the replica when an engine thread took it
        assert sum(isinstance(e, Partial) for e in mine) == it.partials
    # a 1024² master (3 MB of raw pixels) crosses as raw bytes, intact
    big = big_batch("large")
    r = await direct.submit(big)
    assert codecs.decode_master(r.results[0].master).tobytes() == \
        FakeEngine._image(big.items[0].spec).tobytes()
    # both replicas (one per node, both on this machine) mapped their link's segment, and it
    # carried the results; its name was removed as soon as the replica mapped it
    assert all(ln.shared for ln in direct._links.values())
    assert sum(ln.via_segment for ln in direct._links.values()) >= 1
    assert named_segments() == []


async def test_a_result_is_freed_as_soon_as_it_is_dropped(direct):
    """No reference cycle keeps a direct call's result (and its few-MB master) alive until the
    cyclic GC runs: the front's run and its DirectCall pointed at each other, so ~25-30
    results stayed alive at once and every new 1024² master was copied into fresh heap pages
    (768 page faults): whole rounds of the hop 3-6x slower (docs/PERFORMANCE.md, Ray hop)."""
    import gc
    import weakref

    await direct.submit(batch("warm"))
    gc.collect()
    gc.disable()
    try:
        for partials in (0, 1):  # unary, and streamed with a preview
            b = big_batch(f"freed {partials}")
            b.items[0].partials = partials
            r = await direct.submit(b, (lambda i, e: None) if partials else None)
            assert len(r.results[0].master) > 3_000_000
            result, master_holder = weakref.ref(r), weakref.ref(r.results[0])
            del r
            assert result() is None and master_holder() is None, gc.get_referrers(result())
    finally:
        gc.enable()


def _resident_bytes(name: str) -> int:
    """Bytes of the mapping of segment ``name`` resident in this process (/proc/self/smaps)."""
    with open("/proc/self/smaps") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if name in line:
            for detail in lines[i + 1:]:
                if detail.startswith("Rss:"):
                    return int(detail.split()[1]) * 1024
    raise AssertionError(f"segment {name} is not mapped here")


async def test_a_link_segment_is_warm_for_the_warm_up_size_before_the_first_result(
        ray_cluster, tmp_path):
    """A server warming up for 1024² (the default) has its links' segments committed by the
    replica and mapped by the front when the link is made, not page by page (~770 faults a
    side) while the first 1024² result crosses."""
    from swiftshot.runtime.ray_executor import RayExecutor

    s = ray_settings(tmp_path, replicas=1, transport="direct")
    s.server.warmup_shapes = [(64, 64), (1024, 1024)]
    warm = shm.warm_bytes(s.server.warmup_shapes)
    ex = RayExecutor(s)
    await ex.start()
    try:
        (link,) = ex._links.values()
        assert link.shared and link.via_segment == 0  # no result has crossed yet
        fd = link.area._shm._fd
        assert os.fstat(fd).st_blocks * 512 >= warm  # the replica committed them
        assert _resident_bytes(link.area.name) >= warm  # and the front mapped them
        r = await ex.submit(big_batch("first large"))
        assert link.via_segment == 1 and len(r.results[0].master) > 3_000_000
    finally:
        await ex.stop()
        await delete_app(ex.app_name)


async def test_with_the_segment_off_results_cross_the_socket(ray_cluster, tmp_path):
    from swiftshot.runtime.ray_executor import RayExecutor

    ex = RayExecutor(ray_settings(tmp_path, replicas=1, transport="direct", result_shm_bytes=0))
    await ex.start()
    try:
        assert len(ex._links) == 1
        for b in (big_batch("socket large"), batch("socket small")):
            r = await ex.submit(b)
            assert codecs.decode_master(r.results[0].master).tobytes() == \
                FakeEngine._image(b.items[0].spec).tobytes()
        (link,) = ex._links.values()
        assert not link.shared and link.via_segment == 0 and link.area is None
    finally:
        await ex.stop()
        await delete_app(ex.app_name)


def _read_frame(sock: socket.socket) -> bytes | None:
    head = sock.recv(4, socket.MSG_WAITALL)
    if len(head) < 4:
        return None
    return sock.recv(struct.unpack("!i", head)[0], socket.MSG_WAITALL)


async def test_a_stray_client_cannot_submit(direct):
    rid = next(iter(direct._links))
    addr = (await asyncio.wait_for(direct._stats.channels.remote(direct.app_name, [rid]),
                                   30))[rid]
    assert addr["id"] == rid and len(addr["token"]) == 32
    # the replica hands out the same through its handle
    assert await asyncio.wait_for(
        direct._base_handle.options(method_name="direct_address").remote(_to=rid), 30) == addr

    def attempt(first: bytes) -> bytes:
        with socket.create_connection((addr["host"], addr["port"]), timeout=10) as s:
            s.sendall(first)
            try:
                return s.recv(4096)
            except ConnectionResetError:
                return b""

    loop = asyncio.get_running_loop()
    run = pickle.dumps(("run", 1, batch("stray"), 1))
    for first in (struct.pack("!i", len(run)) + run,  # a request with no token
                  struct.pack("!i", 32) + os.urandom(32)):  # a guessed token
        assert await loop.run_in_executor(None, attempt, first) == b""  # closed, no hello

    def with_token() -> bytes | None:
        with socket.create_connection((addr["host"], addr["port"]), timeout=10) as s:
            s.sendall(struct.pack("!i", 32) + addr["token"])
            return _read_frame(s)

    hello = await loop.run_in_executor(None, with_token)
    assert hello is not None and b"hello" in hello
    r = await direct.submit(batch("after the strays"))  # the replica serves on
    assert r.results[0].master


async def test_a_replica_serve_replaces_is_linked_again(direct):
    first = await direct.submit(batch("warm"))
    pid = int(first.worker.rsplit(":", 1)[1])
    old = {rid for rid, link in direct._links.items()}
    # killed while 1024² results are on their way (one batch per replica, 4 steps of 50 ms):
    # the killed one's batch is lost (WorkerLost, retried by the Worker), nothing is left behind
    inflight = [asyncio.ensure_future(direct.submit(big_batch(f"mid {i}"))) for i in range(2)]
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    done = await asyncio.gather(*inflight, return_exceptions=True)
    for r in done:
        assert not isinstance(r, BaseException) or isinstance(r, WorkerLost), r
    assert named_segments() == []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        new = set(direct._links) - old
        if new and len(direct._links) == 2 and all(ln.usable for ln in direct._links.values()):
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"no link to the replacement replica: {direct._links}")
    rs = await asyncio.gather(*(direct.submit(batch(f"after {i}")) for i in range(4)))
    workers = {r.worker for r in rs}  # four at once: both links take some
    pids = {int(w.rsplit(":", 1)[1]) for w in workers}
    assert pid not in pids and len(pids) == 2, workers


async def test_direct_batches_respect_max_ongoing_requests(ray_cluster, tmp_path):
    """Serve enforces max_ongoing_requests only on its own requests: the front holds direct
    batches beyond it (one replica, 1 running + 1 ahead + 1 realtime place = 3), and sends
    each as room frees."""
    from swiftshot.runtime.ray_executor import RayExecutor, max_ongoing

    ex = RayExecutor(ray_settings(tmp_path, replicas=1, delay_s=0.05, transport="direct"))
    await ex.start()
    try:
        (link,) = ex._links.values()
        limit = max_ongoing(ex.settings)
        assert limit == 3
        seen: list[int] = []
        submit = link.submit

        def counted(call):
            submit(call)
            seen.append(link.inflight)

        link.submit = counted
        rs = await asyncio.gather(*(ex.submit(batch(f"many {i}")) for i in range(8)))
        assert all(r.results[0].master for r in rs) and len(seen) == 8
        assert max(seen) == limit, seen  # filled up to the limit, never beyond
    finally:
        await ex.stop()
        await delete_app(ex.app_name)
    assert named_segments() == []


async def test_a_direct_front_on_serve_transport_replicas_says_so(ray_cluster, tmp_path, caplog):
    """Replicas deployed with ray.transport = serve open no channel: a direct front attaching
    to them carries every batch through Serve and says so (a warning, /readyz 'transport')."""
    import logging

    from swiftshot.runtime.ray_executor import RayExecutor

    deployer = RayExecutor(ray_settings(tmp_path, replicas=1, transport="serve"))
    await deployer.start()
    front = None
    try:
        assert deployer.health().to_json()["transport"] == {
            "configured": "serve", "effective": "serve", "replicas": 1, "linked": 0,
            "shared_memory": 0, "note": None}
        s = ray_settings(tmp_path, replicas=1, transport="direct", deploy=False,
                         direct_connect_timeout_s=1.0)
        front = RayExecutor(s)
        with caplog.at_level(logging.WARNING, logger="swiftshot.runtime.ray_executor"):
            await front.start()
        assert any("deployed with ray.transport = serve" in r.getMessage()
                   for r in caplog.records), caplog.text
        r = await front.submit(batch("through serve"))
        assert r.results[0].master and not front._links
        seen = front.health().to_json()["transport"]
        assert seen["configured"] == "direct" and seen["effective"] == "serve"
        assert seen["linked"] == 0 and "ray.transport = serve" in seen["note"]
    finally:
        if front is not None:
            await front.stop()
        await deployer.stop()
        await delete_app(deployer.app_name)


async def test_a_replica_removed_by_a_downscale_finishes_its_direct_batches(ray_cluster, tmp_path):
    """The application goes from 2 replicas to 1 (a redeploy with fewer replicas, as Serve
    removes one on a downscale) while each replica holds a running and a waiting direct batch:
    the removed replica takes no new batch but finishes the four within its graceful shutdown
    — no request is lost; the front stops linking it."""
    from ray import serve

    from swiftshot.runtime.ray_executor import RayExecutor, engine_deployment

    s = ray_settings(tmp_path, replicas=2, delay_s=1.0, transport="direct",
                     graceful_shutdown_timeout_s=20)
    ex = RayExecutor(s)
    await ex.start()
    try:
        assert len(ex._links) == 2
        jobs = [asyncio.ensure_future(ex.submit(batch(f"drain {i}"))) for i in range(4)]
        await asyncio.sleep(0)
        assert sorted(ln.inflight for ln in ex._links.values()) == [2, 2]
        # the same deployment, only num_replicas lower: Serve removes a replica, keeps one
        app = engine_deployment(s, "fake").options(num_replicas=1).bind(s, "fake", None)
        loop = asyncio.get_running_loop()
        # not blocking: Serve's own wait for the update took ~60 s on this box, long after
        # every batch had its answer
        await loop.run_in_executor(None, lambda: serve._run(
            app, name=ex.app_name, route_prefix=None, _blocking=False))
        drained_busy = False  # the front saw the replica being removed while it held batches
        while not all(j.done() for j in jobs):
            drained_busy |= any(ln.draining and ln.inflight for ln in ex._links.values())
            await asyncio.sleep(0.02)
        results = await asyncio.wait_for(asyncio.gather(*jobs), 60)
        assert all(r.results[0].master for r in results)
        assert len({r.worker for r in results}) == 2  # the removed replica finished its two
        assert drained_busy
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(ex._links) != 1:
            await asyncio.sleep(0.1)
        assert len(ex._links) == 1, ex._links
        r = await ex.submit(batch("after the downscale"))
        assert r.results[0].master
    finally:
        await ex.stop()
        await delete_app(ex.app_name)
