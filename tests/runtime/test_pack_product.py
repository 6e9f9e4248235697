"""A product photo crosses to an engine worker process as its uploaded file, decoded there as
the front decoded it (runtime.executor.pack_product), instead of 12 MB of raw pixels."""

from __future__ import annotations

import io
import pickle

import numpy as np
from PIL import Image

from swiftshot.api.common import load_upload
from swiftshot.config import LimitsSettings
from swiftshot.runtime.executor import SOURCE_INFO, pack_product, unpack_product
from swiftshot.testing.products import make_photo


def _file(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_an_upload_crosses_as_its_file_and_decodes_to_the_same_pixels():
    limits = LimitsSettings()
    photo = make_photo("bottle_white_sweep", (1200, 1000)).image
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    for data in (_file(photo, "JPEG", quality=90), _file(rgba, "PNG"),
                 _file(photo.rotate(90, expand=True), "WEBP", quality=80)):
        front = load_upload(data, limits, "product")
        assert front.info[SOURCE_INFO] == data
        packed = pack_product(front)
        wire = pickle.dumps(packed, protocol=5)
        assert len(wire) < len(data) + 200  # the file, not the pixels
        worker = unpack_product(pickle.loads(wire))
        assert (worker.mode, worker.size) == (front.mode, front.size)
        assert np.array_equal(np.asarray(worker), np.asarray(front))


def test_an_image_with_no_file_or_a_file_bigger_than_a_quarter_of_its_pixels_goes_raw():
    limits = LimitsSettings()
    plain = make_photo("box_gradient", (64, 64)).image
    packed = pack_product(plain)
    assert packed[0] == "RGB" and len(packed[2]) == 64 * 64 * 3
    assert np.array_equal(np.asarray(unpack_product(packed)), np.asarray(plain))
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    front = load_upload(_file(noisy, "PNG"), limits, "product")  # incompressible
    assert pack_product(front)[0] == "RGB"


def test_a_photo_the_front_reduced_is_reduced_alike_whatever_the_worker_is_configured_to():
    """The front decodes a large JPEG at reduced scale (``max_work_side``): the worker, with
    other limits of its own, still gets the front's pixels, size and all."""
    front_limits = LimitsSettings(max_work_side=700)
    photo = make_photo("mug_handle_white_sweep", (1600, 1200)).image
    data = _file(photo, "JPEG", quality=90)
    front = load_upload(data, front_limits, "product")
    assert max(front.size) == 700
    worker = unpack_product(pickle.loads(pickle.dumps(pack_product(front))))
    assert worker.size == front.size
    assert np.array_equal(np.asarray(worker), np.asarray(front))


def test_a_pickled_batch_carries_its_photos_as_files():
    from swiftshot.runtime.executor import Batch

    front = load_upload(_file(make_photo("bottle_white_sweep", (1000, 1000)).image, "JPEG"),
                        LimitsSettings(), "product")
    wire = pickle.dumps(Batch(1, [], {"sha": front}), protocol=5)
    assert len(wire) < len(front.info[SOURCE_INFO]) + 2000  # not 3 MB of pixels
    back = pickle.loads(wire)
    assert np.array_equal(np.asarray(back.products["sha"]), np.asarray(front))
