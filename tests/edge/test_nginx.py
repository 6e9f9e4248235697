"""deploy/nginx/swiftshot.conf, run by a real nginx in front of a real ``swiftshot serve``.

Whether nginx answered from its cache is read from the origin's own request counter (scraped
from the origin directly), not from timings or from nginx's word alone.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from swiftshot.testing.nginx import TEMPLATE, NginxProc, render_site, start_nginx
from tests.api.conftest import Server, start_server

pytestmark = pytest.mark.nginx

MAX_BODY = 1024 * 1024
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,*/*"
OLD_FIREFOX = "image/webp,*/*"
ROUTE = "/i/{name}"


@pytest.fixture(scope="module")
def origin(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("origin") / "var", engine="studio",
                     env={"SWIFTSHOT_SERVER__MAX_BODY_BYTES": str(MAX_BODY)})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def proxy(origin, tmp_path_factory):
    p = start_nginx(tmp_path_factory.mktemp("nginx"), [origin.url.removeprefix("http://")],
                    max_body_bytes=MAX_BODY)
    yield p
    p.stop()
    assert "[emerg]" not in p.error_log() and "[alert]" not in p.error_log()


@pytest.fixture(scope="module")
def edge(proxy):
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def generated(edge):
    """An image made through the edge: (its webp URL path with query, its key)."""
    r = edge.post("/v1/images/generations", json={
        "model": "studio", "prompt": "pale terracotta plaster wall, soft window light",
        "size": "256x256", "response_format": "url", "output_format": "webp", "seed": 5})
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    # The origin builds the URL from the Host nginx passed on: it points at the edge.
    base = str(edge.base_url).rstrip("/")
    assert url.startswith(f"{base}/i/"), url
    path = url.removeprefix(base)
    key = path.split("/")[2].split(".")[0]
    assert len(key) == 64
    return path, key


def deliveries(origin: Server) -> float:
    return origin.metric("swiftshot_request_duration_seconds_count", route=ROUTE)


def answered(origin: Server) -> float:
    """Responses the origin sent, but for its /metrics (each scrape is one)."""
    text = origin.client.get("/metrics").text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == "swiftshot_responses_total" and s.labels.get("route") != "/metrics")


def settled(read: Callable[[], float], at_least: float, timeout: float = 5.0) -> float:
    """``read()`` once it reaches ``at_least`` and then holds still: the origin counts a request
    just after sending its response, so a scrape straight after can be a moment early."""
    end = time.monotonic() + timeout
    value = read()
    while value < at_least and time.monotonic() < end:
        time.sleep(0.02)
        value = read()
    time.sleep(0.1)  # anything more (what the assertion looks for) would land by now
    return read()


def test_miss_then_hit_reaches_the_origin_once(edge, origin, generated):
    path, _ = generated
    before = deliveries(origin)
    first = edge.get(path)
    assert first.status_code == 200, first.text
    assert first.headers["x-cache-status"] == "MISS"
    second = edge.get(path)
    assert second.status_code == 200 and second.headers["x-cache-status"] == "HIT"
    assert second.content == first.content
    assert settled(lambda: deliveries(origin), before + 1) == before + 1, \
        "the HIT must not have reached the origin"

    direct = origin.client.get(path)
    assert second.headers["etag"] == direct.headers["etag"]
    assert second.content == direct.content
    assert "immutable" in second.headers["cache-control"]
    assert second.headers["cache-control"] == direct.headers["cache-control"]
    assert second.headers["content-type"] == "image/webp"
    assert "content-encoding" not in second.headers, "images are not gzipped again"
    Image.open(io.BytesIO(second.content), formats=["WEBP"]).verify()


def test_if_none_match_is_answered_by_the_edge(edge, origin, generated):
    path, _ = generated
    etag = edge.get(path).headers["etag"]  # cached (a MISS here if run alone)
    before = settled(lambda: deliveries(origin), 0)
    r = edge.get(path, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["x-cache-status"] == "HIT" and r.headers["etag"] == etag
    stale = edge.get(path, headers={"If-None-Match": '"not-this-one"'})
    assert stale.status_code == 200 and stale.headers["etag"] == etag
    assert settled(lambda: deliveries(origin), before) == before


def test_negotiated_url_is_cached_per_format_family(edge, origin, generated):
    _, key = generated
    path = f"/i/{key}"
    before = deliveries(origin)
    avif = edge.get(path, headers={"Accept": CHROME})
    webp = edge.get(path, headers={"Accept": OLD_FIREFOX})
    assert (avif.status_code, webp.status_code) == (200, 200)
    assert avif.headers["x-cache-status"] == webp.headers["x-cache-status"] == "MISS"
    assert avif.headers["content-type"] == "image/avif"
    assert webp.headers["content-type"] == "image/webp"

    # Another browser string in the same family is the same entry, not a new one.
    for accept, media, fmt, body in ((FIREFOX, "image/avif", "AVIF", avif.content),
                                     (CHROME, "image/avif", "AVIF", avif.content),
                                     (OLD_FIREFOX, "image/webp", "WEBP", webp.content)):
        hit = edge.get(path, headers={"Accept": accept})
        assert hit.headers["x-cache-status"] == "HIT", accept
        assert hit.headers["content-type"] == media, accept
        assert hit.content == body
        assert "Accept" in hit.headers["vary"], "Vary still tells browsers and CDNs beyond"
        Image.open(io.BytesIO(hit.content), formats=[fmt]).verify()
    assert settled(lambda: deliveries(origin), before + 2) == before + 2

    jpeg = edge.get(path, headers={"Accept": "*/*"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    refused = edge.get(path, headers={"Accept": "application/json"})
    assert refused.status_code == 406 and refused.headers.get("x-cache-status") != "HIT"


def test_client_hints_are_part_of_the_key(edge, origin, generated):
    path, _ = generated
    full = edge.get(path)
    before = settled(lambda: deliveries(origin), 0)
    lean = edge.get(path, headers={"Save-Data": "on"})
    assert lean.headers["x-cache-status"] == "MISS", "a Save-Data viewer must not get the full file"
    assert lean.headers["etag"] != full.headers["etag"]
    assert len(lean.content) < len(full.content)
    narrow = edge.get(path, headers={"Sec-CH-Width": "100"})
    assert narrow.headers["x-cache-status"] == "MISS"
    assert Image.open(io.BytesIO(narrow.content), formats=["WEBP"]).size == (128, 128)
    assert edge.get(path, headers={"Save-Data": "on"}).headers["x-cache-status"] == "HIT"
    again = edge.get(path, headers={"Sec-CH-Width": "100"})
    assert again.headers["x-cache-status"] == "HIT" and again.content == narrow.content
    assert settled(lambda: deliveries(origin), before + 2) == before + 2


def test_metrics_are_not_served_at_the_edge(edge, origin):
    r = edge.get("/metrics")
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error"
    assert edge.get("/metrics/").status_code == 403
    assert origin.client.get("/metrics").status_code == 200


def test_body_over_the_limit_is_refused_by_the_edge(edge, origin):
    responses = answered(origin)
    big = b"x" * (MAX_BODY + 1)
    r = edge.post("/v1/images/generations", content=big,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    r = edge.post("/v1.0/removebg", content=big, headers={"Content-Type": "image/png"})
    assert r.status_code == 413

    # Just under the limit crosses to the origin, which judges the (bad) body itself; once that
    # one is counted, the two refused above would have been too had they reached the origin.
    r = edge.post("/v1/images/generations", content=b"x" * (MAX_BODY - 1024),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert settled(lambda: answered(origin), responses + 1) == responses + 1, \
        "nginx refused the large bodies, not the origin"


def test_concurrent_misses_reach_the_origin_once(edge, origin, generated):
    _, key = generated
    path = f"/i/{key}.avif?q=41"  # a variant nobody asked for yet: an AVIF encode takes a while
    before = deliveries(origin)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: edge.get(path), range(8)))
    assert all(r.status_code == 200 for r in got)
    assert len({r.content for r in got}) == 1
    assert settled(lambda: deliveries(origin), before + 1) == before + 1, \
        [r.headers["x-cache-status"] for r in got]


def test_removing_the_cache_file_purges_an_image_at_the_edge(edge, proxy: NginxProc, origin,
                                                             generated):
    """The README's purge recipe: the file whose KEY line names the URL goes, the next GET is a
    MISS (not an error), and other entries stay."""
    _, key = generated
    path = f"/i/{key}.png"
    edge.get(path)
    assert edge.get(path).headers["x-cache-status"] == "HIT"
    files = [f for f in (proxy.prefix / "cache").rglob("*") if f.is_file()
             and f"KEY: {path}|".encode() in f.read_bytes()]
    assert len(files) == 1, files
    files[0].unlink()
    again = edge.get(path)
    assert again.status_code == 200 and again.headers["x-cache-status"] == "MISS"
    assert edge.get(path).headers["x-cache-status"] == "HIT"


def test_render_swaps_only_the_marked_values(tmp_path):
    text = TEMPLATE.read_text()
    out = render_site(text, origins=["127.0.0.1:1111", "127.0.0.1:2222"], port=3333,
                      cache_dir=tmp_path / "c", access_log=tmp_path / "a.log", max_body_bytes=4096)
    changed = [line for line in text.splitlines() if line not in out.splitlines()]
    assert changed and all("(test:" in line for line in changed), changed
    assert out.count("server 127.0.0.1:1111 max_fails=3") == 2  # both upstreams, params kept
    assert out.count("server 127.0.0.1:2222 max_fails=3") == 2
    assert "listen 127.0.0.1:3333;" in out and "client_max_body_size 4096;" in out
    assert f"proxy_cache_path {tmp_path / 'c'} " in out
    with pytest.raises(ValueError, match="listen 80"):
        render_site(text.replace("listen 80;", "listen 8080;"), origins=["127.0.0.1:1"], port=1,
                    cache_dir=Path("/tmp/c"), access_log=Path("/tmp/a"))
