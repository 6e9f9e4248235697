"""The page at ``GET /`` in a real headless Chromium against a real ``swiftshot serve``.

The form is filled with real key and mouse input; what is checked is what a user would see: the
image actually decoded by the browser at the size asked for, the Server-Timing breakdown, and
the API's own words when it refuses the input.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image

# two servers and a browser start: ~15 s for the file on 2 busy cores, each test well under 10 s
pytestmark = pytest.mark.slow

IMG = """(() => { const i = document.querySelector('#out img');
  return i && i.complete && i.naturalWidth
    ? {src: i.getAttribute('src'), w: i.naturalWidth, h: i.naturalHeight} : null; })()"""
TIMINGS = """[...document.querySelectorAll('#timings tr')].map(
  tr => [tr.cells[0].innerText.trim(), tr.cells[1].innerText.trim()])"""
SETTLED = "!document.querySelector('#f button').disabled && document.getElementById('out').innerHTML"


def render(page, prompt: str, size: str, fmt: str) -> None:
    page.type("input[name=prompt]", prompt)
    page.type("input[name=size]", size)
    page.select("select[name=format]", fmt)
    page.click("#f button")


@pytest.mark.parametrize(("fmt", "size", "ext"), [("webp", "768x512", r"\.webp"),
                                                   ("", "512x640", "")])
def test_render_shows_image_and_timings(page, web_server, tmp_path, fmt, size, ext):
    render(page, "sage green paper sweep, soft light", size, fmt)
    img = page.wait_for(IMG, timeout=60)
    assert re.fullmatch(rf"(https?://[^/]+)?/i/[0-9a-f]{{64}}{ext}", img["src"]), img
    want_w, want_h = (int(v) for v in size.split("x"))
    assert (img["w"], img["h"]) == (want_w, want_h)

    # the bytes behind that URL are what the page claims: the format asked for, at that size
    r = web_server.client.get(img["src"], headers={"Accept": "image/avif,image/webp,*/*"})
    assert r.status_code == 200
    with Image.open(io.BytesIO(r.content)) as im:
        assert im.size == (want_w, want_h)
        if fmt:
            assert im.format == fmt.upper()

    rows = dict(page.eval(TIMINGS))
    ms = {k: float(re.fullmatch(r"([0-9.]+) ms", v).group(1)) for k, v in rows.items()}
    assert {"infer", "total"} <= ms.keys(), rows
    assert 0 < ms["infer"] <= ms["total"]
    assert page.eval("document.querySelector('aside .badge').innerText") in ("cache miss", "cache hit")
    page.wait_for("document.getElementById('load').innerText.endsWith('ms')")
    assert page.errors() == []

    shot = page.screenshot(tmp_path / "page.png")
    if fmt and (dest := os.environ.get("SWIFTSHOT_WEB_SCREENSHOT")):
        Path(dest).write_bytes(shot.read_bytes())


@pytest.mark.parametrize("size", ["1000x999", "12 by 12"])
def test_refused_input_shows_the_api_message(page, web_server, size):
    body = {"prompt": "sage green paper sweep", "size": size, "output_format": "webp"}
    api = web_server.client.post("/v1/render", json=body)
    assert api.status_code == 422
    message = api.json()["error"]["message"]

    render(page, body["prompt"], size, "webp")
    page.wait_for(SETTLED, timeout=30)
    err = page.eval("(() => { const e = document.querySelector('#out .err'); return e && e.innerText; })()")
    assert err is not None, page.eval("document.getElementById('out').innerText")
    assert "422" in err and message in err
    assert page.eval("document.querySelector('#out img')") is None
    assert page.errors() == []


def test_api_key_field_unlocks_a_server_with_auth(browser, auth_server):
    from tests.web.conftest import API_KEY

    browser.events.clear()
    browser.goto(auth_server.url + "/")
    render(browser, "linen backdrop", "512x512", "webp")
    browser.wait_for(SETTLED, timeout=30)
    refused = auth_server.client.post("/v1/render", json={"prompt": "linen backdrop", "size": "512x512"})
    assert refused.status_code == 401
    err = browser.eval("document.querySelector('#out .err').innerText")
    assert "401" in err and refused.json()["error"]["message"] in err

    browser.click("details summary")  # the field is folded away until asked for
    browser.type("input[name=key]", API_KEY)
    browser.click("#f button")
    img = browser.wait_for(IMG, timeout=60)
    assert re.fullmatch(r"(https?://[^/]+)?/i/[0-9a-f]{64}\.webp", img["src"])
    assert (img["w"], img["h"]) == (512, 512)
    assert browser.errors() == []
