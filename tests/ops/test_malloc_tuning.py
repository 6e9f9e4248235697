"""glibc's malloc keeps a 2000² request's large buffers between requests (swiftshot._malloc):
the studio backdrop at 2000² faulted ~5,400 pages in on every render without it. The probe
allocates, fills and frees the buffers a 2000² request does (two float planes, an RGB image),
as the C code under numpy, OpenCV and Pillow does: with glibc's dynamic thresholds every round
maps fresh pages (10,710 faults a round on the 2-core Xeon), with the fixed ones only the first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

PROBE = """
import ctypes, json, resource, swiftshot, swiftshot._malloc as m
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
n = 16_000_000  # a 2000² float plane
faults = []
for i in range(6):  # two planes and an RGB image's worth, used and freed, as a request does
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bufs = [libc.malloc(s) for s in (n, n, 12_000_000)]
    for b, s in zip(bufs, (n, n, 12_000_000)):
        libc.memset(b, 1, s)
    for b in reversed(bufs):
        libc.free(b)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(json.dumps({"tuned": m.TUNED, "faults": faults}))
"""


def _probe(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SWIFTSHOT_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_",
                        "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_requests_buffers_are_reused_not_faulted_in_again():
    got = _probe()
    if not got["tuned"]:
        pytest.skip("not glibc: malloc left as it is")
    # 44 MB is ~10,700 pages: a round that got its buffers back from the kernel shows them all.
    assert max(got["faults"][1:]) < 500, got


def test_the_users_setting_wins():
    assert _probe(SWIFTSHOT_MALLOC_TUNING="0")["tuned"] is False
    assert _probe(MALLOC_TRIM_THRESHOLD_="1000000")["tuned"] is False
    assert _probe(GLIBC_TUNABLES="glibc.malloc.arena_max=2")["tuned"] is False


def test_users_choice_reads_the_environment():
    from swiftshot._malloc import users_choice

    assert not users_choice({})
    assert users_choice({"MALLOC_MMAP_THRESHOLD_": "1"})
    assert users_choice({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
    assert not users_choice({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})
