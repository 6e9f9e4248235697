"""The page against the native stream (``POST /v1/render?stream=true``) of a real server whose
fake engine takes ~1.2 s in 4 steps: each photo's place in the queue, then a blurred preview
(the ``partial`` events) that sharpens, then the final, as a seller sees them in Chromium.

One inference thread, batches of one, three photos in flight: the second and third wait in
the queue, so their "ahead" / "Next in line" state is real, not staged.
"""

from __future__ import annotations

import base64
import io
import re
import time

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import start_server
from tests.web.conftest import PRODUCTS
from tests.web.test_page import SETTLED, shoot

pytestmark = pytest.mark.slow

SEEN = """[...document.querySelectorAll('#items .item')].map(e => {
  const a = e.querySelector('.after');
  return {state: e.querySelector('.state').innerText, done: e.classList.contains('done'),
          preview: (a.getAttribute('src') || '').startsWith('data:image/') ? a.className : '',
          blur: getComputedStyle(a).filter}; })"""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("web-stream") / "var", engine="fake",
                     env={"SWIFTSHOT_ENGINE__FAKE__STEPS": "4",
                          "SWIFTSHOT_ENGINE__FAKE__DELAY_S": "1.2",
                          "SWIFTSHOT_ENGINE__FAKE__FAIL_PROMPT": "molten",
                          # one photo per engine call: the others really wait in the queue
                          "SWIFTSHOT_SCHEDULER__MAX_BATCH_SIZE": "1"})
    yield s
    s.stop()


def test_queue_then_blurred_previews_then_the_final(browser, slow_server, photos, tmp_path):
    browser.events.clear()
    browser.goto(slow_server.url + "/")
    browser.wait_for("document.querySelector('#preset').options.length > 2")
    browser.select("#preset", "shopify")  # keeps the scene the engine paints
    browser.click("input[name=backdrop][value=scene]")
    assert not browser.eval("document.querySelector('#scene').disabled")
    browser.type("#scene", "sage green paper sweep, soft light")
    browser.set_files("#files", [photos[n] for n in PRODUCTS])
    browser.click("#go")

    states: list[set[str]] = [set() for _ in PRODUCTS]
    previews: list[set[str]] = [set() for _ in PRODUCTS]
    shots = set()
    end = time.monotonic() + 90
    while time.monotonic() < end:
        for i, s in enumerate(browser.eval(SEEN)):
            states[i].add(s["state"])
            if s["preview"] and not s["done"]:
                # a preview is on screen before the final, and it is blurred
                assert s["blur"].startswith("blur("), s
                previews[i].add(s["preview"])
            if s["state"].startswith(("In queue", "Next in line")) and "queued" not in shots:
                shots.add("queued")
                shoot(browser, tmp_path, "03-queued")
        if browser.eval(SETTLED):
            break
        time.sleep(0.05)
    items = browser.eval(SETTLED)
    assert items and all("done" in i["cls"] for i in items), items

    queued = [s for st in states for s in st if s.startswith(("In queue", "Next in line"))]
    assert any("ahead" in s for s in queued), states  # one engine thread: the others wait
    # seen on screen here, blurred, before the item was done (polling may miss one of two)
    assert all(previews), previews
    for i, name in enumerate(PRODUCTS):
        # the page's own record: both partial events shown, the first more blurred
        shown = browser.eval(f"document.querySelectorAll('#items .item')[{i}].dataset.previews")
        assert shown == "p0 p1", (name, shown, previews[i], states[i])
    # ... and the final replaced them, sharp, at the preset's size
    browser.wait_for("""[...document.querySelectorAll('#items .after')].every(
        a => getComputedStyle(a).filter === 'none')""", timeout=5)  # the unblur is a 0.35 s fade
    final = browser.eval("""[...document.querySelectorAll('#items .after')].map(a => [
        a.getAttribute('src').slice(0, 5), getComputedStyle(a).filter, a.naturalWidth, a.naturalHeight])""")
    assert final == [["blob:", "none", 2048, 2048]] * len(PRODUCTS), final
    assert browser.errors() == []


def test_studio_scene_preview_on_a_slow_link(browser, web_server, photos, tmp_path):
    """The studio engine's real coarse preview (a quarter-side render of the scene) is what the
    seller looks at while the final image comes down a slow link (~1.6 Mbit/s here)."""
    browser.events.clear()
    browser.goto(web_server.url + "/")
    browser.wait_for("document.querySelector('#preset').options.length > 2")
    browser.select("#preset", "etsy")
    browser.click("input[name=backdrop][value=scene]")
    browser.type("#scene", "warm oak table, golden hour")
    browser.send("Network.enable")
    browser.send("Network.emulateNetworkConditions", offline=False, latency=80,
                 downloadThroughput=200_000, uploadThroughput=10_000_000)
    try:
        browser.set_files("#files", [photos["bottle_white_sweep"]])
        browser.click("#go")
        shown = browser.wait_for("""(() => { const e = document.querySelector('#items .item'),
            a = e.querySelector('.after'); return !e.classList.contains('done')
            && (a.getAttribute('src') || '').startsWith('data:image/') && getComputedStyle(a).filter; })()""",
                                 timeout=60)
        assert shown.startswith("blur("), shown
        shoot(browser, tmp_path, "04-streamed-preview")
        # the preview is the whole image coarse: the product placed on the scene in Etsy's 4:3
        # frame (not the bare backdrop)
        src = browser.eval("document.querySelector('#items .after').getAttribute('src')")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            pv = np.asarray(im.convert("RGB")).astype(int)
        assert pv.shape[:2] == (562, 750), pv.shape  # 3000×2250 at 1/4
        centre = pv[140:420, 300:450]
        green = (centre[..., 1] > centre[..., 0] + 25) & (centre[..., 1] > centre[..., 2] + 10)
        assert green.mean() > 0.2, green.mean()  # the green bottle, in the middle
        edges = pv[:, :60]
        assert ((edges[..., 1] > edges[..., 0] + 25) & (edges[..., 1] > edges[..., 2] + 10)).mean() < 0.02
        items = browser.wait_for(SETTLED, timeout=90)
    finally:
        browser.send("Network.emulateNetworkConditions", offline=False, latency=0,
                     downloadThroughput=-1, uploadThroughput=-1)
    assert "done" in items[0]["cls"], items
    assert browser.eval("document.querySelector('#items .item').dataset.previews").startswith("p0")
    dims = browser.eval("[document.querySelector('#items .after').naturalWidth, document.querySelector('#items .after').naturalHeight]")
    assert dims == [3000, 2250]
    # the scene fills Etsy's 4:3 frame: no flat bars of padding at the sides
    key = re.search(r"/i/([0-9a-f]{64})\.avif", browser.eval(
        "document.querySelector('#items .snippet textarea').value")).group(1)
    with Image.open(io.BytesIO(web_server.client.get(f"/i/{key}.jpg").content)) as im:
        arr = np.asarray(im.convert("L"), np.float32)
    assert arr.shape == (2250, 3000)
    assert arr[:, :60].std() > 4 and arr[:, -60:].std() > 4, (arr[:, :60].std(), arr[:, -60:].std())
    shoot(browser, tmp_path, "08-scene-etsy-done")
    assert browser.errors() == []


def test_an_error_event_is_said_on_its_card(browser, slow_server, photos, tmp_path):
    """The engine fails mid-stream (the fake engine's fail_prompt): the stream's error event
    becomes words on the card, not a spinner that never ends."""
    browser.events.clear()
    browser.goto(slow_server.url + "/")
    browser.wait_for("document.querySelector('#preset').options.length > 2")
    browser.click("input[name=backdrop][value=scene]")
    browser.type("#scene", "molten lava floor")
    browser.set_files("#files", [photos["box_gradient"]])
    browser.click("#go")
    items = browser.wait_for(SETTLED, timeout=60)
    assert "failed" in items[0]["cls"], items
    assert items[0]["msg"].startswith("Server error: ") and "HTTP 5" in items[0]["msg"], items
    assert "fake engine failure" in items[0]["msg"], items
    assert browser.errors() == []
