"""The seller's page at ``GET /`` in a real headless Chromium against a real ``swiftshot serve``.

Photos go in through the page's own file input (CDP sets the files, as the picker would), every
click and key press is real input, and what is checked is what a seller sees and gets: each
item's state and words, the image the browser decoded, the marketplace check beside it (held
against ``presets.check`` run here on the very bytes the server serves), the ``<picture>``
snippet's URLs (fetched), and the zip the browser saved (CRC-checked, byte-compared).

``SWIFTSHOT_WEB_SCREENSHOTS=docs/webapp`` saves a screenshot of each state there.
"""

from __future__ import annotations

import io
import os
import re
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from swiftshot.ops.presets import BUILTIN_PRESETS, check
from tests.web.conftest import API_KEY, MAX_UPLOAD, PRODUCTS

# servers and a browser start: ~20 s for the file on 2 busy cores
pytestmark = pytest.mark.slow

ITEMS = """[...document.querySelectorAll('#items .item')].map(e => ({
  name: e.querySelector('h2').innerText, cls: e.className, state: e.querySelector('.state').innerText,
  msg: e.querySelector('.msg').hidden ? '' : e.querySelector('.msg').innerText,
  waits: +(e.dataset.waits || 0), rules: e.querySelectorAll('table.rules tbody tr').length}))"""
SETTLED = f"""(() => {{ const it = {ITEMS};
  return it.length && it.every(i => i.cls.includes('failed') || (i.cls.includes('done') && i.state.startsWith('Done')
    && i.rules)) ? it : null; }})()"""


def shoot(page, tmp_path: Path, name: str) -> None:
    shot = page.screenshot(tmp_path / f"{name}.png")
    if dest := os.environ.get("SWIFTSHOT_WEB_SCREENSHOTS"):
        Path(dest).mkdir(parents=True, exist_ok=True)
        # a palette PNG: a screenshot of flat UI loses nothing visible and shrinks ~3x
        with Image.open(shot) as im:
            im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(
                Path(dest) / f"{name}.png", optimize=True)


def rules_of(page, name: str) -> list[list[str]]:
    return page.eval(f"""[...[...document.querySelectorAll('#items .item')].find(
        e => e.querySelector('h2').innerText === {name!r}).querySelectorAll('table.rules tbody tr')]
        .map(tr => [...tr.cells].map(c => c.innerText.trim()))""")


def test_batch_flow_with_check_snippet_compare_and_zip(page, web_server, photos, tmp_path):
    shoot(page, tmp_path, "01-empty")
    assert page.eval("document.querySelector('#go').disabled")
    # the presets come from GET /v1/presets, not from the page
    names = page.eval("[...document.querySelector('#preset').options].map(o => o.value)")
    listed = [p["name"] for p in web_server.client.get("/v1/presets").json()["presets"]]
    assert {"amazon", "shopify", "etsy", "google-merchant"} <= set(listed)
    assert names == listed
    page.select("#preset", "amazon")

    files = [photos[n] for n in PRODUCTS] + [photos["pdf"], photos["big"]]
    page.set_files("#files", files)
    page.wait_for("document.querySelectorAll('#items .item').length === 5")
    shoot(page, tmp_path, "02-added")
    page.click("#go")
    # at most three in flight at once: the others wait their turn
    first = page.eval(ITEMS)
    assert sum(i["state"] == "Waiting" for i in first) >= 2, first
    page.wait_for(f"{ITEMS}.some(i => i.cls.includes('done'))", timeout=60)
    shoot(page, tmp_path, "05-working")
    items = {i["name"]: i for i in page.wait_for(SETTLED, timeout=120)}
    shoot(page, tmp_path, "06-done")

    # the refused files say why in words, and the rest of the batch went on
    pdf, big = items[photos["pdf"].name], items[photos["big"].name]
    assert "failed" in pdf["cls"] and "415" in pdf["msg"] and "PDF" in pdf["msg"], pdf
    size_mb = f"{photos['big'].stat().st_size / 1048576:.1f} MB"
    assert big["msg"] == (f"Too big: this file is {size_mb}; the server takes photos up to "
                          f"{MAX_UPLOAD / 1048576:.1f} MB. (HTTP 413)"), big
    summary = page.eval("document.getElementById('summary').innerText")
    assert summary.startswith("5 photos: 3 done") and "2 failed" in summary, summary

    client = web_server.client
    for name in PRODUCTS:
        item = items[f"{name}.jpg"]
        assert "done" in item["cls"], item
        info = page.eval(f"""(() => {{ const e = [...document.querySelectorAll('#items .item')].find(
            e => e.querySelector('h2').innerText === '{name}.jpg'), a = e.querySelector('.after'), d = e.querySelector('.dl');
            return {{w: a.naturalWidth, h: a.naturalHeight, blur: getComputedStyle(a).filter, href: d.href,
                     file: d.download, snippet: e.querySelector('.snippet textarea').value}}; }})()""")
        assert (info["w"], info["h"]) == (2000, 2000) and info["blur"] == "none", info
        assert info["href"].startswith("blob:") and info["file"] == f"{name}-amazon.jpg", info

        # the check beside it is presets.check on the served bytes, rule by rule
        key = re.search(r"/i/([0-9a-f]{64})\.avif", info["snippet"]).group(1)
        served = client.get(f"/i/{key}.jpg?q=88")
        assert served.status_code == 200
        with Image.open(io.BytesIO(served.content)) as im:
            im.load()
            want = check(im, BUILTIN_PRESETS["amazon"], file_format=im.format)
        got = rules_of(page, f"{name}.jpg")
        assert got == [["PASS" if r.passed else "FAIL", r.rule.replace("_", " "), r.measured, r.required]
                       for r in want], (got, want)

        # the <picture> snippet: three formats, srcset widths, size, lazy, inline placeholder
        snip = info["snippet"]
        assert snip.startswith("<picture>") and snip.rstrip().endswith("</picture>")
        assert 'type="image/avif"' in snip and 'type="image/webp"' in snip
        assert 'width="2000" height="2000"' in snip and 'loading="lazy"' in snip
        placeholder = re.search(r"url\((data:image/(webp|jpeg);base64,[A-Za-z0-9+/=]+)\)", snip)
        assert placeholder and len(placeholder.group(1)) < 1200, snip[-400:]
        for ext, mime in (("avif", "image/avif"), ("webp", "image/webp"), ("jpg", "image/jpeg")):
            urls = re.findall(rf"(http://[^ \"]+/i/{key}\.{ext}\?w=(\d+)) \d+w", snip)
            assert [int(w) for _, w in urls] == [480, 960, 1600, 2000], (ext, urls)
            r = client.get(urls[0][0])
            assert r.status_code == 200 and r.headers["content-type"] == mime
            with Image.open(io.BytesIO(r.content)) as im:
                assert im.width == 480

    # compare before/after from the keyboard: the original slides in from the left
    page.eval("document.querySelector('#items .item.done .compare input').focus()")
    for _ in range(5):
        page.press("ArrowRight", key_code=39)
    cut = page.eval("""(() => { const s = document.querySelector('#items .item.done .stage');
        return [s.style.getPropertyValue('--cut'), s.classList.contains('cmp'),
                getComputedStyle(s.querySelector('.before')).clipPath]; })()""")
    assert cut[0] == "5%" and cut[1] and "95%" in cut[2], cut
    for _ in range(45):  # half way, for the screenshot
        page.press("ArrowRight", key_code=39)
    shoot(page, tmp_path, "07-compare")

    # download all: the zip the browser saved holds each finished image, byte for byte
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.allow_downloads(downloads)
    page.click("#zip")
    end = time.monotonic() + 30
    while not (done := [p for p in downloads.glob("*.zip")]) and time.monotonic() < end:
        time.sleep(0.1)
    assert done, list(downloads.iterdir())
    time.sleep(0.3)  # the download's rename is the last step
    zpath = downloads / "swiftshot-amazon.zip"
    with zipfile.ZipFile(zpath) as z:
        assert z.testzip() is None  # every CRC-32 right
        assert sorted(z.namelist()) == sorted(f"{n}-amazon.jpg" for n in PRODUCTS)
        for n in PRODUCTS:
            href = page.eval(f"""[...document.querySelectorAll('#items .item')].find(
                e => e.querySelector('h2').innerText === '{n}.jpg').querySelector('.snippet textarea').value""")
            key = re.search(r"/i/([0-9a-f]{64})\.avif", href).group(1)
            assert z.read(f"{n}-amazon.jpg") == client.get(f"/i/{key}.jpg?q=88").content
    assert page.errors() == []


def test_api_key_and_busy_server(browser, auth_server, photos, tmp_path):
    """Auth on: without a key every item says so; with it (kept for the tab) the batch goes
    through a rate limit of 1 request/s, each 429 waited out as its Retry-After says."""
    browser.events.clear()
    browser.goto(auth_server.url + "/")
    browser.wait_for("document.querySelector('#preset').options.length > 2")
    browser.set_files("#files", [photos[n] for n in PRODUCTS])
    browser.click("#go")
    items = browser.wait_for(SETTLED, timeout=60)
    refused = auth_server.client.post("/v1/render", json={"preset": "amazon"})
    assert refused.status_code == 401
    for i in items:
        assert "failed" in i["cls"] and "API key needed" in i["msg"] and "401" in i["msg"], i
        assert refused.json()["error"]["message"] in i["msg"]
    shoot(browser, tmp_path, "09-api-key-needed")

    browser.click("details.key summary")  # the field is folded away until asked for
    browser.type("#key", API_KEY)
    assert browser.eval("sessionStorage.getItem('swiftshot-key')") == API_KEY
    browser.goto(auth_server.url + "/")  # kept for the tab: a reload keeps it
    assert browser.eval("document.querySelector('#key').value") == API_KEY
    browser.wait_for("document.querySelector('#preset').options.length > 2")
    browser.set_files("#files", [photos[n] for n in PRODUCTS])
    browser.click("#go")
    seen_busy = None
    end = time.monotonic() + 120
    while time.monotonic() < end:
        now = browser.eval(ITEMS)
        busy = [i for i in now if i["state"].startswith("Server busy")]
        if busy and seen_busy is None:
            seen_busy = busy[0]["state"]
            shoot(browser, tmp_path, "10-busy-retrying")
        if browser.eval(SETTLED):
            break
        time.sleep(0.1)
    items = browser.eval(SETTLED)
    assert items and all("done" in i["cls"] and i["rules"] for i in items), items
    # 3 renders + 3 checks at 1 request/s, burst 2: some had to wait, none was lost
    assert sum(i["waits"] for i in items) >= 1, items
    assert seen_busy and re.fullmatch(r"Server busy · retrying in \d+ s", seen_busy), seen_busy
    assert browser.errors() == []


def test_dropped_files_and_the_fifty_photo_cap(page, photos):
    """Files dropped on the zone (a real CDP drag with files) are added like picked ones; past
    50 the rest are refused in words, and nothing is sent until the seller presses the button."""
    box = page.eval("""(() => { const r = document.querySelector('#drop').getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
    data = {"items": [], "files": [str(photos["bottle_white_sweep"]), str(photos["pdf"])],
            "dragOperationsMask": 1}
    for kind in ("dragEnter", "dragOver", "drop"):
        page.send("Input.dispatchDragEvent", type=kind, x=box[0], y=box[1], data=data)
    page.wait_for("document.querySelectorAll('#items .item').length === 2")
    names = page.eval("[...document.querySelectorAll('#items h2')].map(h => h.innerText)")
    assert names == ["bottle_white_sweep.jpg", "price-list.pdf"]
    assert page.eval("document.getElementById('summary').innerText") == "2 photos: 0 done"

    page.set_files("#files", [photos["box_gradient"]] * 49)
    page.wait_for("document.querySelectorAll('#items .item').length === 50")
    summary = page.eval("document.getElementById('summary').innerText")
    assert summary == "50 photos: 0 done · 1 more refused: at most 50 photos at once", summary
    assert page.eval("document.querySelectorAll('#items .item.waiting').length") == 50
    page.click("#clear")
    assert page.eval("document.querySelectorAll('#items .item').length") == 0
    assert page.eval("document.activeElement.id") == "files"  # focus back on the picker
    assert page.errors() == []
