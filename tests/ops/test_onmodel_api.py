"""POST /v1/onmodel over HTTP (TestClient on the real app) and ``swiftshot onmodel``: the
dressed photo, the cache, and every refusal as 4xx JSON saying what is wrong and allowed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from swiftshot.testing.people import make_garment, make_model

SIZE, GSIZE = (320, 400), (320, 320)


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from swiftshot.api.app import create_app
    from swiftshot.config import LimitsSettings, Settings
    from swiftshot.engines import FakeEngine

    settings = Settings(data_dir=tmp_path_factory.mktemp("onmodel") / "var",
                        limits=LimitsSettings(max_upload_bytes=400_000))
    with TestClient(create_app(settings, engine=FakeEngine())) as c:
        yield c


@pytest.fixture(scope="module")
def photos():
    return _jpeg(make_model(1, SIZE).image), _jpeg(make_garment(1, GSIZE).image)


def post(client, files=None, data=None, headers=None):
    return client.post("/v1/onmodel", files=files, data=data, headers=headers)


def test_dressed_image_then_a_cache_hit(client, photos):
    model, garment = photos
    files = {"garment": ("g.jpg", garment, "image/jpeg"), "model": ("m.jpg", model, "image/jpeg")}
    r = post(client, files=files)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg" and r.headers["x-cache"] == "miss"
    out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    src = np.asarray(Image.open(io.BytesIO(model)).convert("RGB")).astype(int)
    assert out.shape == src.shape
    truth = make_model(1, SIZE)
    changed = np.abs(out - src).sum(2) > 40
    assert changed[truth.torso].mean() > 0.9               # the torso now wears the garment
    assert changed[truth.person < 0.01].mean() < 0.01       # the backdrop is untouched
    again = post(client, files=files, headers={"Accept": "application/json"})
    assert again.status_code == 200 and again.json()["cache"] in ("memory", "disk")
    assert again.json()["width"] == SIZE[0]


def test_format_and_options(client, photos):
    model, garment = photos
    r = post(client, files={"garment": ("g.jpg", garment), "model": ("m.jpg", model)},
             data={"format": "png", "person_segmenter": "classical", "light": "0.5"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


@pytest.mark.parametrize("case", ["no_garment", "no_model", "text_for_file", "unknown_field",
                                  "bad_format", "bad_bool", "bad_light", "inpaint_no_engine",
                                  "not_multipart"])
def test_bad_requests_say_what_is_allowed(client, photos, case):
    model, garment = photos
    files = {"garment": ("g.jpg", garment), "model": ("m.jpg", model)}
    data: dict = {}
    kw: dict = {}
    want, words = 422, ()
    if case == "no_garment":
        files.pop("garment")
        words = ("'garment' file part is missing", "JPEG, PNG")
    elif case == "no_model":
        files.pop("model")
        words = ("'model' file part is missing",)
    elif case == "text_for_file":
        files.pop("model")
        data = {"model": "hello"}
        words = ("file part",)
    elif case == "unknown_field":
        data = {"colour": "red"}
        words = ("unknown form field 'colour'", "garment, model")
    elif case == "bad_format":
        data = {"format": "gif"}
        words = ("format must be one of jpeg, png, webp, avif",)
    elif case == "bad_bool":
        data = {"inpaint_seams": "maybe"}
        words = ("true or false",)
    elif case == "bad_light":
        data = {"light": "3"}
        words = ("light", "less than or equal to 1")
    elif case == "inpaint_no_engine":
        data = {"inpaint_seams": "true"}
        words = ("inpaint_seams needs an engine that can inpaint",)
    elif case == "not_multipart":
        files = {}
        kw = {"json": {"garment": "x"}}
        want, words = 415, ("multipart/form-data",)
    r = client.post("/v1/onmodel", files=files or None, data=data or None, **kw)
    assert r.status_code == want, r.text
    msg = r.json()["error"]["message"]
    for w in words:
        assert w in msg, msg


def test_not_an_image_oversize_and_no_person(client, photos):
    model, garment = photos
    r = post(client, files={"garment": ("g.jpg", garment), "model": ("m.txt", b"hello there")})
    assert r.status_code in (415, 422) and "model" in r.json()["error"]["message"]
    big = b"\xff\xd8\xff" + b"0" * 500_000
    r = post(client, files={"garment": ("g.jpg", big), "model": ("m.jpg", model)})
    assert r.status_code == 413 and "garment" in r.json()["error"]["message"]
    empty = _jpeg(Image.new("RGB", SIZE, (236, 236, 234)))
    r = post(client, files={"garment": ("g.jpg", garment), "model": ("m.jpg", empty)})
    assert r.status_code == 422, r.text
    assert "no person was found in the model photo" in r.json()["error"]["message"]


def test_cli_onmodel(tmp_path, photos, capsys):
    from swiftshot.cli import main

    model, garment = photos
    (tmp_path / "m.jpg").write_bytes(model)
    (tmp_path / "g.jpg").write_bytes(garment)
    out = tmp_path / "out.jpg"
    assert main(["onmodel", "--garment", str(tmp_path / "g.jpg"), "--model",
                 str(tmp_path / "m.jpg"), "-o", str(out)]) == 0
    im = Image.open(out)
    assert im.size == SIZE
    assert "320x400" in capsys.readouterr().out
    (tmp_path / "e.jpg").write_bytes(_jpeg(Image.new("RGB", SIZE, (236, 236, 234))))
    assert main(["onmodel", "--garment", str(tmp_path / "g.jpg"), "--model",
                 str(tmp_path / "e.jpg"), "-o", str(tmp_path / "x.jpg")]) == 2
    assert "no person" in capsys.readouterr().err
    assert main(["onmodel", "--garment", str(tmp_path / "g.jpg"), "--model",
                 str(tmp_path / "m.jpg"), "--inpaint-seams", "-o", str(tmp_path / "y.jpg")]) == 2
    assert "inpaint" in capsys.readouterr().err


def test_the_op_in_a_render_spec_is_the_same_render(client, photos):
    """/v1/render with the onmodel op (the model photo as an 'images' part named by its hash)
    is the same render as /v1/onmodel: the same cache key, so a hit."""
    import hashlib

    model, garment = photos
    sha = hashlib.sha256(model).hexdigest()
    native = post(client, files={"garment": ("g.jpg", garment), "model": ("m.jpg", model)},
                  headers={"Accept": "application/json"})
    assert native.status_code == 200, native.text
    spec = json.dumps({"ops": [{"op": "onmodel", "model_sha256": sha}]})
    r = client.post("/v1/render", data={"spec": spec},
                    files=[("product", ("g.jpg", garment)), ("images", ("m.jpg", model))])
    assert r.status_code == 200, r.text
    assert r.json()["key"] == native.json()["key"] and r.json()["cache"] != "miss"
    # a render not cached yet (another garment photo) without the model photo: say what to send
    other = _jpeg(make_garment(3, GSIZE).image)
    missing = client.post("/v1/render", data={"spec": spec}, files=[("product", ("g.jpg", other))])
    assert missing.status_code == 422, missing.text
    assert "model_sha256" in missing.json()["error"]["message"]


def test_preset_fits_the_dressed_photo_to_its_canvas(client, photos):
    model, garment = photos
    r = post(client, files={"garment": ("g.jpg", garment), "model": ("m.jpg", model)},
             data={"preset": "shopify"}, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (2048, 2048)   # shopify's canvas
    assert "compliance" in body                               # checked by the preset's rules
    bad = post(client, files={"garment": ("g.jpg", garment), "model": ("m.jpg", model)},
               data={"preset": "ebay-ish"})
    assert bad.status_code == 422 and "ebay-ish" in bad.json()["error"]["message"]
