"""OpenAI-style streaming (generations and edits) against real servers, read by the official
``openai`` client (sync and async) and by a raw SSE parser (framing, order, the error event)."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.api.test_stream_render import read_events

FAKE = {"SWIFTSHOT_ENGINE__FAKE__DELAY_S": "0.3", "SWIFTSHOT_ENGINE__FAKE__STEPS": "4",
        "SWIFTSHOT_ENGINE__FAKE__FAIL_PROMPT": "explode"}


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    from tests.api.conftest import start_server

    s = start_server(tmp_path_factory.mktemp("oai-fake") / "var", env=FAKE)
    yield s
    s.stop()


def client(server, cls=openai.OpenAI):
    return cls(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def product_png(size=(240, 240), box=(70, 60, 170, 190)) -> bytes:
    """A red product on a light grey sweep: easy for the classical cutout."""
    im = Image.new("RGB", size, (236, 236, 232))
    im.paste((190, 30, 40), box)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_generate_stream_sync_partials_then_completed(fake_server):
    events = list(client(fake_server).images.generate(
        model="gpt-image-1", prompt="stream gen sync", size="128x128", stream=True,
        partial_images=2, output_format="webp", quality="high"))
    types = [e.type for e in events]
    assert types == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]
    for e in events[:2]:
        img = decode(e.b64_json)
        assert img.format == "WEBP" and e.size == f"{img.width}x{img.height}" == "16x16"
        assert e.output_format == "webp" and e.quality == "high" and e.background == "auto"
        assert e.created_at > 1_700_000_000
    done = events[-1]
    final = decode(done.b64_json)
    assert final.size == (128, 128) and done.size == "128x128" and final.format == "WEBP"
    assert done.usage.total_tokens == 0 and done.usage.input_tokens_details.text_tokens == 0


def test_generate_stream_async_with_studio(studio_server):
    async def run():
        c = client(studio_server, openai.AsyncOpenAI)
        stream = await c.images.generate(model="studio", prompt="sage green paper sweep",
                                         size="512x512", stream=True, partial_images=2)
        return [e async for e in stream]

    events = asyncio.run(run())
    # the studio engine's one preview: a coarse render at a quarter of each side
    assert [e.type for e in events] == ["image_generation.partial_image",
                                        "image_generation.completed"]
    preview, final = decode(events[0].b64_json), decode(events[1].b64_json)
    assert preview.size == (128, 128) and final.size == (512, 512)
    # a real coarse render of the same scene: close to the final, scaled down
    small = final.convert("RGB").resize((128, 128))
    diff = sum(abs(a - b) for a, b in zip(small.getpixel((64, 64)),
                                           preview.convert("RGB").getpixel((64, 64)), strict=True))
    assert diff < 60


def test_cache_hit_streams_the_final_at_once(fake_server):
    c = client(fake_server)
    first = c.images.generate(prompt="stream gen hit", size="64x64", response_format="b64_json")
    events = list(c.images.generate(prompt="stream gen hit", size="64x64", stream=True,
                                    partial_images=3))
    assert [e.type for e in events] == ["image_generation.completed"]
    assert events[0].b64_json == first.data[0].b64_json


def test_raw_sse_framing_order_and_error_event(fake_server):
    with httpx.Client(base_url=fake_server.url, timeout=30) as h:
        with h.stream("POST", "/v1/images/generations",
                      json={"prompt": "raw frames", "size": "64x64", "stream": True,
                            "partial_images": 1}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = read_events(r)
        assert [k for k, _ in events if k != ":"] == ["image_generation.partial_image",
                                                      "image_generation.completed"]
        with h.stream("POST", "/v1/images/generations",
                      json={"prompt": "please explode", "size": "64x64", "stream": True}) as r:
            assert r.status_code == 200  # it failed in the engine, after the stream opened
            events = read_events(r)
    kind, data = events[-1]
    assert kind == "error" and data["error"]["code"] == "engine_error"
    assert data["error"]["message"]
    with pytest.raises(openai.APIError, match="engine failed"):
        list(client(fake_server).images.generate(prompt="please explode again", size="64x64",
                                                 stream=True))


@pytest.mark.parametrize(("extra", "param"), [
    ({"partial_images": 4}, "partial_images"),
    ({"partial_images": -1}, "partial_images"),
    ({"n": 2}, "n"),
])
def test_bad_stream_requests_are_400(fake_server, extra, param):
    r = httpx.post(fake_server.url + "/v1/images/generations",
                   json={"prompt": "x", "size": "64x64", "stream": True, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    with pytest.raises(openai.BadRequestError):
        client(fake_server).images.generate(prompt="x", size="64x64", stream=True, **extra)


def test_edit_stream_sync_puts_the_product_in_the_scene(studio_server):
    events = list(client(studio_server).images.edit(
        image=("shoe.png", product_png(), "image/png"), prompt="oak table, golden hour",
        size="256x256", stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    final = decode(events[-1].b64_json).convert("RGB")
    assert final.size == (256, 256) and events[-1].usage.total_tokens == 0
    # the red product sits in the middle of a non-grey (oak, golden) scene
    r, g, b = final.getpixel((128, 128))
    assert r > 120 and g < 90 and b < 90, (r, g, b)
    cr, cg, cb = final.getpixel((6, 250))
    assert not (abs(cr - 236) < 8 and abs(cg - 236) < 8), "the photo's grey backdrop was kept"


def test_edit_async_plain_and_with_mask(studio_server):
    photo = product_png()
    mask = Image.new("RGBA", (240, 240), (0, 0, 0, 0))  # transparent: the scene goes here
    mask.paste((0, 0, 0, 255), (40, 40, 200, 200))  # keep a larger box than the red square
    buf = io.BytesIO()
    mask.save(buf, "PNG")

    async def run():
        c = client(studio_server, openai.AsyncOpenAI)
        plain = await c.images.edit(image=("p.png", photo, "image/png"),
                                    prompt="white marble, morning light", size="256x256")
        masked = await c.images.edit(image=("p.png", photo, "image/png"),
                                     mask=("m.png", buf.getvalue(), "image/png"),
                                     prompt="white marble, morning light", size="256x256")
        stream = await c.images.edit(image=("p.png", photo, "image/png"),
                                     prompt="white marble, morning light", size="256x256",
                                     stream=True, partial_images=1)
        events = [e async for e in stream]
        return plain, masked, events

    plain, masked, events = asyncio.run(run())
    # the same edit again, streamed: a cache hit, so the final at once (no partials), the
    # same image as the plain answer
    assert [e.type for e in events] == ["image_edit.completed"]
    assert events[0].b64_json == plain.data[0].b64_json
    a, b = decode(plain.data[0].b64_json), decode(masked.data[0].b64_json)
    assert a.size == b.size == (256, 256)
    # the mask kept a grey frame around the red square: the masked render differs
    assert a.tobytes() != b.tobytes()


def _edit_raw(server, files, data=None):
    return httpx.post(server.url + "/v1/images/edits", files=files,
                      data=data or {"prompt": "oak table"})


def test_edit_bad_input(fake_server):
    photo = product_png()
    r = _edit_raw(fake_server, {"mask": ("m.png", photo, "image/png")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    small = io.BytesIO()
    Image.new("RGBA", (100, 80), (0, 0, 0, 0)).save(small, "PNG")
    r = _edit_raw(fake_server, {"image": ("p.png", photo, "image/png"),
                                "mask": ("m.png", small.getvalue(), "image/png")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "mask"
    assert "100x80" in r.json()["error"]["message"] and "240x240" in r.json()["error"]["message"]
    r = _edit_raw(fake_server, {"image": ("p.png", photo, "image/png"),
                                "mask": ("m.png", photo, "image/png")})  # no alpha
    assert r.status_code == 400 and "alpha" in r.json()["error"]["message"]
    r = _edit_raw(fake_server, {"image": ("p.png", photo, "image/png")}, {"size": "64x64"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = _edit_raw(fake_server, {"image": ("p.png", photo, "image/png")},
                  {"prompt": "x", "stream": "true", "partial_images": "5"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "partial_images"
    r = _edit_raw(fake_server, {"image": ("p.pdf", b"%PDF-1.4 nope", "application/pdf")})
    assert r.status_code in (415, 422) and r.json()["error"]["param"] == "image"
    r = httpx.post(fake_server.url + "/v1/images/edits", json={"prompt": "x"})
    assert r.status_code == 415
    with pytest.raises(openai.BadRequestError, match="mask"):
        client(fake_server).images.edit(image=("p.png", photo, "image/png"),
                                        mask=("m.png", small.getvalue(), "image/png"),
                                        prompt="x", stream=True)
