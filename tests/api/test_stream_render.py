"""The native stream of ``POST /v1/render`` (SSE) against a real server: framing, order,
previews, cache hits, coalesced joiners, errors, keep-alives and hang-ups."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import numpy as np
import orjson
import pytest
from PIL import Image

FAKE = {"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.6", "SWIFTSHOT_ENGINE__FAKE__STEPS": "4",
        "SWIFTSHOT_ENGINE__FAKE__FAIL_PROMPT": "explode",
        "SWIFTSHOT_SERVER__SSE_KEEPALIVE_S": "0.25"}


def read_events(response: httpx.Response) -> list[tuple[str, dict | None]]:
    """Parse the raw SSE body strictly: each block is ``event: T`` + ``data: {json}`` with the
    JSON's type equal to T, or a ``: keep-alive`` comment (returned as (":", None))."""
    out: list[tuple[str, dict | None]] = []
    text = response.read().decode()
    assert text.endswith("\n\n"), text[-200:]
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        if lines == [": keep-alive"]:
            out.append((":", None))
            continue
        assert len(lines) == 2 and lines[0].startswith("event: ") and \
            lines[1].startswith("data: "), block[:300]
        kind = lines[0][len("event: "):]
        data = orjson.loads(lines[1][len("data: "):])
        assert data["type"] == kind
        out.append((kind, data))
    return out


def stream(client: httpx.Client, body: dict, query: str = "?stream=true", **kw):
    with client.stream("POST", "/v1/render" + query, json=body, **kw) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return read_events(r)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.api.conftest import start_server

    s = start_server(tmp_path_factory.mktemp("stream") / "var", env=FAKE)
    yield s
    s.stop()


def kinds(events):
    return [k for k, _ in events if k != ":"]


def test_stream_order_previews_and_completed_answer(server):
    events = stream(server.client, {"prompt": "stream one", "size": "128x96", "seed": 1})
    assert kinds(events) == ["queued", "started", "partial", "partial", "completed"]
    queued = events[0][1]
    assert queued["position"] == 0 and isinstance(queued["eta_ms"], int)
    partials = [d for k, d in events if k == "partial"]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    levels = []
    for p in partials:
        img = Image.open(io.BytesIO(base64.b64decode(p["b64_json"])))
        assert img.format.lower() == p["output_format"] == "jpeg"  # previews: quick JPEGs
        assert p["size"] == f"{img.width}x{img.height}" == "16x12"  # the fake's 1/8 previews
        levels.append(img.convert("RGB").getpixel((0, 0))[0])
    assert levels == sorted(levels) and levels[0] < levels[1]  # steps 1 and 3, in order
    done = events[-1][1]
    plain = server.client.post("/v1/render", json={"prompt": "stream one", "size": "128x96",
                                                   "seed": 1}).json()
    assert done["cache"] == "miss" and plain["cache"] == "memory"
    assert done["key"] == plain["key"] and done["url"] == plain["url"]
    assert set(plain) - {"timings"} <= set(done) and "total" in done["timings"]
    assert (done["width"], done["height"]) == (128, 96)


def test_accept_header_streams_and_partial_images_zero(server):
    events = stream(server.client, {"prompt": "stream accept", "size": "64x64"}, query=
                    "?partial_images=0", headers={"Accept": "text/event-stream"})
    assert kinds(events) == ["queued", "started", "completed"]


def test_cache_hit_is_completed_at_once(server):
    body = {"prompt": "stream hit", "size": "64x64"}
    assert server.client.post("/v1/render", json=body).status_code == 200
    events = stream(server.client, body, query="?stream=true&partial_images=3")
    assert kinds(events) == ["completed"] and events[0][1]["cache"] == "memory"


def test_keep_alive_comments_while_waiting(server):
    events = stream(server.client, {"prompt": "stream slow", "size": "64x64"},
                    query="?stream=1&partial_images=0")
    assert kinds(events) == ["queued", "started", "completed"]
    assert (":", None) in events  # 0.6 s of work, a keep-alive every 0.25 s


def test_engine_failure_is_an_error_event(server):
    events = stream(server.client, {"prompt": "please explode", "size": "64x64"})
    assert kinds(events)[:2] == ["queued", "started"] and kinds(events)[-1] == "error"
    err = events[-1][1]
    assert err["status"] == 502 and err["error"]["code"] == "engine_error"
    assert err["error"]["message"] and err["error"]["type"] == "engine_error"


@pytest.mark.parametrize(("query", "param"), [
    ("?stream=true&partial_images=4", "partial_images"),
    ("?stream=true&partial_images=-1", "partial_images"),
    ("?stream=true&partial_images=two", "partial_images"),
    ("?stream=maybe", "stream"),
])
def test_bad_stream_options_are_400(server, query, param):
    r = server.client.post("/v1/render" + query, json={"prompt": "x", "size": "64x64"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["param"] == param and "0 to 3" in err["message"] or "true or false" in err["message"]


def test_bad_spec_on_a_stream_is_a_plain_json_error(server):
    r = server.client.post("/v1/render?stream=true", json={"prompt": "x", "size": "64x64",
                                                           "colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "colour"


def test_coalesced_joiner_hears_the_same_previews(server):
    body = {"prompt": "stream twins", "size": "64x64", "seed": 5}
    results: dict[int, list] = {}

    def one(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            results[i] = stream(c, body, query="?stream=true&partial_images=2")

    first = threading.Thread(target=one, args=(0,))
    first.start()
    time.sleep(0.25)  # the first is in the engine (0.6 s) when the twin asks
    second = threading.Thread(target=one, args=(1,))
    second.start()
    first.join(30)
    second.join(30)
    assert results[0][-1][1]["cache"] == "miss"
    assert results[1][-1][1]["cache"] == "coalesced"
    assert "started" in kinds(results[1])  # told its state on joining
    # the joiner came after step 1's preview; it hears step 3's
    assert kinds(results[1]).count("partial") >= 1
    assert results[0][-1][1]["key"] == results[1][-1][1]["key"]


def test_multipart_product_render_streams(server):
    photo = Image.new("RGB", (96, 96), (240, 240, 240))
    photo.paste((200, 30, 30), (24, 24, 72, 72))
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    spec = {"ops": [{"op": "compose", "backdrop": "color", "color": "#f3efe7"}], "size": "64x64"}
    with server.client.stream("POST", "/v1/render?stream=true",
                              files={"product": ("p.png", buf.getvalue(), "image/png")},
                              data={"spec": orjson.dumps(spec).decode()}) as r:
        assert r.status_code == 200, r.read()
        events = read_events(r)
    assert kinds(events)[0] == "queued" and kinds(events)[-1] == "completed"
    assert events[-1][1]["product_sha256"]


def test_hang_up_cancels_the_render(tmp_path):
    from tests.api.conftest import start_server

    s = start_server(tmp_path / "var", env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "8",
                                            "SWIFTSHOT_ENGINE__FAKE__STEPS": "40"})

    def until_started(prompt: str) -> float:
        """Stream a render, hang up once it is in the engine; seconds until it started."""
        t0 = time.monotonic()
        with httpx.Client(base_url=s.url, timeout=30) as c, \
                c.stream("POST", "/v1/render?stream=true",
                         json={"prompt": prompt, "size": "64x64"}) as r:
            for line in r.iter_lines():
                if line == "event: started":
                    return time.monotonic() - t0
        raise AssertionError("no started event")

    try:
        until_started("left first")
        # an 8 s render nobody reads any more: the engine stops at its next step (0.2 s), so
        # the next render starts at once instead of ~8 s later
        waited = until_started("left second")
        assert waited < 4, waited
        time.sleep(0.5)
        assert s.metric("swiftshot_generations_total") == 0  # neither ran to the end
        assert s.metric("swiftshot_queue_depth") == 0
    finally:
        s.stop()


def test_product_preview_is_the_product_in_the_coarse_scene(server):
    """A product render's preview is a coarse render of the whole image (the photo composed
    onto the engine's coarse backdrop), not the bare backdrop."""
    photo = Image.new("RGB", (120, 120), (236, 236, 232))
    photo.paste((190, 30, 40), (35, 30, 85, 95))
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    spec = {"ops": [{"op": "compose", "backdrop": "engine", "prompt": "grey"}],
            "size": "256x256", "seed": 2}
    with server.client.stream("POST", "/v1/render?stream=true&partial_images=1",
                              files={"product": ("p.png", buf.getvalue(), "image/png")},
                              data={"spec": orjson.dumps(spec).decode()}) as r:
        events = read_events(r)
    assert kinds(events) == ["queued", "started", "partial", "completed"]
    p = next(d for k, d in events if k == "partial")
    img = Image.open(io.BytesIO(base64.b64decode(p["b64_json"]))).convert("RGB")
    assert img.size == (32, 32)  # the fake engine's 1/8 preview of 256²
    r_, g, b = img.getpixel((16, 16))
    assert r_ > 120 and g < 90 and b < 90, (r_, g, b)  # the red product, placed in the middle
    corner = img.getpixel((1, 1))
    assert corner[0] < 90 and abs(corner[0] - corner[1]) < 20  # the fake's dark grey around it


def test_preset_only_render_streams_a_composed_preview(server):
    """A product on a preset's plain colour needs no engine image, so no engine preview: the
    stream still sends one coarse partial, the product composed at 1/4 on the preset's white
    (not the photo, not nothing), before the final."""
    photo = Image.new("RGB", (240, 240), (120, 140, 160))  # a blue-grey backdrop in the photo
    photo.paste((200, 30, 40), (80, 50, 160, 200))
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    spec = {"preset": "amazon", "prompt": "product"}
    with server.client.stream("POST", "/v1/render?stream=true&partial_images=1",
                              files={"product": ("p.png", buf.getvalue(), "image/png")},
                              data={"spec": orjson.dumps(spec).decode()}) as r:
        assert r.status_code == 200, r.read()
        events = read_events(r)
    assert kinds(events) == ["queued", "started", "partial", "completed"], kinds(events)
    p = next(d for k, d in events if k == "partial")
    img = Image.open(io.BytesIO(base64.b64decode(p["b64_json"]))).convert("RGB")
    assert img.size == (500, 500)  # amazon's 2000² at 1/4
    arr = np.asarray(img).astype(int)
    red = (arr[..., 0] > 150) & (arr[..., 1] < 90) & (arr[..., 2] < 100)
    ys, xs = np.nonzero(red)
    assert len(ys), "no product in the preview"
    assert abs((ys.min() + ys.max()) / 2 - 250) < 20 and abs((xs.min() + xs.max()) / 2 - 250) < 20
    assert (ys.max() - ys.min()) / 500 > 0.8  # placed and filled by the preset
    assert (arr[:8, :8] == 255).all()  # on the preset's pure white, not the photo's backdrop
    final = events[-1][1]
    assert final["compliance"]["preset"] == "amazon"
    # no partial asked: none sent
    with server.client.stream("POST", "/v1/render?stream=true&partial_images=0",
                              files={"product": ("p.png", buf.getvalue(), "image/png")},
                              data={"spec": orjson.dumps({**spec, "seed": 3}).decode()}) as r:
        assert "partial" not in kinds(read_events(r))


def test_deadline_after_queued_is_an_error_event_with_retry_after(tmp_path):
    from tests.api.conftest import start_server

    s = start_server(tmp_path / "var", env={"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "2",
                                            "SWIFTSHOT_ENGINE__FAKE__STEPS": "10"})
    try:
        with s.client.stream("POST", "/v1/render?stream=true&partial_images=0",
                             json={"prompt": "too slow", "size": "64x64"},
                             headers={"X-Deadline-Ms": "600"}) as r:
            assert r.status_code == 200
            events = read_events(r)
    finally:
        s.stop()
    assert kinds(events)[0] == "queued" and kinds(events)[-1] == "error"
    err = events[-1][1]
    assert err["status"] == 503 and err["error"]["code"] == "deadline"
    assert err["retry_after"] >= 1
