"""The shared-memory result transport's two halves in one process (runtime/shm.py): what the
worker places is what the front reads, what does not fit stays bytes, and the front's name
removal leaves no segment behind."""

from __future__ import annotations

import os

import pytest

from swiftshot.runtime import shm
from swiftshot.runtime.executor import BatchResult, ItemResult


def _result(*sizes: int) -> BatchResult:
    items = [ItemResult(i, master=os.urandom(n), variants={("webp", 80): os.urandom(n // 3 + 1)})
             for i, n in enumerate(sizes)]
    return BatchResult(items, 0.0)


def test_placed_bytes_come_back_identical_and_oversize_ones_stay_bytes():
    area = shm.ResultArea.create(1 << 20, "t")
    assert area is not None
    writer = shm.ResultWriter(area.name)
    try:
        for sizes in ((1000, 200_000), (700_000, 500_000), (5, 0)):
            sent = _result(*sizes)
            want = [(r.master, dict(r.variants)) for r in sent.results]
            writer.put(sent)
            refs = [r.master for r in sent.results] + \
                [v for r in sent.results for v in r.variants.values()]
            placed = [x for x in refs if isinstance(x, shm.ShmRef)]
            assert placed, "nothing went through the segment"
            if sum(sizes) + sum(n // 3 + 1 for n in sizes) > area.size:
                assert any(isinstance(x, bytes) for x in refs)  # the rest stays bytes
            area.take(sent)
            assert [(r.master, dict(r.variants)) for r in sent.results] == want
    finally:
        writer.close()
        area.close()
    assert area.name not in os.listdir("/dev/shm")


def test_the_name_goes_once_the_worker_has_attached_and_the_mapping_stays_usable():
    area = shm.ResultArea.create(4096, "u")
    assert area is not None and area.name in shm.leftover(os.getpid())
    writer = shm.ResultWriter(area.name)
    area.unlink()
    assert shm.leftover(os.getpid()) == []
    sent = BatchResult([ItemResult(0, master=b"pixels")], 0.0)
    writer.put(sent)
    assert isinstance(sent.results[0].master, shm.ShmRef)
    area.take(sent)
    assert sent.results[0].master == b"pixels"
    writer.close()
    area.close()


def test_a_reference_outside_the_segment_is_refused():
    area = shm.ResultArea.create(4096, "v")
    assert area is not None
    try:
        with pytest.raises(ValueError, match="outside"):
            area.read(shm.ShmRef(4000, 200))
    finally:
        area.close()


def test_no_segment_when_it_is_switched_off():
    assert shm.ResultArea.create(0, "w") is None
    assert shm.ResultWriter.attach(None) is None


def _faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def test_a_prefaulted_segment_takes_its_first_large_result_without_page_faults():
    """The replica's side of a Ray link commits and maps the size of the largest warm-up
    shape's master at link time (``shm.warm_bytes``): the first 1024² master written then
    finds its pages mapped, instead of faulting ~770 of them in during the hop."""
    warm = shm.warm_bytes([(64, 64), (1024, 1024)])
    assert warm == 4 * 1024 * 1024
    master = os.urandom(3 * 1024 * 1024 + 13)
    for prefault in (False, True):
        area = shm.ResultArea.create(8 * 1024 * 1024, "p")
        assert area is not None
        writer = shm.ResultWriter(area.name)
        area.unlink()
        try:
            if prefault:
                assert writer.prefault(warm)
                area.prefault(warm)
            f0 = _faults()
            assert writer.write_at(0, master)
            faults = _faults() - f0
            if prefault:
                assert faults < 50, faults
            else:  # the unwarmed case this guards against (one fault a 4 KB page)
                assert faults > 500, faults
            assert area.read(shm.ShmRef(0, len(master))) == master
        finally:
            writer.close()
            area.close()


def test_a_master_stored_by_its_worker_is_copied_in_after_the_answer_and_sealed():
    """``put(later=...)``: a master the worker stores itself is only reserved before the
    answer (the 1 MB copy left until after it, off the miss's path); the front refuses it
    until ``fill`` has copied it and written its seal, so a worker lost in between never
    hands the front stale or half-copied bytes — not even the same-sized master of the
    batch before, at the same place."""
    area = shm.ResultArea.create(1 << 20, "s")
    assert area is not None
    writer = shm.ResultWriter(area.name)
    try:
        first = _result(300_000)
        first_master = first.results[0].master
        pending = writer.put(first, later={0})
        ref = first.results[0].master
        assert isinstance(ref, shm.ShmRef) and ref.seal != 0 and len(pending) == 1
        first.results[0].stored = True  # as the worker marks it
        area.take(first)  # the variant is there at once; the master stays a reference
        assert isinstance(first.results[0].master, shm.ShmRef)
        with pytest.raises(ValueError, match="never completed"):
            area.read(ref)
        writer.fill(pending)
        assert area.read(ref) == first_master
        # the next batch, same place, same size: the old bytes and seal do not pass for it
        second = _result(300_000)
        second_master = second.results[0].master
        pending = writer.put(second, later={0})
        ref2 = second.results[0].master
        assert (ref2.offset, ref2.length) == (ref.offset, ref.length) and ref2.seal != ref.seal
        with pytest.raises(ValueError, match="never completed"):
            area.read(ref2)
        writer.fill(pending)
        assert area.read(ref2) == second_master
        # a master not asked for later is copied at once, unsealed, as before
        third = _result(300_000)
        assert writer.put(third) == [] and third.results[0].master.seal == 0
        want = third.results[0].master
        assert area.read(want) == area.read(shm.ShmRef(want.offset, want.length))
    finally:
        writer.close()
        area.close()


def test_a_batch_result_crosses_the_pipe_as_plain_tuples_and_comes_back_whole():
    """The "done" message (runtime/process.py): no dataclass or ShmRef is pickled (each costs
    a reduce and a class look-up on the miss's path), and the front rebuilds the same result:
    references, bytes that did not fit, errors, images, timings, metrics and spans."""
    from multiprocessing.reduction import ForkingPickler

    from PIL import Image

    from swiftshot.errors import ServiceError
    from swiftshot.runtime.process import result_from_wire, result_to_wire

    sent = BatchResult([
        ItemResult(1, master=shm.ShmRef(5, 10, 99), width=3, height=4, stored=True,
                   variants={("webp", 80): shm.ShmRef(0, 5), ("png", 100): b"xx"},
                   quality={"cutout_confidence": 0.93}),
        ItemResult(2, error=ServiceError("bad input", status=400, code="invalid_value")),
        ItemResult(3, image=Image.new("RGB", (2, 2), (9, 8, 7)), width=2, height=2,
                   master=b"raw")], 0.1, 0.2, "studio/process-0", {"k": 1.0}, 0.3,
        [("engine", 1, 2, None), ("encode", 2, 3, 1)])
    wire = ForkingPickler.dumps(result_to_wire(sent))
    assert b"ItemResult" not in wire and b"BatchResult" not in wire and b"ShmRef" not in wire
    got = result_from_wire(ForkingPickler.loads(wire))
    for a, b in zip(sent.results, got.results, strict=True):
        assert (a.id, a.master, a.width, a.height, a.variants, a.stored, a.quality) == \
            (b.id, b.master, b.width, b.height, b.variants, b.stored, b.quality)
        assert type(a.master) is type(b.master)
        assert all(type(a.variants[k]) is type(b.variants[k]) for k in a.variants)
    assert got.results[1].error.status == 400 and got.results[1].error.code == "invalid_value"
    assert got.results[2].image.tobytes() == sent.results[2].image.tobytes()
    assert (got.infer_s, got.master_s, got.worker, got.metrics, got.variant_s, got.spans) == \
        (0.1, 0.2, "studio/process-0", {"k": 1.0}, 0.3, [("engine", 1, 2, None), ("encode", 2, 3, 1)])
