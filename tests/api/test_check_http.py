"""``GET /v1/presets`` and ``POST /v1/check`` against a real server: the check over HTTP is the
check the CLI prints (same function, same rules, same measured values), and every bad input is
a 4xx JSON error that says what was wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.presets import BUILTIN_PRESETS, check
from swiftshot.testing.products import make_photo


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _amazon_like() -> bytes:
    """2000² pure white with a dark box filling 88% of the side: passes every amazon rule."""
    arr = np.full((2000, 2000, 3), 255, np.uint8)
    arr[120:1880, 300:1700] = (40, 60, 90)
    return _jpeg(Image.fromarray(arr), quality=95)


def _expected(data: bytes, preset: str) -> list[dict]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return [{"rule": r.rule, "passed": r.passed, "measured": r.measured, "required": r.required}
                for r in check(im, BUILTIN_PRESETS[preset], file_format=im.format)]


def test_presets_lists_every_builtin_with_its_rules(studio_server):
    r = studio_server.client.get("/v1/presets")
    assert r.status_code == 200
    d = r.json()
    assert d["engine"] == "studio"
    by = {p["name"]: p for p in d["presets"]}
    assert set(BUILTIN_PRESETS) <= set(by)
    assert by["amazon"]["label"] == "Amazon" and by["google-merchant"]["label"] == "Google Merchant"
    assert (by["etsy"]["width"], by["etsy"]["height"]) == (3000, 2250)
    assert "pure white border" in by["amazon"]["checks"] and "product fills >= 85%" in by["amazon"]["checks"]
    assert "product fills 75%-90%" in by["google-merchant"]["checks"]


@pytest.mark.parametrize("preset", ["amazon", "google-merchant"])
def test_check_passes_and_fails_with_the_measured_values(studio_server, preset):
    good = _amazon_like()
    r = studio_server.client.post("/v1/check", files={"image": ("a.jpg", good, "image/jpeg")},
                                  data={"preset": preset})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["rules"] == _expected(good, preset)
    assert (d["width"], d["height"], d["format"]) == (2000, 2000, "JPEG")
    assert d["passed"] is (preset == "amazon")  # google also wants the IPTC source type
    if preset == "google-merchant":
        assert d["failed"] == ["iptc_digital_source_type"]

    raw = _jpeg(make_photo("bottle_white_sweep", (640, 640)).image, quality=88)
    r = studio_server.client.post("/v1/check", files={"image": ("p.jpg", raw, "image/jpeg")},
                                  data={"preset": "amazon"})
    assert r.status_code == 200  # a failing rule is a report, not an error
    d = r.json()
    assert d["passed"] is False and "longest_side" in d["failed"]
    assert d["rules"] == _expected(raw, "amazon")
    assert d["rules"][0] == {"rule": "longest_side", "passed": False, "measured": "640 px",
                             "required": ">= 1000 px"}


PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"


@pytest.mark.parametrize(("kwargs", "status", "code", "words"), [
    ({"files": {"image": ("a.pdf", PDF, "application/pdf")}, "data": {"preset": "amazon"}},
     415, "unsupported_format", "PDF"),
    ({"files": {"image": ("a.jpg", b"\xff\xd8\xff\xe0 truncated", "image/jpeg")},
      "data": {"preset": "amazon"}}, 422, None, "image"),
    ({"files": {"image": ("a.jpg", b"", "image/jpeg")}, "data": {"preset": "amazon"}},
     422, None, "image"),
    ({"files": {"other": ("a.jpg", b"x", "image/jpeg")}, "data": {"preset": "amazon"}},
     422, "unknown_field", "allowed: image, preset"),
    ({"files": {"image": (None, "not a file"), "preset": (None, "amazon")}}, 422, "invalid_value",
     "file part"),
    ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}}, 422, "missing_preset", "GET /v1/presets"),
    ({"data": {"preset": "amazon"}, "files": {"x": ("", b"", "text/plain")}}, 422, "unknown_field", "x"),
    ({"files": {"image": ("a.jpg", b"x", "image/jpeg")}, "data": {"preset": "ebay"}},
     422, "unknown_preset", "known presets: amazon, etsy, google-merchant, shopify"),
    ({"json": {"preset": "amazon"}}, 415, "unsupported_media_type", "multipart/form-data"),
])
def test_check_refuses_bad_input_in_words(studio_server, kwargs, status, code, words):
    r = studio_server.client.post("/v1/check", **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert words in err["message"], err
    if code:
        assert err["code"] == code


def test_check_over_the_body_limit(shared_server):
    big = np.random.default_rng(1).integers(0, 256, (300, 300, 3), np.uint8)
    r = shared_server.client.post("/v1/check", data={"preset": "amazon"},
                                  files={"image": ("n.png", _png(big), "image/png")})
    assert r.status_code == 413, r.text  # shared_server caps bodies at 64 KiB
    assert r.json()["error"]["message"]


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_missing_image_says_so(studio_server):
    # multipart with only the preset field
    r = studio_server.client.post("/v1/check", files={"preset": (None, "amazon")})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "missing_image"


def test_routes_are_in_the_openapi_schema(studio_server):
    paths = studio_server.client.get("/openapi.json").json()["paths"]
    assert "get" in paths["/v1/presets"]
    post = paths["/v1/check"]["post"]
    schema = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["image", "preset"]
    assert {"200", "413", "415", "422"} <= set(post["responses"])
