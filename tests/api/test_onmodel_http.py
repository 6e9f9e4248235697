"""POST /v1/onmodel on a real server (loopback) whose renders run in an engine worker
process: the on-model shot crosses the executor seam like any render (photos in, master
out), is cached, and a model photo with no person is a 422 from inside the worker."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from swiftshot.testing.people import make_garment, make_model

pytestmark = pytest.mark.slow


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_onmodel_through_a_worker_process(serve):
    s = serve(env={"SWIFTSHOT_ENGINE__EXECUTOR": "process", "SWIFTSHOT_ENGINE__WORKERS": "1"})
    assert s.client.get("/readyz").json()["executor"] == "process"
    model, garment = _jpeg(make_model(3, (256, 320)).image), _jpeg(make_garment(3, (256, 256)).image)
    files = {"garment": ("g.jpg", garment, "image/jpeg"), "model": ("m.jpg", model, "image/jpeg")}
    r = s.client.post("/v1/onmodel", files=files, headers={"Accept": "application/json"},
                      timeout=120)
    assert r.status_code == 200 and r.json()["cache"] == "miss", r.text
    assert (r.json()["width"], r.json()["height"]) == (256, 320)
    again = s.client.post("/v1/onmodel", files=files, timeout=120)
    # the worker stored the miss itself: the master never entered the front, the first
    # repeat reads it from disk
    assert again.status_code == 200 and again.headers["x-cache"] == "disk"
    assert Image.open(io.BytesIO(again.content)).size == (256, 320)
    empty = _jpeg(Image.new("RGB", (256, 320), (236, 236, 234)))
    bad = s.client.post("/v1/onmodel", files={**files, "model": ("e.jpg", empty)}, timeout=120)
    assert bad.status_code == 422, bad.text
    assert "no person was found" in bad.json()["error"]["message"]
