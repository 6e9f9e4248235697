"""Every bad input gets a 4xx with OpenAI's error shape, naming what was wrong; never a 500."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

GEN = "/v1/images/generations"
JSON = {"Content-Type": "application/json"}
KEY = "0" * 64

CASES = [
    # (name, method, path, kwargs, status, param, words in the message)
    ("bad json", "POST", GEN, {"content": b"{prompt:", "headers": JSON}, 400, None, ["not valid JSON"]),
    ("empty body", "POST", GEN, {"content": b"", "headers": JSON}, 400, None, ["empty"]),
    ("json array", "POST", GEN, {"content": b"[1]", "headers": JSON}, 400, None, ["JSON object"]),
    ("wrong content type", "POST", GEN, {"content": b"prompt=x",
                                         "headers": {"Content-Type": "text/plain"}}, 415, None,
     ["application/json", "text/plain"]),
    ("missing prompt", "POST", GEN, {"json": {"n": 1}}, 400, "prompt", ["prompt"]),
    ("unknown field", "POST", GEN, {"json": {"prompt": "x", "colour": "red"}}, 400, "colour",
     ["colour", "allowed", "prompt"]),
    ("bad size", "POST", GEN, {"json": {"prompt": "x", "size": "1024"}}, 400, "size",
     ["WxH", "'1024'"]),
    ("size too big", "POST", GEN, {"json": {"prompt": "x", "size": "4096x4096"}}, 400, "size",
     ["2048", "4096"]),
    ("n too big", "POST", GEN, {"json": {"prompt": "x", "n": 11}}, 400, "n", ["between 1 and 10", "11"]),
    ("n zero", "POST", GEN, {"json": {"prompt": "x", "n": 0}}, 400, "n", ["greater than or equal to 1"]),
    ("unknown model", "POST", GEN, {"json": {"prompt": "x", "model": "midjourney"}}, 400, "model",
     ["midjourney", "fake"]),
    ("bad response_format", "POST", GEN, {"json": {"prompt": "x", "response_format": "gif"}}, 400,
     "response_format", ["url", "b64_json"]),
    ("bad output_format", "POST", GEN, {"json": {"prompt": "x", "output_format": "bmp"}}, 400,
     "output_format", ["png", "webp"]),
    ("compression on png", "POST", GEN, {"json": {"prompt": "x", "output_compression": 50}}, 400,
     "output_compression", ["png"]),
    ("transparent jpeg", "POST", GEN, {"json": {"prompt": "x", "output_format": "jpeg",
                                                "background": "transparent"}}, 400, "background",
     ["png, webp or avif"]),
    ("bad quality word", "POST", GEN, {"json": {"prompt": "x", "quality": "ultra"}}, 400, "quality",
     ["low", "hd"]),
    # checked by RenderSpec, not ImagesRequest: a route that built its spec without the
    # second validation would let them through
    ("bad category", "POST", GEN, {"json": {"prompt": "x", "category": "Big Sale"}}, 400,
     "category", ["category", "pattern"]),
    ("too many tags", "POST", GEN, {"json": {"prompt": "x", "tags": [str(i) for i in range(17)]}},
     400, "tags", ["tags", "16"]),
    ("stream_n", "POST", GEN, {"json": {"prompt": "x", "stream": True, "n": 2}}, 400, "n", ["stream", "n"]),
    ("bad priority", "POST", GEN, {"json": {"prompt": "x"}, "headers": {"X-Priority": "urgent"}},
     400, "X-Priority", ["realtime", "urgent"]),
    ("bad deadline", "POST", GEN, {"json": {"prompt": "x"}, "headers": {"X-Deadline-Ms": "soon"}},
     400, "X-Deadline-Ms", ["milliseconds"]),
    ("render extra field", "POST", "/v1/render", {"json": {"prompt": "x", "colour": 1}}, 422,
     "colour", ["unknown field 'colour'", "allowed"]),
    ("render bad width", "POST", "/v1/render", {"json": {"prompt": "x", "width": 100}}, 422,
     "width", ["multiple of 8"]),
    ("render other engine", "POST", "/v1/render", {"json": {"prompt": "x", "engine": "diffusion"}},
     422, "engine", ["diffusion", "fake"]),
    ("render unacceptable", "POST", "/v1/render", {"json": {"prompt": "x"},
                                                   "headers": {"Accept": "image/gif"}}, 406, None,
     ["image/gif"]),
    ("unknown route", "GET", "/v2/nothing", {}, 404, None, ["/v2/nothing"]),
    ("method not allowed", "GET", GEN, {}, 405, None, ["GET", "POST"]),
    ("unknown image key", "GET", f"/i/{KEY}.webp", {}, 404, "key", [KEY]),
    ("malformed image key", "GET", "/i/abc.webp", {}, 404, "key", ["abc"]),
    ("unknown extension", "GET", f"/i/{KEY}.gif", {}, 404, "ext", ["gif", "avif"]),
    ("bad q", "GET", f"/i/{KEY}.webp?q=0", {}, 400, "q", ["between 1 and 100"]),
    ("bad w", "GET", f"/i/{KEY}.webp?w=abc", {}, 400, "w", ["between 1 and 2048"]),
    ("purge bad key", "DELETE", "/v1/cache/xyz", {}, 400, "key", ["64 lower-case hex"]),
    ("purge unknown key", "DELETE", f"/v1/cache/{KEY}", {}, 404, "key", [KEY]),
    ("body too large", "POST", GEN, {"json": {"prompt": "x" * 70_000}}, 413, None, ["max_body_bytes"]),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,param,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_4xx_json(shared_server, name, method, path, kwargs, status, param, words):
    r = shared_server.client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] in ("invalid_request_error",)
    if param is not None:
        assert err["param"] == param
    for w in words:
        assert w in err["message"], (w, err["message"])


def test_streamed_body_over_limit_is_cut_off_with_413(shared_server):
    """No Content-Length (chunked): the server counts bytes as they come and stops at the limit."""
    def chunks():
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    r = shared_server.client.post(GEN, content=chunks(), headers=JSON)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]["message"]


def test_content_length_over_limit_refused_before_body_is_sent(shared_server):
    """413 comes back on the headers alone: the client never sends the 10 MB it announced."""
    u = urlsplit(shared_server.url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"POST /v1/render HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 10000000\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_server_still_healthy_after_the_table(shared_server):
    assert shared_server.client.get("/healthz").json() == {"status": "ok"}
    assert shared_server.metric("swiftshot_request_duration_seconds_count",
                                route="/v1/images/generations") > 0
    assert shared_server.metric("swiftshot_request_duration_seconds_count", route="/i/{name}") > 0


def test_web_page(shared_server):
    r = shared_server.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    # the seller's page: streamed renders, the check beside them, the presets from the server
    assert "/v1/render?stream=true" in r.text and "/v1/check" in r.text and "/v1/presets" in r.text
    assert len(r.content) < 40_000 and "<script src" not in r.text and "stylesheet" not in r.text
    assert "Save-Data" in r.headers["accept-ch"]
