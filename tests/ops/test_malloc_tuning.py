"""glibc's malloc keeps a 2000² request's large buffers between requests (swiftshot._malloc):
the studio backdrop at 2000² faulted ~5,400 pages in on every render without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

PROBE = """
import io, json, resource, swiftshot, swiftshot._malloc as m
from swiftshot.config import LimitsSettings
from swiftshot.delivery.codecs import encode
from swiftshot.engines.studio import StudioEngine
from swiftshot.inputs import load_image
from swiftshot.ops.compose import compose
from swiftshot.ops.cutout import ClassicalSegmenter, cutout
from swiftshot.ops.presets import BUILTIN_PRESETS, apply_preset
from swiftshot.testing.products import make_photo
buf = io.BytesIO()
make_photo("bottle_white_sweep", (2000, 2000)).image.save(buf, "JPEG", quality=90)
e = StudioEngine(); e.load()
seg, amazon = ClassicalSegmenter(), BUILTIN_PRESETS["amazon"]
faults = []
for i in range(7):  # the studio path (benchmarks.ops): decode, cutout, backdrop, compose, preset, JPEG
    cut = cutout(load_image(buf.getvalue(), LimitsSettings()), seg)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    bd = e.render("white seamless paper sweep, soft light", 2000, 2000, 7)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    encode(apply_preset(compose(cut, bd, (2000, 2000)), amazon), "jpeg", amazon.quality)
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


def test_a_repeated_render_faults_no_pages_in():
    got = _probe()
    if not got["tuned"]:
        pytest.skip("not glibc: malloc left as it is")
    # 2000² RGB is ~3,900 pages per plane: a render that reallocated one would show thousands.
    assert max(got["faults"][2:]) < 500, got


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
