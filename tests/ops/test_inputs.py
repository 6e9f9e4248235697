"""Every hostile or awkward upload is refused with a clear 4xx, or handled correctly."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from swiftshot.config import LimitsSettings
from swiftshot.inputs import InputError, decode_b64, load_image, sha256_hex

LIMITS = LimitsSettings()


def refused(data: bytes, limits: LimitsSettings = LIMITS) -> InputError:
    with pytest.raises(InputError) as ei:
        load_image(data, limits)
    return ei.value


@pytest.mark.parametrize("name, status, code, words", [
    ("empty.jpg", 422, "empty_image", "empty"),
    ("bomb.png", 413, "too_many_pixels", "pixels"),
    ("big_header.png", 413, "too_many_pixels", "9000x9000"),
    ("huge_dims.jpg", 413, "too_many_pixels", "pixels"),
    ("zero_size.png", 422, "corrupt_image", "zero size"),
    ("truncated.jpg", 422, "corrupt_image", "corrupt"),
    ("truncated.png", 422, "corrupt_image", "truncated"),
    ("wrong_magic.jpg", 415, "unsupported_format", "JPEG, PNG, WebP or AVIF"),
    ("text.jpg", 415, "unsupported_format", "not a recognisable image"),
    ("animation.gif", 415, "unsupported_format", "GIF"),
    ("bmp.bmp", 415, "unsupported_format", "BMP"),
])
def test_hostile_file_is_refused_with_clear_error(hostile, name, status, code, words):
    err = refused(hostile[name])
    assert (err.status, err.code) == (status, code), err
    assert words in err.message


def test_bomb_is_refused_without_decoding(hostile, monkeypatch):
    # If pixels were decoded, ImageFile.load would run; make that explode to prove it does not.
    from PIL import ImageFile

    def boom(self):  # pragma: no cover - must not be reached
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    assert refused(hostile["big_header.png"]).status == 413
    assert refused(hostile["bomb.png"]).status == 413


def test_size_limit_checked_before_parsing():
    err = refused(b"not an image" * 100, LimitsSettings(max_upload_bytes=100))
    assert err.status == 413 and "100 bytes" in err.message


def test_pixel_limit_from_settings():
    buf = io.BytesIO()
    Image.new("RGB", (200, 100)).save(buf, "PNG")
    err = refused(buf.getvalue(), LimitsSettings(max_pixels=10_000))
    assert err.status == 413 and "200x100" in err.message


def test_cmyk_jpeg_becomes_rgb(hostile):
    im = load_image(hostile["cmyk.jpg"], LIMITS)
    assert im.mode == "RGB"
    r, g, b = im.getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60  # C=0 M=255 Y=255 K=0 is red


def test_sixteen_bit_png_scaled_to_8_bit(hostile):
    im = load_image(hostile["sixteen_bit.png"], LIMITS)
    assert im.mode == "RGB"
    arr = np.asarray(im)[..., 0].astype(int)
    expected = (np.arange(32 * 32).reshape(32, 32) * 64 + 128) // 257
    assert np.abs(arr - expected).max() <= 1


def test_palette_with_transparency_becomes_rgba(hostile):
    im = load_image(hostile["palette_transparency.png"], LIMITS)
    assert im.mode == "RGBA"
    assert im.getpixel((0, 0))[3] == 0
    assert im.getpixel((16, 16)) == (0, 255, 0, 255)


@pytest.mark.parametrize("name", ["animated.webp", "animated.png"])
def test_animated_uses_first_frame(hostile, name):
    im = load_image(hostile[name], LIMITS)
    assert im.mode == "RGB"
    assert im.getpixel((5, 5)) == (255, 0, 0)


def test_exif_orientation_applied(hostile):
    im = load_image(hostile["exif_rotated.jpg"], LIMITS)
    assert im.size == (20, 40)
    top, bottom = im.getpixel((10, 5)), im.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top  # left half (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_avif_and_opaque_alpha(hostile):
    assert load_image(hostile["good.avif"], LIMITS).size == (64, 48)
    buf = io.BytesIO()
    Image.new("RGBA", (10, 10), (1, 2, 3, 255)).save(buf, "PNG")
    assert load_image(buf.getvalue(), LIMITS).mode == "RGB"  # an all-opaque alpha is dropped


def test_garbage_icc_profile_is_ignored():
    buf = io.BytesIO()
    Image.new("RGB", (10, 10), (10, 20, 30)).save(buf, "JPEG", quality=100, icc_profile=b"junk" * 40)
    im = load_image(buf.getvalue(), LIMITS)
    assert np.abs(np.asarray(im).astype(int) - (10, 20, 30)).max() <= 3


def test_icc_profile_is_converted_to_srgb():
    # A Lab-space profile on RGB data makes the colour management visibly move the pixels.
    from PIL import ImageCms

    prof = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 128, 128)).save(buf, "PNG", icc_profile=prof)
    im = load_image(buf.getvalue(), LIMITS)
    assert im.mode == "RGB" and "icc_profile" not in im.info


def test_decode_b64_and_sha():
    data = b"\x89PNG fake"
    assert decode_b64(base64.b64encode(data).decode()) == data
    assert decode_b64("data:image/png;base64," + base64.b64encode(data).decode()) == data
    with pytest.raises(InputError) as ei:
        decode_b64("not base64 !!!")
    assert ei.value.status == 422
    with pytest.raises(InputError) as ei:
        decode_b64(base64.b64encode(b"x" * 1000).decode(), max_bytes=100)
    assert ei.value.status == 413
    assert sha256_hex(b"abc").startswith("ba7816bf")


def _small(fmt: str) -> bytes:
    buf = io.BytesIO()
    arr = (np.arange(24 * 16 * 3) % 251).astype(np.uint8).reshape(16, 24, 3)
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


_SEEDS = {fmt: _small(fmt) for fmt in ("PNG", "JPEG", "WEBP", "AVIF")}


from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_SEEDS)), edits=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10_000)))
@example(fmt="AVIF", edits=[(8966, 0)], cut=None)  # found by this test: AVIF raised RuntimeError
def test_mutated_files_give_an_image_or_input_error(fmt, edits, cut):
    """Corrupted uploads never escape as anything but InputError (no 500, no hang)."""
    data = bytearray(_SEEDS[fmt])
    for pos, val in edits:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        im = load_image(bytes(data), LIMITS)
    except InputError as e:
        assert 400 <= e.status < 500 and e.message
    else:
        assert im.mode in ("RGB", "RGBA") and im.width > 0 and im.height > 0


def _split_outcome(data: bytes) -> tuple:
    """What the front's header check then the worker's decode give (``inputs.PhotoFile``)."""
    from swiftshot.inputs import PhotoError, check_header

    try:
        photo = check_header(data, LIMITS)
    except InputError as e:
        return ("refused", e.status, e.code, e.message)
    try:
        im = photo.decode()
    except PhotoError as e:
        assert e.message.startswith("product: ") and e.param == "product"
        return ("refused", e.status, e.code, e.message.removeprefix("product: "))
    return ("image", im.mode, im.size, hashlib.sha256(im.tobytes()).hexdigest())


def _whole_outcome(data: bytes) -> tuple:
    try:
        im = load_image(data, LIMITS)
    except InputError as e:
        return ("refused", e.status, e.code, e.message)
    return ("image", im.mode, im.size, hashlib.sha256(im.tobytes()).hexdigest())


def test_header_check_then_decode_is_load_image_for_every_hostile_file(hostile):
    """The front refuses what the header decides and the worker the rest: together the same
    status, code, message (and pixels) as one ``load_image``, for every hostile file."""
    for name, data in hostile.items():
        assert _split_outcome(data) == _whole_outcome(data), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(_SEEDS)), edits=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10_000)))
def test_mutated_files_split_the_same_way(fmt, edits, cut):
    data = bytearray(_SEEDS[fmt])
    for pos, val in edits:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    assert _split_outcome(bytes(data)) == _whole_outcome(bytes(data))
