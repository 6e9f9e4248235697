"""A real headless Chromium for tests, driven over the DevTools Protocol (CDP).

CDP over one websocket needs nothing beyond the ``websockets`` package uvicorn already pulls in,
and the distro's ``chromium``: no chromedriver, no browser download, no Selenium. Input goes
through ``Input.*`` (real key and mouse events, so the page's own handlers run as for a user).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from swiftshot.testing.services import stop_process

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# What runs as root in a container: no sandbox, no GPU, nothing phoning home mid-test.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")


class BrowserError(RuntimeError):
    """The browser failed to start, or a CDP command or page script failed."""


def find_chromium() -> str | None:
    for name in BINARIES:
        if path := shutil.which(name):
            return path
    return None


class Page:
    """One tab. Commands are synchronous; events that arrive meanwhile are kept in ``events``."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{method}: no answer within {timeout}s")
            msg = json.loads(self._ws.recv(timeout=left))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return dict(self.events.pop(i).get("params", {}))
            left = end - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {method} event within {timeout}s")
            self.events.append(json.loads(self._ws.recv(timeout=left)))

    def goto(self, url: str, timeout: float = 30.0) -> None:
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        res = self.send("Page.navigate", url=url)
        if res.get("errorText"):
            raise BrowserError(f"navigating to {url}: {res['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)

    def eval(self, expression: str) -> Any:
        """Value of a JS expression (promises awaited); a thrown error becomes BrowserError."""
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: {d.get('exception', {}).get('description') or d.get('text')}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; return its value."""
        end = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > end:
                raise BrowserError(f"{expression!r} still falsy after {timeout}s")
            time.sleep(interval)

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (scrolled into view first)."""
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return null; e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        if not box:
            raise BrowserError(f"no element {selector!r} to click")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left",
                      clickCount=1)

    def type(self, selector: str, text: str, *, clear: bool = True) -> None:
        """Focus an input and type ``text`` as key input (fires ``input`` events like a user)."""
        ok = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e) return false; e.focus(); if ({json.dumps(clear)}) e.select(); return true; }})()""")
        if not ok:
            raise BrowserError(f"no element {selector!r} to type into")
        self.send("Input.insertText", text=text)

    def select(self, selector: str, value: str) -> None:
        """Choose an option of a ``<select>`` as a user would (value set, ``change`` fired)."""
        ok = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            if (!e || ![...e.options].some(o => o.value === {json.dumps(value)})) return false;
            e.value = {json.dumps(value)};
            e.dispatchEvent(new Event("input", {{bubbles: true}}));
            e.dispatchEvent(new Event("change", {{bubbles: true}})); return true; }})()""")
        if not ok:
            raise BrowserError(f"no option {value!r} in {selector!r}")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """Choose files in an ``<input type=file>`` as the file picker would (``change`` fires)."""
        res = self.send("Runtime.evaluate", expression=f"document.querySelector({json.dumps(selector)})")
        obj = res.get("result", {}).get("objectId")
        if not obj:
            raise BrowserError(f"no element {selector!r} to set files on")
        self.send("DOM.enable")
        self.send("DOM.setFileInputFiles", files=[str(p) for p in paths], objectId=obj)

    def press(self, key: str, code: str | None = None, key_code: int = 0) -> None:
        """One key press (down + up) on the focused element, e.g. ``press("ArrowRight", key_code=39)``."""
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=code or key,
                      windowsVirtualKeyCode=key_code, nativeVirtualKeyCode=key_code)

    def allow_downloads(self, folder: Path) -> None:
        """Save downloads (an ``<a download>`` click) into ``folder``."""
        self.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(folder))

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                                "scale": 1})
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", **params)["data"]))
        return path

    def errors(self) -> list[str]:
        """Uncaught exceptions and console.error calls seen so far."""
        self.send("Runtime.evaluate", expression="0")  # drain what is already queued
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(d.get("exception", {}).get("description") or d.get("text", "?"))
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        return out


@contextmanager
def chromium(binary: str | None = None, *, width: int = 1280, height: int = 900,
             timeout: float = 30.0) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile and yield its first tab; kill it after."""
    binary = binary or find_chromium()
    if binary is None:
        raise BrowserError(f"no Chromium binary on PATH (looked for {', '.join(BINARIES)})")
    # ignore_cleanup_errors: a killed Chromium's helpers may still be writing into the profile
    with tempfile.TemporaryDirectory(prefix="swiftshot-chromium-", ignore_cleanup_errors=True) as profile:
        log = Path(profile) / "chromium.log"
        with log.open("wb") as log_f:
            proc = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={profile}/data", f"--window-size={width},{height}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
                stdout=log_f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            # port 0: Chromium picks a free one and writes it here (no race on a guessed port)
            port_file = Path(profile) / "data" / "DevToolsActivePort"
            end = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > end:
                    raise BrowserError(f"chromium did not open its DevTools port:\n{log.read_text()[-3000:]}")
                time.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=timeout).json()
            page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with connect(page_ws, max_size=None, proxy=None, open_timeout=timeout) as ws:
                page = Page(ws)
                for domain in ("Page", "Runtime"):
                    page.send(f"{domain}.enable")
                yield page
        finally:
            stop_process(proc, 10)
