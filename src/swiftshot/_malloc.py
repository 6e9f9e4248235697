"""glibc's malloc kept from handing large image buffers back to the kernel after each request.

A 2000² request allocates and frees the same few 12-16 MB buffers (float planes, Pillow's
image blocks) over and over. With glibc's default, dynamic thresholds the studio backdrop's
buffers were given back to the kernel on free (the heap's top trimmed, or an mmap unmapped) and
faulted in again, zero-filled, page by page on the next request: ~5,400 page faults, ~10 ms of
CPU per studio@2000 backdrop on the 2-core Xeon (docs/OPS.md "Page faults"). Fixed thresholds
keep them: buffers up to 32 MiB come from the heap (32 MiB is glibc's own ceiling for its
dynamic threshold) and up to 64 MiB of free heap top is kept for the next request instead of
trimmed. Pixels are unchanged; a process keeps at most 64 MiB more resident than it uses.

Only on glibc, and never over the user's own choice: any of MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_, a ``glibc.malloc`` tunable in GLIBC_TUNABLES, or
SWIFTSHOT_MALLOC_TUNING=0 leaves malloc as it is.
"""

from __future__ import annotations

import os

MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_USER_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def users_choice(env: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """True when the user has tuned malloc (or turned this off): then it is left alone."""
    return (env.get("SWIFTSHOT_MALLOC_TUNING", "1") == "0"
            or any(v in env for v in _USER_VARS)
            or "glibc.malloc" in env.get("GLIBC_TUNABLES", ""))


def tune() -> bool:
    """Set the fixed thresholds; True when glibc took them."""
    if users_choice():
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - musl and others have no such symbol: not glibc
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


TUNED = os.name == "posix" and tune()
"""Whether this process runs with the thresholds above."""
