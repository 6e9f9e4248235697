"""swiftshot: a latency-first, self-hosted image service for ecommerce product imagery."""

import os as _os

# numpy's OpenBLAS starts one thread per core and lets them spin after each call. Our linear
# algebra is small (the cutout's backdrop fits and colour projections), so the extra threads
# gained no wall time and doubled the CPU time of a cutout (cutout@1500: 114-118 -> 60-62 ms
# CPU at the same wall, docs/OPS.md "OpenBLAS threads"), CPU a busy 2-core server has no
# spare of. One BLAS thread unless the user says otherwise; set before numpy is imported, and
# inherited by the engine worker processes. torch and onnxruntime keep their own thread pools.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# glibc's malloc gave a 2000² request's large buffers back to the kernel after each use and
# faulted them in again on the next (~10 ms CPU per studio backdrop): fixed thresholds keep
# them (swiftshot._malloc; the user's own MALLOC_* settings win).
from swiftshot import _malloc  # noqa: E402,F401

__version__ = "0.1.0"
