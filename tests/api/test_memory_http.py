"""The memory budget over HTTP (issue 11, part 2): uploads past it wait, then get 503."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.runtime.test_memory import _photo


@pytest.mark.slow
def test_uploads_past_the_memory_budget_get_503_with_retry_after(serve):
    """Two uploads at once on a budget that holds one: the second waits memory_wait_s and is
    refused with 503 memory_busy + Retry-After; once the first is done, the next is served."""
    s = serve(env={"SWIFTSHOT_LIMITS__MEMORY_BUDGET_BYTES": "1024",
                   "SWIFTSHOT_LIMITS__MEMORY_WAIT_S": "0.3",
                   "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "2.0"})
    spec = '{"width": 256, "height": 256, "ops": [{"op": "compose", "backdrop": "engine", ' \
           '"prompt": "grey paper"}]}'

    def post(i: int):
        photo = _photo(600 + i, 400, "PNG")
        return s.client.post("/v1/render", files=[("spec", (None, spec)),
                                                  ("product", ("p.png", photo, "image/png"))])

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, 0)
        time.sleep(0.5)  # the first holds the budget through its 2 s render
        second = pool.submit(post, 1)
        a, b = first.result(), second.result()
    assert a.status_code == 200, a.text
    assert b.status_code == 503, b.text
    assert b.json()["error"]["code"] == "memory_busy" and int(b.headers["retry-after"]) >= 1
    assert post(2).status_code == 200


@pytest.mark.slow
def test_batch_photo_check_waits_for_the_memory_budget(serve):
    """POST /v1/batches decodes each photo to check it: that decode holds the memory budget
    like a render's. While a render holds the budget, a batch upload waits memory_wait_s and
    is refused with 503 memory_busy + Retry-After (no job made); once the budget is free it
    is accepted."""
    s = serve(env={"SWIFTSHOT_LIMITS__MEMORY_BUDGET_BYTES": "1024",
                   "SWIFTSHOT_LIMITS__MEMORY_WAIT_S": "0.3",
                   "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "4.0"})
    spec = '{"width": 256, "height": 256, "ops": [{"op": "compose", "backdrop": "engine", ' \
           '"prompt": "grey paper"}]}'

    def render():
        return s.client.post("/v1/render", files=[
            ("spec", (None, spec)), ("product", ("p.png", _photo(600, 400, "PNG"), "image/png"))])

    def batch(i: int):
        files = [("files", (f"b{i}.png", _photo(700 + i, 500, "PNG"), "image/png"))]
        return s.client.post("/v1/batches", files=files, data={"preset": "amazon"})

    def rendering() -> bool:
        text = s.client.get("/metrics").text
        return any(float(line.rsplit(" ", 1)[1]) >= 2 for line in text.splitlines()
                   if line.startswith("swiftshot_http_requests_in_flight"))  # + this GET

    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(render)
        end = time.monotonic() + 60
        while not rendering() and time.monotonic() < end and not held.done():
            time.sleep(0.05)
        time.sleep(0.3)  # past its multipart read: the render holds the budget for its 4 s
        refused = pool.submit(batch, 0).result()
        assert held.result().status_code == 200
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "memory_busy"
    assert int(refused.headers["retry-after"]) >= 1
    accepted = batch(1)
    assert accepted.status_code == 202, accepted.text
