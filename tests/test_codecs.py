"""Encoders: formats, alpha, quality, XMP source type, no leaked metadata, lossless master."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from swiftshot.config import DeliverySettings
from swiftshot.delivery.codecs import (
    FORMATS,
    UnsupportedFormat,
    content_type,
    decode_master,
    encode,
    encode_master,
    extension,
    resize_to_width,
    to_srgb,
)

PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


def photo(w: int = 160, h: int = 120, mode: str = "RGB") -> Image.Image:
    """A smooth gradient with some detail: compresses like a photo, not like noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / w * 255, y / h * 255, 128 + 60 * np.sin(x / 7) * np.cos(y / 9)], -1)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    return img.convert(mode) if mode != "RGB" else img


def reopen(data: bytes, fmt: str) -> Image.Image:
    img = Image.open(io.BytesIO(data), formats=[PIL_FORMAT[fmt]])
    img.load()
    return img


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_decodes_with_the_right_size(fmt: str) -> None:
    data = encode(photo(), fmt)
    img = reopen(data, fmt)
    assert img.format == PIL_FORMAT[fmt] and img.size == (160, 120)
    diff = np.abs(np.asarray(img.convert("RGB"), np.float32) - np.asarray(photo(), np.float32)).mean()
    assert diff < 6  # lossy, but the picture is the same picture


def test_aliases_content_types_and_extensions() -> None:
    assert reopen(encode(photo(), "JPG"), "jpeg").format == "JPEG"
    assert [content_type(f) for f in FORMATS] == ["image/png", "image/jpeg", "image/webp", "image/avif"]
    assert [extension(f) for f in FORMATS] == ["png", "jpg", "webp", "avif"]


@pytest.mark.parametrize("bad", ["gif", "bmp", ""])
def test_unsupported_format_names_the_allowed_ones(bad: str) -> None:
    with pytest.raises(UnsupportedFormat, match="png, jpeg, webp, avif"):
        encode(photo(), bad)


def test_quality_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between 1 and 100"):
        encode(photo(), "jpeg", 0)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_quality_trades_bytes_and_defaults_come_from_settings(fmt: str) -> None:
    img = photo(256, 256)
    assert len(encode(img, fmt, 20)) < len(encode(img, fmt, 90))
    low = DeliverySettings(quality={"jpeg": 15, "webp": 15, "avif": 15})
    assert len(encode(img, fmt, settings=low)) < len(encode(img, fmt))


def rgba_half_transparent() -> Image.Image:
    a = np.zeros((64, 64, 4), np.uint8)
    a[:, :32] = (200, 30, 30, 255)
    a[:, 32:] = (0, 0, 0, 0)  # transparent black: must not show as black in a JPEG
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize("fmt", ["png", "webp", "avif"])
def test_alpha_is_kept_where_the_format_has_it(fmt: str) -> None:
    img = reopen(encode(rgba_half_transparent(), fmt), fmt)
    alpha = np.asarray(img.getchannel("A"))
    assert alpha[:, :28].min() > 245 and alpha[:, 36:].max() < 10


def test_jpeg_flattens_alpha_on_white() -> None:
    img = np.asarray(reopen(encode(rgba_half_transparent(), "jpeg", 95), "jpeg"))
    assert img[:, 40:].min() > 245
    assert img[:, :24, 0].mean() > 180 and img[:, :24, 1].mean() < 60


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("source", ["trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia",
                                    "algorithmicMedia", "compositeSynthetic"])
def test_xmp_names_the_iptc_digital_source_type(fmt: str, source: str) -> None:
    data = encode(photo(64, 48), fmt, source_type=source)
    xmp = reopen(data, fmt).info.get("xmp")
    assert xmp, f"no XMP read back from {fmt}"
    xmp = xmp if isinstance(xmp, bytes) else xmp.encode()
    expected = f'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/{source}"'
    assert expected.encode() in xmp


def test_unknown_source_type_is_refused() -> None:
    with pytest.raises(ValueError, match="source_type"):
        encode(photo(), "png", source_type="madeUp")


def camera_photo_with_gps() -> Image.Image:
    """A JPEG as a phone writes it: EXIF with camera serial and GPS, an ICC profile, a comment."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0xA431] = "SERIAL-123456"  # BodySerialNumber
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.0)
    gps[3], gps[4] = "E", (13.0, 24.0, 36.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    photo().save(buf, "JPEG", exif=exif, icc_profile=icc, comment=b"home address")
    img = Image.open(io.BytesIO(buf.getvalue()))
    assert img.getexif().get_ifd(0x8825)  # the fixture really carries GPS
    return img


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_exif_gps_icc_or_comment_survives(fmt: str) -> None:
    data = encode(camera_photo_with_gps(), fmt, source_type="compositeSynthetic")
    out = reopen(data, fmt)
    assert not out.getexif()
    assert "icc_profile" not in out.info and "comment" not in out.info
    for secret in (b"SERIAL-123456", b"PhoneMaker", b"home address", b"Exif\x00\x00"):
        assert secret not in data


def test_exif_orientation_is_applied_before_exif_is_dropped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buf = io.BytesIO()
    photo(160, 120).save(buf, "JPEG", exif=exif)
    out = reopen(encode(Image.open(io.BytesIO(buf.getvalue())), "png"), "png")
    assert out.size == (120, 160) and not out.getexif()


def display_p3_profile() -> bytes:
    """A minimal ICC v2 matrix/TRC profile with Display P3 primaries (D50-adapted), gamma 2.2."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

    text = b"Display P3 (test)\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 78
    curv = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
            (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        data += b"\0" * (-(offset + len(data)) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    header = (struct.pack(">I", 128 + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000)
              + b"mntrRGB XYZ " + b"\0" * 12 + b"acsp" + b"\0" * 28
              + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + body


def test_wide_gamut_photo_is_converted_to_srgb_and_untagged() -> None:
    img = Image.new("RGB", (8, 8), (200, 100, 50))
    img.info["icc_profile"] = display_p3_profile()
    out = reopen(encode(img, "png"), "png")
    assert "icc_profile" not in out.info
    r, g, b = (int(v) for v in np.asarray(out)[0, 0])
    # P3 (200,100,50) is a more saturated orange in sRGB: red up, blue down (≈ 216, 93, 24)
    assert r > 205 and b < 40 and abs(g - 93) < 8


def test_srgb_tagged_input_keeps_its_pixels_and_loses_its_profile() -> None:
    img = photo()
    img.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = reopen(encode(img, "png"), "png")
    assert "icc_profile" not in out.info
    assert np.array_equal(np.asarray(out), np.asarray(photo()))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "I;16", "RGBA"])
def test_other_modes_become_rgb_or_rgba(mode: str) -> None:
    src = photo(mode=mode) if mode != "I;16" else Image.fromarray(
        np.full((32, 32), 32768, np.uint16))
    out = reopen(encode(src, "png"), "png")
    assert out.mode == ("RGBA" if mode in ("LA", "RGBA") else "RGB")
    if mode == "I;16":
        assert abs(int(np.asarray(out)[0, 0, 0]) - 128) <= 1  # scaled, not clipped to white


def test_embed_icc_setting_tags_srgb() -> None:
    data = encode(photo(), "jpeg", settings=DeliverySettings(embed_icc=True))
    icc = reopen(data, "jpeg").info.get("icc_profile")
    assert icc and "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


# -- master -----------------------------------------------------------------------------------


@pytest.mark.parametrize("master_format", ["raw", "png", "webp"])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_master_round_trips_exactly(master_format: str, mode: str) -> None:
    rng = np.random.default_rng(3)
    shape = (37, 53) if mode == "L" else (37, 53, len(mode))
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    src = Image.fromarray(a, mode)
    data = encode_master(src, DeliverySettings(master_format=master_format))
    back = decode_master(data)
    assert back.mode == mode and back.size == (53, 37)
    assert np.array_equal(np.asarray(back), a)


def test_corrupt_master_is_an_error() -> None:
    data = encode_master(photo())
    with pytest.raises(ValueError, match="corrupt"):
        decode_master(data[:-10])


# -- resize -----------------------------------------------------------------------------------


def test_resize_to_width_keeps_aspect() -> None:
    out = resize_to_width(photo(160, 120), 80)
    assert out.size == (80, 60)
    assert resize_to_width(photo(160, 120), 160).size == (160, 120)
    with pytest.raises(ValueError):
        resize_to_width(photo(), 0)


def test_resize_rgba_has_no_dark_fringe() -> None:
    out = np.asarray(resize_to_width(rgba_half_transparent(), 16)).astype(int)
    edge = out[:, 7:9]  # the columns that straddle the transparent border
    visible = edge[edge[..., 3] > 20]
    assert len(visible) and visible[:, 0].min() > 150  # still red, not darkened by the black


def test_to_srgb_not_fresh_shares_the_pixels_and_drops_the_metadata() -> None:
    """``encode`` only reads the image it saves: no 2000² copy of an sRGB RGB input."""
    src = camera_photo_with_gps()
    src.load()
    shared = to_srgb(src, fresh=False)
    assert shared.info == {} and shared.tobytes() == src.tobytes()
    assert shared.im is src.im  # the same pixels, not a copy
    fresh = to_srgb(src)
    assert fresh.im is not src.im and fresh.tobytes() == src.tobytes()
    # a lazily opened file is read before its pixels are shared
    lazy = camera_photo_with_gps()
    assert to_srgb(lazy, fresh=False).tobytes() == src.tobytes()
