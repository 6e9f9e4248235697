"""Result bytes from an engine worker process to the front through shared memory.

A 512² render's lossless master is ~0.8-1 MB of raw pixels. Sent through the worker's pipe (a
Unix socket of ~200 KB buffer) it crossed in a dozen writer/reader hand-offs, each a context
switch on a busy box: ~2 ms of the worker blocked in ``send`` and of the front's reader in
``recv`` per miss (profile in docs/PERFORMANCE.md). Instead each worker process gets one
segment of its own, created by the front; the worker copies a batch's result bytes (masters,
delivery variants) into it and sends only ``(offset, length)`` references over the pipe; the
front's reader copies them out before it hands the result on. One batch runs at a time per
worker and the front sends the next only after it has copied the last result out, so the
segment needs no locking.

Nothing leaks: the front creates the segment (registered with multiprocessing's resource
tracker, which removes it if the front itself is killed) and **unlinks its name as soon as the
worker has attached** (the worker's ``ready``), so from then on the memory belongs to the two
mappings only and the kernel frees it when both processes have unmapped it or died — a worker
SIGKILLed mid-batch leaves nothing behind. A worker that fails before ``ready`` has its
segment unlinked by the front then. Pages are committed in the worker with ``posix_fallocate``
as the high-water mark grows, so a full ``/dev/shm`` is an ``OSError`` there (the bytes then go
over the pipe as before), never a SIGBUS; the segment's size (``engine.result_shm_bytes``) is
only an upper bound of address space. Anything that does not fit goes over the pipe.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import secrets
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
PREFIX = "swiftshot-r"
"""Name prefix of the segments (``/dev/shm/swiftshot-r-<front pid>-<worker>-<random>``)."""


class ShmRef(NamedTuple):
    """Stands in for a ``bytes`` value of a result while it crosses: where it lies in the
    worker's segment."""

    offset: int
    length: int
    seal: int = 0
    """0: the bytes were in place when the reference was sent. Else the bytes are copied in
    *after* the reference was sent (:meth:`ResultWriter.put`'s ``later``: a master its worker
    stores itself, which the front reads only if that store fails), and the 8 bytes after
    them hold this number once they are whole: :meth:`ResultArea.read` refuses them until
    then (a worker that died before it finished the copy)."""


SEAL_BYTES = 8
_seals = itertools.count(int.from_bytes(os.urandom(7), "little") + 1)
"""Seal numbers of this process: never 0, never repeated (a random start, so a stale seal of
an earlier process in a reused segment cannot match either)."""


def _seal_bytes(seal: int) -> bytes:
    return seal.to_bytes(SEAL_BYTES, "little")


class ResultArea:
    """The front's side of one worker's segment."""

    def __init__(self, shm: Any) -> None:
        self._shm = shm
        self._buf = shm.buf
        self.name: str = shm.name
        self.size: int = shm.size
        self._unlinked = False
        self._closed = False

    @classmethod
    def create(cls, size: int, tag: str) -> ResultArea | None:
        """A new segment of ``size`` bytes, or None when shared memory is not available (the
        worker then sends its results over the pipe)."""
        if size <= 0:
            return None
        from multiprocessing import shared_memory

        name = f"{PREFIX}-{os.getpid()}-{tag}-{secrets.token_hex(4)}"
        try:
            return cls(shared_memory.SharedMemory(name=name, create=True, size=size))
        except (OSError, ValueError) as e:
            log.warning("no shared memory for worker results (%s); using the pipe", e)
            return None

    def unlink(self) -> None:
        """Remove the name (the mappings stay valid). Idempotent."""
        if self._unlinked:
            return
        self._unlinked = True
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unlink if not done yet and unmap. Call only when no reader copies out of it."""
        self.unlink()
        if self._closed:
            return
        self._closed = True
        try:
            self._buf.release()
            self._shm.close()
        except (BufferError, OSError) as e:  # a view still held somewhere: the GC unmaps it
            log.debug("shared memory %s not unmapped now: %s", self.name, e)

    def read(self, ref: ShmRef) -> bytes:
        offset, length, seal = ref
        end = offset + length + (SEAL_BYTES if seal else 0)
        if offset < 0 or length < 0 or end > self.size:
            raise ValueError(f"result reference {offset}+{length} outside the "
                             f"{self.size}-byte segment")
        if seal and bytes(self._buf[offset + length:end]) != _seal_bytes(seal):
            raise ValueError(f"result reference {offset}+{length}: its bytes were never "
                             f"completed (the worker stopped before it copied them in)")
        return bytes(self._buf[offset:offset + length])

    def prefault(self, nbytes: int) -> None:
        """Map the first ``nbytes`` of the segment into this process now (a read per page), so
        the first results do not fault them in one by one while they are copied out. The
        writer committed them first (:meth:`ResultWriter.prefault`)."""
        buf = self._buf
        for off in range(0, min(nbytes, self.size), PAGE):
            buf[off]  # noqa: B018 - the read is the point

    def take(self, result: Any) -> None:
        """Replace the :class:`ShmRef` values of a ``BatchResult`` by the bytes they point at
        — but a master its worker stores itself (``stored``), which stays where it is: the
        front copies it out only if that store fails (runtime/process.py)."""
        for item in result.results:
            if isinstance(item.master, ShmRef) and getattr(item, "stored", False) is not True:
                item.master = self.read(item.master)
            if item.variants:
                item.variants = {k: self.read(v) if isinstance(v, ShmRef) else v
                                 for k, v in item.variants.items()}


class ResultWriter:
    """The worker's side: attaches to the front's segment without registering it with a
    resource tracker (the front owns it and removes its name)."""

    def __init__(self, name: str) -> None:
        import _posixshmem

        self._fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
        try:
            self.size = os.fstat(self._fd).st_size
            self._map = mmap.mmap(self._fd, self.size)
        except BaseException:
            os.close(self._fd)
            raise
        self._committed = 0

    @classmethod
    def attach(cls, name: str | None) -> ResultWriter | None:
        if not name:
            return None
        try:
            return cls(name)
        except (OSError, ImportError, ValueError) as e:
            log.warning("could not attach the result segment %s (%s); using the pipe", name, e)
            return None

    def _commit(self, end: int) -> bool:
        if end <= self._committed:
            return True
        try:
            os.posix_fallocate(self._fd, 0, end)
        except OSError as e:  # /dev/shm full: this result goes over the pipe
            log.warning("result segment: could not commit %d bytes (%s); using the pipe", end, e)
            return False
        self._committed = end
        return True

    def prefault(self, nbytes: int) -> bool:
        """Commit the first ``nbytes`` of the segment and map them into this process now (a
        write per page), so the first result of that size is not slowed by ~770 page faults
        at 1024² (the size the server warms up for, ``server.warmup_shapes``). False when
        ``/dev/shm`` has no room for them (results then commit pages as they come)."""
        n = min(nbytes, self.size)
        if n <= 0 or not self._commit(n):
            return False
        m = self._map
        for off in range(0, n, PAGE):
            m[off] = 0
        return True

    def write_at(self, pos: int, data: Any) -> bool:
        """Copy ``data`` (a bytes-like object) to ``pos``, committing pages as needed; False
        (nothing written) when it does not fit or ``/dev/shm`` is full."""
        end = pos + len(data)
        if pos < 0 or end > self.size or not self._commit(end):
            return False
        self._map[pos:end] = data
        return True

    def put(self, result: Any, later: Any = ()) -> list[tuple[ShmRef, Any]]:
        """Move the result's masters and variants into the segment (as many as fit, from
        offset 0: the front copied the previous batch's out before sending this one), leaving
        :class:`ShmRef` in their place.

        ``later``: ids of items whose master the front reads only if the worker's own store of
        it fails (``Item.store``). When all of such an item's variants fit, its master's place
        is reserved and sealed (:attr:`ShmRef.seal`) but not yet written: the 1 MB copy then
        runs after the answer is sent (:meth:`fill`, before the store), not before it. Returns
        what :meth:`fill` must copy."""
        pos = 0
        pending: list[tuple[ShmRef, Any]] = []

        def place(data: Any, now: bool = True) -> Any:
            nonlocal pos
            n = len(data)
            end = pos + n + (0 if now else SEAL_BYTES)
            if not isinstance(data, (bytes, bytearray)) or end > self.size \
                    or not self._commit(end):
                return data
            if now:
                self._map[pos:pos + n] = data
                ref = ShmRef(pos, n)
            else:
                ref = ShmRef(pos, n, next(_seals))
                pending.append((ref, data))
            pos = end
            return ref

        for item in result.results:
            if item.variants:
                item.variants = {k: place(v) for k, v in item.variants.items()}
            if item.master is not None:
                defer = item.id in later and \
                    all(isinstance(v, ShmRef) for v in item.variants.values())
                item.master = place(item.master, now=not defer)
        return pending

    def fill(self, pending: list[tuple[ShmRef, Any]]) -> None:
        """Copy in what :meth:`put` reserved, each followed by its seal (written last: the
        front trusts the bytes only once the seal is there)."""
        m = self._map
        for (offset, length, seal), data in pending:
            m[offset:offset + length] = data
            m[offset + length:offset + length + SEAL_BYTES] = _seal_bytes(seal)

    def close(self) -> None:
        try:
            self._map.close()
        finally:
            os.close(self._fd)


_HEAP_KEPT = 0
_HEAP_WARM = 0


def warm_bytes(shapes: Any) -> int:
    """Bytes of the largest result a server warms up for: a raw master of the largest of
    ``shapes`` (``server.warmup_shapes``, (width, height) pairs), 4 bytes a pixel at most."""
    return max((4 * int(w) * int(h) for w, h in shapes or ()), default=0)


def _warm_heap(nbytes: int, chunk: int) -> None:
    """Touch ``nbytes`` of malloc heap in blocks of ``chunk`` (below the mmap threshold, so
    they come from the heap) and free them: they merge back into the heap's top, which
    ``M_TRIM_THRESHOLD`` keeps mapped, so the first few-MB copies later find warm pages."""
    chunk = max(chunk, PAGE)
    blocks = [b"\1" * chunk for _ in range(max(1, nbytes // chunk))]  # written, not calloc'd
    del blocks


def keep_heap(nbytes: int, prefault: int = 0) -> bool:
    """Have glibc's malloc serve blocks below ``min(nbytes, 32 MiB)`` from its heap and keep up
    to ``2 × nbytes`` of freed heap mapped (``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD``). For a
    process that receives results of a few MB again and again (the Ray front): by default each
    such ``bytes`` is a fresh ``mmap`` whose ~770 pages (3 MB) are faulted and zeroed on the
    copy into it, ~1.4 ms on the dev VM, and unmapped again when freed (glibc's own adaptive
    threshold does not help: it rises only to the size of a freed block, and the next block
    of the same size is mapped again). Process-wide and once (the largest ``nbytes`` asked
    wins); False where it is not glibc or ``nbytes`` is 0.

    ``prefault``: also touch that many bytes of heap now (at most ``nbytes``; the size of the
    largest result expected, :func:`warm_bytes`), so the first result of that size is not
    copied into fresh pages either (768 page faults, ~1.5 ms, for a 3 MB master)."""
    global _HEAP_KEPT, _HEAP_WARM
    if nbytes <= 0:
        return False
    if nbytes <= _HEAP_KEPT:
        warm = min(prefault, _HEAP_KEPT)
        if warm > _HEAP_WARM:
            _warm_heap(warm, min(1 << 20, _HEAP_KEPT // 2))
            _HEAP_WARM = warm
        return True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not mallopt(m_mmap_threshold, min(nbytes, 32 * 1024 * 1024)) or \
            not mallopt(m_trim_threshold, 2 * nbytes):
        return False
    _HEAP_KEPT = nbytes
    warm = min(prefault, nbytes)
    if warm > _HEAP_WARM:
        _warm_heap(warm, min(1 << 20, min(nbytes, 32 * 1024 * 1024) // 2))
        _HEAP_WARM = warm
    return True


def leftover(front_pid: int | None = None) -> list[str]:
    """Names of our segments still in ``/dev/shm`` (for tests and diagnostics)."""
    want = f"{PREFIX}-{front_pid}-" if front_pid is not None else f"{PREFIX}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(want))
    except OSError:
        return []
