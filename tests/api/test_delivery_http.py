"""/i/ delivery on a real studio-engine server: ETag/304, negotiation, Client Hints, purges."""

from __future__ import annotations

import io

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def studio(studio_server):
    return studio_server


@pytest.fixture(scope="module")
def key(studio):
    r = studio.client.post("/v1/render", json={"prompt": "sage green plaster wall, soft shadow",
                                                "size": "512x512", "seed": 11,
                                                "tags": ["sku-42"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["urls"]) == {"png", "jpeg", "webp", "avif"}
    return body["key"]


def test_immutable_with_etag_and_304(studio, key):
    r = studio.client.get(f"/i/{key}.webp")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    etag = r.headers["etag"]
    assert etag.startswith('"') and len(etag) > 10
    again = studio.client.get(f"/i/{key}.webp", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    other = studio.client.get(f"/i/{key}.webp", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == r.content
    jpg = studio.client.get(f"/i/{key}.jpg")
    assert jpg.headers["etag"] != etag, "the ETag is of the bytes, so each format has its own"
    assert "Accept" not in r.headers.get("vary", ""), "a URL with an extension does not vary on Accept"


@pytest.mark.parametrize("accept,expected", [
    ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "image/avif"),  # Chrome
    ("image/webp,*/*", "image/webp"),  # older Firefox
    ("image/avif;q=0.5,image/webp;q=0.9,image/jpeg", "image/jpeg"),  # q-values win over order
    ("image/png", "image/png"),
    ("*/*", "image/jpeg"),
])
def test_accept_negotiation(studio, key, accept, expected):
    r = studio.client.get(f"/i/{key}", headers={"Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"] == expected
    fmt = expected.split("/")[1].upper()
    Image.open(io.BytesIO(r.content), formats=[fmt]).verify()
    assert "Accept" in r.headers["vary"]
    assert "Save-Data" in r.headers["accept-ch"] and "Width" in r.headers["accept-ch"]


def test_save_data_and_slow_network_get_smaller_variants(studio, key):
    full = studio.client.get(f"/i/{key}.webp")
    lean = studio.client.get(f"/i/{key}.webp", headers={"Save-Data": "on"})
    slow = studio.client.get(f"/i/{key}.webp", headers={"ECT": "2g"})
    assert lean.status_code == slow.status_code == 200
    assert len(lean.content) < 0.9 * len(full.content), (len(lean.content), len(full.content))
    assert len(slow.content) < 0.9 * len(full.content)
    assert lean.headers["etag"] != full.headers["etag"]
    assert "Save-Data" in full.headers["vary"]


def test_width_hint_resizes_and_each_variant_is_encoded_once(studio, key):
    before = studio.metric("swiftshot_cache_requests_total", tier="memory", result="hit")
    r = studio.client.get(f"/i/{key}.jpg", headers={"Sec-CH-Width": "300"})
    im = Image.open(io.BytesIO(r.content), formats=["JPEG"])
    assert im.size == (320, 320)  # rounded up to the ladder, not wider than the master
    r2 = studio.client.get(f"/i/{key}.jpg", headers={"Width": "310"})
    assert r2.content == r.content and r2.headers["etag"] == r.headers["etag"]
    after = studio.metric("swiftshot_cache_requests_total", tier="memory", result="hit")
    assert after > before  # the second ask was a cache hit, not a second encode
    big = studio.client.get(f"/i/{key}.jpg", headers={"Width": "4000"})
    assert Image.open(io.BytesIO(big.content), formats=["JPEG"]).size == (512, 512)
    explicit = studio.client.get(f"/i/{key}.png?w=128")
    assert Image.open(io.BytesIO(explicit.content), formats=["PNG"]).size == (128, 128)


def test_render_returns_bytes_when_accept_asks_for_an_image(studio):
    body = {"prompt": "sage green plaster wall, soft shadow", "size": "512x512", "seed": 11}
    r = studio.client.post("/v1/render", json=body, headers={"Accept": "image/webp,image/*"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["x-cache"] in ("memory", "miss") and "total;dur=" in r.headers["server-timing"]
    png = studio.client.post("/v1/render", json={**body, "output_format": "png"},
                             headers={"Accept": "image/*"})
    assert png.headers["content-type"] == "image/png"


def test_purge_by_key_and_by_tag(studio):
    a = studio.client.post("/v1/render", json={"prompt": "purge me", "size": "64x64",
                                                "tags": ["sku-7"]}).json()["key"]
    b = studio.client.post("/v1/render", json={"prompt": "purge me too", "size": "64x64",
                                                "tags": ["sku-7"]}).json()["key"]
    c = studio.client.post("/v1/render", json={"prompt": "keep me", "size": "64x64"}).json()["key"]
    assert studio.client.get(f"/i/{a}.webp").status_code == 200
    d = studio.client.delete(f"/v1/cache/{a}")
    assert d.status_code == 200 and d.json()["deleted"] >= 2  # master and its webp variant
    assert studio.client.get(f"/i/{a}.webp").status_code == 404
    t = studio.client.delete("/v1/cache/tags/sku-7")
    assert t.status_code == 200 and t.json()["deleted"] >= 1
    assert studio.client.get(f"/i/{b}.png").status_code == 404
    assert studio.client.get(f"/i/{c}.png").status_code == 200
