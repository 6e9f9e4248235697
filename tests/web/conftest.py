"""Real ``swiftshot serve`` processes and a real headless Chromium for the page tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swiftshot.testing.browser import chromium, find_chromium
from swiftshot.testing.products import make_photo
from swiftshot.testing.services import missing_service
from tests.api.conftest import start_server

PRODUCTS = ("bottle_white_sweep", "box_gradient", "mug_handle_white_sweep")
MAX_UPLOAD = 1_500_000
"""The web server's upload limit: the test's noise PNG is over it, the product photos under."""


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("web") / "var", engine="studio",
                     env={"SWIFTSHOT_LIMITS__MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        missing_service("no chromium binary (Debian package chromium)")
    with chromium(binary, width=1280, height=860) as page:
        yield page


@pytest.fixture
def page(browser, web_server):
    """The tab on a freshly loaded ``/``, with the exceptions of earlier tests forgotten."""
    browser.events.clear()
    browser.goto(web_server.url + "/")
    browser.wait_for("document.querySelector('#preset').options.length > 2")  # presets loaded
    return browser


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """What a seller drops: three product photos, a PDF and a photo over the upload limit."""
    d = tmp_path_factory.mktemp("photos")
    out = {}
    for name in PRODUCTS:
        out[name] = d / f"{name}.jpg"
        make_photo(name, (640, 640)).image.save(out[name], "JPEG", quality=88)
    out["pdf"] = d / "price-list.pdf"
    out["pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n")
    out["big"] = d / "huge-scan.png"
    noise = np.random.default_rng(0).integers(0, 256, (800, 800, 3), np.uint8)
    Image.fromarray(noise).save(out["big"])
    assert out["big"].stat().st_size > MAX_UPLOAD
    return out


API_KEY = "sk-web-0123456789"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A server that refuses renders without an API key, and whose key is rate-limited hard
    enough (one request per second, burst 2) that a batch meets 429 + Retry-After."""
    d = tmp_path_factory.mktemp("web-auth")
    (d / "keys.toml").write_text(f'[keys."{API_KEY}"]\ntenant = "web"\ntier = "realtime"\n'
                                 "rate_per_s = 1\nburst = 2\n")
    s = start_server(d / "var", engine="studio",
                     env={"SWIFTSHOT_AUTH__API_KEYS_FILE": str(d / "keys.toml")})
    yield s
    s.stop()
