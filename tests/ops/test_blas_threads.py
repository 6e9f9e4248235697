"""numpy's OpenBLAS runs one thread in swiftshot's processes unless the user sets
OPENBLAS_NUM_THREADS (its threads spun beside every cutout for no wall time: docs/OPS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

PROBE = ("import swiftshot, numpy, json, threadpoolctl; "
         "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info() "
         "if p['user_api'] == 'blas']))")


def _blas_threads(env: dict[str, str]) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env.update(extra)
    return env


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts one thread anyway")
def test_one_blas_thread_by_default():
    threads = _blas_threads(_env())
    assert threads and all(n == 1 for n in threads), threads


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: nothing to tell apart")
def test_the_users_setting_wins():
    assert all(n == 2 for n in _blas_threads(_env(OPENBLAS_NUM_THREADS="2")))
