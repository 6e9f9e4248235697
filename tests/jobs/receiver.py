"""A real loopback HTTP server that records webhook deliveries (and can fail on purpose)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    fail_first: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    got: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __enter__(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.deliveries.append(Delivery(dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()
                outer.got.set()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
