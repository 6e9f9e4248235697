"""``POST /v1/render`` with a product photo: multipart and base64 uploads, presets, the cache,
and every kind of bad input as a 4xx JSON error. Real ``swiftshot serve`` on loopback."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from swiftshot.ops.presets import check, get_preset
from swiftshot.testing.products import make_photo
from tests.api.conftest import start_server

MAX_UPLOAD = 400_000
MAX_BODY = 1_500_000
GREY_PRESET = {"width": 640, "height": 480, "background": [200, 200, 200], "fill": 0.7,
               "format": "png"}


def encode(image: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_png(side: int, seed: int = 0) -> bytes:
    """Incompressible: a PNG of random pixels is ~3 bytes a pixel."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)), "PNG")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # A user preset in the config: served only if the service configured the pipeline.
    s = start_server(tmp_path_factory.mktemp("render-product") / "var", env={
        "SWIFTSHOT_LIMITS__MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "SWIFTSHOT_SERVER__MAX_BODY_BYTES": str(MAX_BODY),
        "SWIFTSHOT_OPS__PRESETS": json.dumps({"grey-card": GREY_PRESET}),
    })
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bottle() -> bytes:
    return encode(make_photo("bottle_white_sweep", (640, 640)).image, quality=92)


@pytest.fixture(scope="module")
def box() -> bytes:
    return encode(make_photo("box_gradient", (640, 640)).image, quality=92)


def multipart(server, spec, photo: bytes | None, *, accept: str = "application/json",
              images: list[bytes] = ()):
    files = [("product", ("photo.jpg", photo, "image/jpeg"))] if photo is not None else []
    files += [("images", (f"i{i}.png", data, "image/png")) for i, data in enumerate(images)]
    spec_text = spec if isinstance(spec, str) else json.dumps(spec)
    # the spec as a (file-name-less) part, so the body is multipart even with no file
    return server.client.post("/v1/render", files=[("spec", (None, spec_text)), *files],
                              headers={"Accept": accept})


def as_b64(server, spec: dict, photo: bytes, *, data_url: bool = False):
    text = base64.b64encode(photo).decode()
    if data_url:
        text = "data:image/jpeg;base64," + text
    return server.client.post("/v1/render", json={**spec, "product_b64": text})


def colour_spec(rgb: tuple[int, int, int]) -> dict:
    return {"width": 512, "height": 384,
            "ops": [{"op": "compose", "backdrop": "color", "color": list(rgb), "fill": 0.7}]}


def test_multipart_composes_the_uploaded_photo(server, bottle):
    r = multipart(server, colour_spec((32, 160, 250)), bottle)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["product_sha256"] == hashlib.sha256(bottle).hexdigest()
    assert (body["width"], body["height"]) == (512, 384)
    assert body["cache"] == "miss"
    png = server.client.get(body["urls"]["png"])
    assert png.status_code == 200
    im = Image.open(io.BytesIO(png.content)).convert("RGB")
    assert im.size == (512, 384)
    arr = np.asarray(im).astype(int)
    assert tuple(arr[0, 0]) == (32, 160, 250)  # the backdrop asked for
    # the product sits in the middle: a column there is mostly not the backdrop colour
    centre = arr[60:330, 256]
    assert (np.abs(centre - [32, 160, 250]).sum(1) > 60).mean() > 0.5


def test_base64_and_multipart_share_the_cache_by_photo(server, bottle, box):
    spec = colour_spec((250, 240, 200))
    first = multipart(server, spec, bottle)
    assert first.status_code == 200, first.text
    assert first.headers["X-Cache"] == "miss"
    again = as_b64(server, spec, bottle)
    assert again.status_code == 200, again.text
    assert again.headers["X-Cache"] == "memory"
    assert again.json()["key"] == first.json()["key"]
    # a hit is found before the photo is decoded: no decode stage on it
    assert "decode;" in first.headers["Server-Timing"]
    assert "decode" not in again.headers["Server-Timing"]
    url = as_b64(server, spec, bottle, data_url=True)
    assert url.status_code == 200, url.text
    assert url.headers["X-Cache"] == "memory"
    # another photo with the same ops is another image
    other = as_b64(server, spec, box)
    assert other.status_code == 200, other.text
    assert other.headers["X-Cache"] == "miss"
    assert other.json()["key"] != first.json()["key"]
    assert other.json()["product_sha256"] == hashlib.sha256(box).hexdigest()
    # the hash alone is enough once the render is cached
    by_sha = server.client.post("/v1/render", json={
        **spec, "product_sha256": first.json()["product_sha256"]})
    assert by_sha.status_code == 200, by_sha.text
    assert by_sha.headers["X-Cache"] == "memory"
    assert by_sha.json()["key"] == first.json()["key"]


def test_hash_without_photo_and_nothing_cached_asks_for_the_photo(server):
    r = server.client.post("/v1/render", json={**colour_spec((1, 2, 3)),
                                               "product_sha256": "ab" * 32})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "missing_image"
    assert "product_b64" in err["message"] and "'product' file part" in err["message"]


def test_amazon_preset_image_passes_amazons_rules(server, bottle):
    r = multipart(server, {"preset": "amazon"}, bottle, accept="image/*")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    im.load()
    assert im.format == "JPEG"
    assert max(im.size) >= 1000
    rgb = im.convert("RGB")
    w, h = rgb.size
    for xy in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)):
        assert rgb.getpixel(xy) == (255, 255, 255)
    results = check(im, get_preset("amazon"), file_format="JPEG")
    failed = [res for res in results if not res.passed]
    assert not failed, failed
    assert {res.rule for res in results} >= {"background", "product_fill", "longest_side"}
    # the preset's own check ran on it, and the cutout said how sure it was
    assert r.headers["X-Compliance"] == "pass"
    conf, level = r.headers["X-Cutout-Confidence"].split("; ")
    assert 0.8 <= float(conf) <= 1 and level == "high"
    again = multipart(server, {"preset": "amazon"}, bottle, accept="image/*")
    assert again.headers["X-Cache"] == "memory"
    assert again.content == r.content
    assert again.headers["X-Compliance"] == "pass"
    # the JSON answer points at the preset's format, at the master's real size
    body = multipart(server, {"preset": "amazon"}, bottle).json()
    assert (body["width"], body["height"]) == (2000, 2000)
    assert body["compliance"]["passed"] is True and body["compliance"]["preset"] == "amazon"
    assert {x["rule"] for x in body["compliance"]["rules"]} >= {"background", "product_fill"}
    assert f".jpg?q={get_preset('amazon').quality}" in body["url"]
    fetched = server.client.get(body["url"])
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"


def test_a_preset_result_that_fails_its_rules_says_so(server, box):
    # Composed on a dark colour first: amazon's white background cannot hold; the answer is
    # still the image, marked as failing, with the rule named.
    spec = {"preset": "amazon", "ops": [{"op": "cutout"},
                                        {"op": "compose", "backdrop": "color", "color": "#203040"}]}
    r = multipart(server, spec, box)
    assert r.status_code == 200, r.text
    assert r.headers["X-Compliance"] == "fail"
    assert "background" in r.headers["X-Compliance-Failed"]
    body = r.json()
    assert body["compliance"]["passed"] is False and "background" in body["compliance"]["failed"]


def test_preset_from_the_server_config_applies(server, box):
    r = multipart(server, {"preset": "grey-card"}, box, accept="image/*")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"  # the preset's format
    im = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert im.size == (640, 480)
    assert im.getpixel((0, 0)) == (200, 200, 200)
    meta = multipart(server, {"preset": "grey-card"}, box)
    assert (meta.json()["width"], meta.json()["height"]) == (640, 480)


def test_backdrop_image_sent_as_an_images_part(server, bottle):
    backdrop = encode(Image.new("RGB", (300, 200), (10, 120, 40)), "PNG")
    sha = hashlib.sha256(backdrop).hexdigest()
    spec = {"width": 512, "height": 512, "ops": [
        {"op": "compose", "backdrop": "image", "image_sha256": sha, "shadow": False}]}
    r = multipart(server, spec, bottle, accept="image/png", images=[backdrop])
    assert r.status_code == 200, r.text
    im = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert im.getpixel((2, 2)) == (10, 120, 40)
    missing = multipart(server, {**spec, "width": 640}, bottle)
    assert missing.status_code == 422
    assert missing.json()["error"]["param"] == "ops[0].image_sha256"


GIF = encode(Image.new("P", (32, 32), 3), "GIF")
ALLOWED = "JPEG, PNG, WebP or AVIF"


def _bad_cases(bottle: bytes) -> list[tuple[str, dict, int, str, list[str]]]:
    """(name, request, status, code, words the message must hold)."""
    corrupt = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8
    truncated = bottle[: len(bottle) // 2]
    over_upload = noise_png(420)  # ~530 KB: past the upload limit, inside the body limit
    over_body = noise_png(800)  # ~1.9 MB: past the body limit
    assert MAX_UPLOAD < len(over_upload) < MAX_BODY < len(over_body)
    preset = {"preset": "amazon"}
    return [
        ("corrupt", {"mp": (preset, corrupt)}, 422, "corrupt_image", ["corrupt"]),
        ("truncated", {"mp": (preset, truncated)}, 422, "corrupt_image", ["truncated"]),
        ("gif", {"mp": (preset, GIF)}, 415, "unsupported_format", ["GIF", ALLOWED]),
        ("gif_b64", {"json": {**preset, "product_b64": base64.b64encode(GIF).decode()}}, 415,
         "unsupported_format", ["product_b64", "GIF"]),
        ("upload_too_big", {"mp": (preset, over_upload)}, 413, "file_too_large",
         [str(MAX_UPLOAD)]),
        ("b64_too_big", {"json": {**preset, "product_b64": base64.b64encode(over_upload).decode()}},
         413, "file_too_large", ["product_b64", str(MAX_UPLOAD)]),
        ("body_too_big", {"mp": (preset, over_body)}, 413, "body_too_large", [str(MAX_BODY)]),
        ("bad_base64", {"json": {**preset, "product_b64": "not base64!"}}, 422, "invalid_base64",
         ["product_b64"]),
        ("b64_not_text", {"json": {**preset, "product_b64": 12}}, 422, "invalid_value",
         ["product_b64", "string"]),
        ("unknown_op", {"mp": ({"ops": [{"op": "sparkle"}]}, bottle)}, 422, "invalid_ops",
         ["sparkle", "cutout, compose, enhance, mannequin"]),
        ("bad_op_param", {"mp": ({"ops": [{"op": "compose", "fill": 3}]}, bottle)}, 422,
         "invalid_ops", ["ops[0]", "fill"]),
        ("unknown_preset", {"mp": ({"preset": "ebay"}, bottle)}, 422, "unknown_preset",
         ["ebay", "amazon", "etsy", "grey-card"]),
        ("ops_without_product", {"json": {"ops": [{"op": "cutout"}, {"op": "compose"}]}}, 422,
         "missing_product", ["ops[0] (cutout)", "ops[1] (compose)", "product_b64"]),
        ("multipart_without_product", {"mp": ({"ops": [{"op": "mannequin",
                                                        "key_color": "white"}]}, None)},
         422, "missing_product", ["mannequin"]),
        ("sha_mismatch", {"mp": ({**preset, "product_sha256": "0" * 64}, bottle)}, 422,
         "product_mismatch", ["0" * 64, hashlib.sha256(bottle).hexdigest()]),
        ("spec_not_json", {"mp": ("{preset: amazon", bottle)}, 422, "invalid_json",
         ["'spec'", "not valid JSON"]),
        ("spec_not_object", {"mp": ("[1, 2]", bottle)}, 422, "invalid_json", ["JSON object"]),
        ("unknown_spec_field", {"mp": ({"preset": "amazon", "colour": "red"}, bottle)}, 422,
         "invalid_value", ["colour", "allowed"]),
        ("unused_image", {"mp_images": (preset, bottle, [encode(Image.new("RGB", (8, 8)), "PNG")])},
         422, "unused_image", ["images[0]"]),
        ("inpaint_on_fake", {"mp": ({"ops": [{"op": "compose", "backdrop": "inpaint"}]}, bottle)},
         422, "invalid_ops", ["inpaint", "fake"]),
    ]


def _send(server, req: dict):
    if "json" in req:
        return server.client.post("/v1/render", json=req["json"])
    if "mp_images" in req:
        spec, photo, images = req["mp_images"]
        return multipart(server, spec, photo, images=images)
    spec, photo = req["mp"]
    return multipart(server, spec, photo)


def test_bad_inputs_are_4xx_json_naming_the_fault(server, bottle):
    for name, req, status, code, words in _bad_cases(bottle):
        r = _send(server, req)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), name
        err = r.json()["error"]
        assert err["code"] == code, (name, err)
        for word in words:
            assert word in err["message"], (name, word, err["message"])
    assert server.proc.poll() is None


def test_form_shape_errors(server, bottle):
    c = server.client
    no_spec = c.post("/v1/render", files={"product": ("p.jpg", bottle, "image/jpeg")})
    assert no_spec.status_code == 422 and no_spec.json()["error"]["code"] == "missing_spec"
    as_text = c.post("/v1/render", files=[("spec", (None, "{}")),
                                          ("product", (None, "not a file"))])
    assert as_text.status_code == 422 and "file part" in as_text.json()["error"]["message"]
    extra = c.post("/v1/render", data={"spec": "{}", "colour": "red"},
                   files={"product": ("p.jpg", bottle, "image/jpeg")})
    assert extra.status_code == 422
    assert "spec, product, images" in extra.json()["error"]["message"]
    two = c.post("/v1/render", data={"spec": "{}"},
                 files=[("product", ("a.jpg", bottle, "image/jpeg")),
                        ("product", ("b.jpg", bottle, "image/jpeg"))])
    assert two.status_code == 422 and two.json()["error"]["param"] == "product"
    form = c.post("/v1/render", content=b"a=1", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and "multipart/form-data" in form.json()["error"]["message"]
    broken = c.post("/v1/render", content=b"--x\r\nnonsense", headers={
        "Content-Type": "multipart/form-data; boundary=x"})
    assert 400 <= broken.status_code < 500, broken.text
    assert "error" in broken.json()


def test_a_photo_with_no_product_in_it_is_a_422_not_a_500(server):
    blank = encode(Image.new("RGB", (320, 320), (255, 255, 255)))
    r = multipart(server, {"preset": "amazon"}, blank)
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_hit_in_a_restarted_server_still_says_how_sure_the_cutout_was(tmp_path, bottle,
                                                                       executor):
    """Only the process that made the image knows the cutout's confidence (the image's info):
    it is kept in the master's metadata, so a disk hit in a new server process says it too,
    and the compliance verdict is not worked out again from the master."""
    env = {"SWIFTSHOT_ENGINE__EXECUTOR": executor, "SWIFTSHOT_ENGINE__WORKERS": "1"}
    spec = {"preset": "amazon", "width": 512, "height": 512}
    first = start_server(tmp_path / "var", env=env)
    try:
        made = multipart(first, spec, bottle, accept="image/*")
        assert made.status_code == 200 and made.headers["X-Cache"] == "miss", made.text
        said = made.headers["X-Cutout-Confidence"]
        assert made.headers["X-Compliance"] == "pass"
    finally:
        first.stop()
    again = start_server(tmp_path / "var", env=env)
    try:
        for accept in ("image/*", "application/json"):
            r = multipart(again, spec, bottle, accept=accept)
            assert r.status_code == 200 and r.headers["X-Cache"] in ("disk", "memory"), r.text
            assert r.headers["X-Cutout-Confidence"] == said
            assert r.headers["X-Compliance"] == "pass"
        assert r.json()["cutout"]["confidence"] == pytest.approx(float(said.split(";")[0]), abs=0.01)
    finally:
        again.stop()
