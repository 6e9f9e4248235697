"""A real ``swiftshot serve`` (studio engine) and a real headless Chromium for the page tests."""

from __future__ import annotations

import pytest

from swiftshot.testing.browser import chromium, find_chromium
from swiftshot.testing.services import missing_service
from tests.api.conftest import start_server


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("web") / "var", engine="studio")
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
    return browser


API_KEY = "sk-web-0123456789"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """A server that refuses renders without an API key (images stay public by their key)."""
    d = tmp_path_factory.mktemp("web-auth")
    (d / "keys.toml").write_text(f'[keys."{API_KEY}"]\ntenant = "web"\ntier = "realtime"\n')
    s = start_server(d / "var", engine="studio",
                     env={"SWIFTSHOT_AUTH__API_KEYS_FILE": str(d / "keys.toml")})
    yield s
    s.stop()
