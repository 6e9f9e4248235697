"""An upload checked by its header in the front and decoded once where the batch runs
(``inputs.PhotoFile``, ``runtime.executor.Photos``): the front no longer decodes a photo the
engine worker decodes again (~16 ms each at 2000²). What the header decides is refused in the
front as before; truncated or corrupt data is refused where it is decoded, as the same 422
(``inputs.PhotoError``), for the requests that use it only, and it crosses a process boundary
unchanged."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from swiftshot.config import LimitsSettings
from swiftshot.errors import ServiceError
from swiftshot.inputs import InputError, PhotoError, PhotoFile, check_header, load_image
from swiftshot.runtime import executor as ex
from swiftshot.runtime.executor import Batch, Item, Photos, pack_product, run_items, unpack_product
from swiftshot.spec import RenderSpec
from swiftshot.testing.products import make_photo


def _jpeg(size: int = 320, **kw) -> bytes:
    buf = io.BytesIO()
    make_photo("bottle_white_sweep", (size, size)).image.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


GOOD = _jpeg()
TRUNCATED = GOOD[: len(GOOD) // 2]


def test_the_header_refusals_are_the_decoders_and_truncated_data_passes_the_header():
    limits = LimitsSettings(max_upload_bytes=200_000, max_pixels=500_000)
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    big = io.BytesIO()
    Image.new("RGB", (1000, 800)).save(big, "PNG")  # 800,000 pixels > 500,000
    for bad in (b"", gif.getvalue(), big.getvalue(), b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,
                b"x" * 200_001):
        with pytest.raises(InputError) as front:
            check_header(bad, limits)
        with pytest.raises(InputError) as full:
            load_image(bad, limits)
        assert (front.value.status, front.value.code, front.value.message) == (
            full.value.status, full.value.code, full.value.message)
        assert 400 <= front.value.status < 500
    photo = check_header(TRUNCATED, limits, "images[1]")
    assert isinstance(photo, PhotoFile) and photo.param == "images[1]"
    with pytest.raises(PhotoError) as e:
        photo.decode()
    err = e.value
    assert isinstance(err, ServiceError) and isinstance(err, ValueError)  # a user error
    assert (err.status, err.code, err.param) == (422, "corrupt_image", "images[1]")
    assert err.message.startswith("images[1]: image data is truncated or corrupt")


def test_the_decode_is_the_fronts_reduced_size_and_pixels():
    data = _jpeg(900)
    limits = LimitsSettings(max_work_side=512)
    front = load_image(data, limits)
    photo = check_header(data, limits)
    back = unpack_product(pickle.loads(pickle.dumps(pack_product(photo))))
    assert isinstance(back, PhotoFile)  # not decoded on the way: decoded where it is used
    got = back.decode()
    assert (got.mode, got.size) == (front.mode, front.size) == ("RGB", (512, 512))
    assert np.array_equal(np.asarray(got), np.asarray(front))


def test_a_pickled_batch_carries_the_file_and_decodes_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(PhotoFile, "decode", lambda self: calls.append(self) or 1 / 0)
    batch = Batch(1, [], {"a": PhotoFile(TRUNCATED), "b": PhotoFile(GOOD, "images[0]")})
    back = pickle.loads(pickle.dumps(batch))  # Ray's handle and direct channel
    assert calls == []
    assert {k: (v.data, v.param) for k, v in back.products.items()} == {
        "a": (TRUNCATED, "product"), "b": (GOOD, "images[0]")}


def test_photos_decode_once_and_only_what_is_used(monkeypatch):
    decoded = []
    real = PhotoFile.decode
    monkeypatch.setattr(PhotoFile, "decode", lambda self: decoded.append(self.param) or real(self))
    photos = Photos({"good": PhotoFile(GOOD), "bad": PhotoFile(TRUNCATED, "images[0]"),
                     "done": Image.new("RGB", (4, 4))})
    assert "bad" in photos and len(photos) == 3 and decoded == []  # `in` decodes nothing
    assert photos["good"] is photos["good"] and decoded == ["product"]
    for _ in range(2):
        with pytest.raises(PhotoError):
            photos["bad"]
    assert decoded == ["product", "images[0]"]
    assert photos["done"].size == (4, 4)


def _fake_run_batch(engine, specs, on_step=None, *, products=None):
    # what pipeline.run_ops_stage does: the spec's own photo, by its SHA-256
    return [products[s.product_sha256].convert("RGB") if s.product_sha256
            else Image.new("RGB", (8, 8)) for s in specs]


def test_a_corrupt_photo_fails_its_own_item_as_a_422_that_crosses_a_process():
    good, bad = "a" * 64, "b" * 64
    items = [Item(1, RenderSpec(prompt="x", size="64x64", product_sha256=good)),
             Item(2, RenderSpec(prompt="y", size="64x64", product_sha256=bad)),
             Item(3, RenderSpec(prompt="z", size="64x64"))]
    batch = Batch(7, items, {good: PhotoFile(GOOD), bad: PhotoFile(TRUNCATED)})
    batch = pickle.loads(pickle.dumps(batch))  # as a worker process / replica receives it
    res = run_items(object(), batch, run_batch=_fake_run_batch)
    by_id = {r.id: r for r in res.results}
    assert by_id[1].error is None and by_id[1].image.size == (320, 320)
    assert by_id[3].error is None
    err = by_id[2].error
    assert isinstance(err, PhotoError) and (err.status, err.code, err.param) == (
        422, "corrupt_image", "product")
    # the worker sends it back pickled: the front raises the same error
    assert pickle.loads(pickle.dumps(ex.as_service_error(err))) == err


async def test_the_render_route_checks_headers_and_decodes_nothing(monkeypatch):
    """Fails before this change: the route decoded every upload to validate it."""
    import swiftshot.inputs
    from swiftshot.api import routes_render
    from swiftshot.api.errors import ApiError

    def refuse(*_a, **_k):
        raise AssertionError("the front decoded an upload")

    monkeypatch.setattr(swiftshot.inputs, "load_image", refuse)
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    limits = LimitsSettings()
    got = await routes_render._checked([routes_render.Upload("product", TRUNCATED, "t" * 64),
                                       routes_render.Upload("images[0]", GOOD, "g" * 64)], limits)
    assert {k: (v.data, v.param) for k, v in got.items()} == {
        "t" * 64: (TRUNCATED, "product"), "g" * 64: (GOOD, "images[0]")}
    with pytest.raises(ApiError) as e:
        await routes_render._checked([routes_render.Upload("images[1]", gif.getvalue(), "x")],
                                    limits)
    assert (e.value.status, e.value.code, e.value.param) == (415, "unsupported_format",
                                                              "images[1]")
    assert "GIF" in e.value.message and "JPEG, PNG, WebP or AVIF" in e.value.message
