"""Same-bits check for speed work: sha256 of each cutout's alpha + confidence + notes, and of
the amazon (and shopify) preset's output bytes + compliance verdict and of a compose on a
fixed gradient backdrop, over a fixed case list (known 0-44 x 10 categories and novel 400-419
x 10 at 640², a few at 1500² and 2000² incl. white products). Prints one overall hash and
writes the per-case hashes to argv[1]; run it on main and on a branch (PYTHONPATH=.../src,
SWIFTSHOT_PHOTO_CACHE set) and compare the two files. Tuning seeds only (no blind or
held-out seed). speed18, 2026-12-06: ~11 min CPU at load 10."""
# ruff: noqa: I001 - swiftshot first: it sets OPENBLAS_NUM_THREADS=1 before numpy loads
import swiftshot
import hashlib
import json
import sys
import time

import numpy as np
from PIL import Image

from swiftshot.ops.compose import ComposeParams, Placement, compose
from swiftshot.ops.cutout import CONFIDENCE_INFO, CONFIDENCE_NOTES, ClassicalSegmenter, cutout
from swiftshot.ops.presets import BUILTIN_PRESETS, apply_preset
from swiftshot.testing import novel as N
from swiftshot.testing import products as P

print(swiftshot.__file__, file=sys.stderr)
seg = ClassicalSegmenter()
amazon, shopify = BUILTIN_PRESETS["amazon"], BUILTIN_PRESETS["shopify"]
# a fixed non-uniform backdrop for the studio-style compose (decontaminate, shadow paste)
yy, xx = np.mgrid[0:1200, 0:1200].astype(np.float32)
bd = Image.fromarray(np.dstack([235 - yy / 60, 232 - xx / 80, 228 - (yy + xx) / 150]).astype(np.uint8), "RGB")
rows = {}
def h(*parts):
    m = hashlib.sha256()
    for p in parts:
        m.update(p if isinstance(p, bytes) else repr(p).encode())
    return m.hexdigest()[:16]
def run(name, img, preset=False, studio=False):
    cut = cutout(img, seg)
    a = np.asarray(cut)[..., 3]
    r = {"cut": h(a.tobytes(), cut.info[CONFIDENCE_INFO], cut.info[CONFIDENCE_NOTES])}
    if preset:
        for nm, rule in (("amazon", amazon),) + ((("shopify", shopify),) if preset == 2 else ()):
            out = apply_preset(cut, rule, nm)
            r[nm] = h(out.tobytes(), out.info["compliance"].as_dict())
    if studio:
        try:
            out = compose(cut, bd, (1200, 1200), ComposeParams(placement=Placement(0.88)))
            r["studio"] = h(out.tobytes())
        except ValueError as e:
            r["studio"] = str(e)
    rows[name] = r
t0 = time.time()
for cat in P.CATEGORIES:
    for s in range(0, 45):
        ph = P.make_photo(P._eval_case(cat, s), (640, 640))
        run(f"known/{cat}/{s}@640", ph.image, preset=(cat == "white_on_white" or s % 5 == 0) + (s % 15 == 0), studio=(s % 3 == 0))
for cat in N.CATEGORIES:
    for s in range(400, 420):
        ph = P.make_photo(N.novel_case(cat, s), (640, 640))
        run(f"novel/{cat}/{s}@640", ph.image, preset=(cat == "white_on_white" or s % 5 == 0), studio=(s % 4 == 0))
for name in ("bottle_white_sweep", "white_on_white", "mug_handle_white_sweep"):
    run(f"legacy/{name}@2000", P.make_photo(name, (2000, 2000)).image, preset=2, studio=True)
for cat, s in (("white_on_white", 0), ("white_on_white", 1), ("white_on_white", 2), ("two_plane", 0), ("cast_shadows", 1), ("glossy_transparent", 2)):
    run(f"known/{cat}/{s}@2000", P.make_photo(P._eval_case(cat, s), (2000, 2000)).image, preset=1, studio=True)
for cat, s in (("white_on_white", 3), ("thin_parts", 4), ("holes", 5)):
    run(f"known/{cat}/{s}@1500", P.make_photo(P._eval_case(cat, s), (1500, 1500)).image, preset=1)
json.dump(rows, open(sys.argv[1], "w"), indent=0, sort_keys=True)
print(len(rows), "cases", sum(len(r) for r in rows.values()), "hashes; overall", h(json.dumps(rows, sort_keys=True)), f"{time.time()-t0:.0f}s")
