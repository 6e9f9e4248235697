"""Encoders for delivered images (PNG, JPEG, WebP, AVIF) and the lossless cached master.

Every delivered file is sRGB with no metadata carried over from the input: a seller's photo may
hold GPS coordinates, camera serials or a wide-gamut ICC profile, and none of that may leak into
a public image. What we do write is XMP naming the IPTC DigitalSourceType (Google Merchant
Center asks for it on AI-generated and AI-edited product images).
"""

from __future__ import annotations

import io
import struct
from typing import Final

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from swiftshot.config import DeliverySettings

FORMATS: Final[tuple[str, ...]] = ("png", "jpeg", "webp", "avif")
ALIASES: Final[dict[str, str]] = {"jpg": "jpeg"}
_CONTENT_TYPES: Final[dict[str, str]] = {
    "png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "avif": "image/avif",
}
_EXTENSIONS: Final[dict[str, str]] = {"png": "png", "jpeg": "jpg", "webp": "webp", "avif": "avif"}
_PIL_NAMES: Final[dict[str, str]] = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}
SOURCE_TYPES: Final[tuple[str, ...]] = (
    "trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia", "algorithmicMedia",
    "compositeSynthetic", "digitalCapture", "composite",
)
SOURCE_TYPE_BASE: Final[str] = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# Raw master: magic, mode code, width, height, then the pixel bytes. Chosen over PNG level 1 by
# `python -m swiftshot.benchmarks.studio` (bench_codecs): a master is encoded once per render
# and decoded once per new variant: 2 ms for both against 116 ms with PNG level 1 at 1024²,
# which saves only 62% of the bytes on a grainy render. Decoding checks the magic, so PNG and
# WebP masters stay readable too.
_MASTER_MAGIC: Final[bytes] = b"SSM1"
_MASTER_MODES: Final[dict[str, int]] = {"RGB": 3, "RGBA": 4, "L": 1}
_MASTER_HEADER = struct.Struct("<4sBII")


class UnsupportedFormat(ValueError):
    """The format asked for is not one we encode."""


def normalize_format(fmt: str) -> str:
    f = ALIASES.get(fmt.lower(), fmt.lower())
    if f not in FORMATS:
        raise UnsupportedFormat(f"unsupported format {fmt!r}; use one of {', '.join(FORMATS)}")
    return f


def content_type(fmt: str) -> str:
    return _CONTENT_TYPES[normalize_format(fmt)]


def extension(fmt: str) -> str:
    return _EXTENSIONS[normalize_format(fmt)]


def xmp_packet(source_type: str) -> bytes:
    """An XMP packet holding only Iptc4xmpExt:DigitalSourceType."""
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown source_type {source_type!r}; use one of {', '.join(SOURCE_TYPES)}")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'Iptc4xmpExt:DigitalSourceType="{SOURCE_TYPE_BASE}{source_type}"/>'
        "</rdf:RDF></x:xmpmeta>"
        '<?xpacket end="r"?>'
    ).encode()


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_SRGB_BYTES = _SRGB.tobytes()


def to_srgb(image: Image.Image, *, keep_alpha: bool = True, fresh: bool = True) -> Image.Image:
    """A fresh RGB or RGBA image in sRGB, carrying none of the input's metadata.

    ``fresh=False``: where nothing needs converting, the result shares the input's pixels (a
    new image object with empty ``info``, no copy): for a caller that only reads it, as
    ``encode`` does (a 2000² copy is a few ms of the studio path).

    An embedded ICC profile is applied (a Display P3 phone photo keeps its colours) and then
    dropped, as is an EXIF orientation (the pixels are turned); EXIF, XMP, comments and the rest
    never reach the new image's ``info``.
    """
    if "exif" in image.info and image.getexif().get(0x0112, 1) != 1:
        # The orientation tag is about to be dropped with the rest of EXIF: apply it first.
        image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    icc = image.info.get("icc_profile")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # 16-bit and float greys: Pillow's convert clips rather than scales them.
        arr = np.asarray(image, dtype=np.float32)
        scale = 255.0 / 65535.0 if image.mode != "F" or arr.max() > 1.0 else 255.0
        image = Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L")
    target = "RGBA" if has_alpha and keep_alpha else "RGB"
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "sRGB" not in (ImageCms.getProfileDescription(src) or ""):
                alpha = image.getchannel("A") if image.mode == "RGBA" else None
                base = image.convert("RGB") if image.mode == "RGBA" else image
                out_mode = "RGB" if base.mode != "L" else "L"
                image = ImageCms.profileToProfile(base, src, _SRGB, outputMode=out_mode)
                if alpha is not None:
                    image = image.convert("RGB")
                    image.putalpha(alpha)
        except (OSError, ImageCms.PyCMSError):
            pass  # an unreadable profile: treat the pixels as sRGB, as browsers do
    if image.mode != target:
        out = image.convert(target)
    else:
        image.load()  # (a file opened lazily has no pixels until then)
        out = image.copy() if fresh else image._new(image.im)
    out.info = {}
    return out


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """RGBA over an opaque background (JPEG has no alpha)."""
    base = Image.new("RGB", image.size, background)
    base.paste(image, mask=image.getchannel("A"))
    return base


def encode(image: Image.Image, fmt: str, quality: int | None = None, *,
           source_type: str | None = None, settings: DeliverySettings | None = None) -> bytes:
    """Encode ``image`` as ``fmt`` (png, jpeg/jpg, webp, avif) for delivery.

    ``quality`` (1-100) applies to the lossy formats; omitted, it comes from
    ``settings.quality``. ``source_type`` names the IPTC DigitalSourceType written as XMP.
    """
    fmt = normalize_format(fmt)
    settings = settings or DeliverySettings()
    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100; got {quality}")
    q = quality if quality is not None else settings.quality.get(fmt, 85)
    img = to_srgb(image, fresh=False)  # only read from here on: no copy of the pixels
    if fmt == "jpeg" and img.mode == "RGBA":
        img = flatten(img)
    params: dict[str, object] = {}
    xmp = xmp_packet(source_type) if source_type else None
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add(b"sRGB", b"\x00")  # 13 bytes: "these pixels are sRGB" without a 588-byte ICC
        if xmp:
            info.add_itxt("XML:com.adobe.xmp", xmp.decode())
        params.update(pnginfo=info, compress_level=settings.png_compress_level)
    elif fmt == "jpeg":
        # optimize=True (Huffman tables fitted to the image): ~10% fewer bytes for ~5 ms at 1024²
        params.update(quality=q, optimize=True, progressive=settings.jpeg_progressive,
                      subsampling="4:2:0" if q < 90 else "4:4:4")
    elif fmt == "webp":
        params.update(quality=q, method=settings.webp_method)
    else:  # avif
        params.update(quality=q, speed=settings.avif_speed)
    if xmp and fmt != "png":
        params["xmp"] = xmp
    if settings.embed_icc and fmt != "png":
        params["icc_profile"] = _SRGB_BYTES
    buf = io.BytesIO()
    img.save(buf, _PIL_NAMES[fmt], **params)
    return buf.getvalue()


def encode_master(image: Image.Image, settings: DeliverySettings | None = None) -> bytes:
    """The lossless form a master render is cached in (``settings.master_format``; raw: a
    13-byte header and the pixels)."""
    if image.mode not in _MASTER_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    fmt = (settings or DeliverySettings()).master_format
    if fmt == "webp" and image.mode == "L":
        fmt = "png"  # WebP has no grey mode: it would come back as RGB
    if fmt != "raw":
        buf = io.BytesIO()
        if fmt == "png":
            image.save(buf, "PNG", compress_level=1)
        else:
            image.save(buf, "WEBP", lossless=True, quality=0, method=0, exact=True)
        return buf.getvalue()
    header = _MASTER_HEADER.pack(_MASTER_MAGIC, _MASTER_MODES[image.mode], image.width, image.height)
    return header + image.tobytes()


def decode_master(data: bytes) -> Image.Image:
    """Inverse of :func:`encode_master`; also reads PNG/WebP masters written by other settings."""
    if data[:4] == _MASTER_MAGIC:
        _, bands, w, h = _MASTER_HEADER.unpack_from(data)
        mode = {v: k for k, v in _MASTER_MODES.items()}.get(bands)
        body = memoryview(data)[_MASTER_HEADER.size:]
        if mode is None or len(body) != w * h * bands:
            raise ValueError("corrupt master: header and pixel byte count disagree")
        return Image.frombytes(mode, (w, h), bytes(body))
    img = Image.open(io.BytesIO(data), formats=["PNG", "WEBP"])
    img.load()
    return img


def resize_to_width(image: Image.Image, width: int) -> Image.Image:
    """Lanczos downscale (or upscale) to ``width``, keeping the aspect ratio."""
    if width < 1:
        raise ValueError(f"width must be ≥ 1; got {width}")
    if width == image.width:
        return image
    height = max(1, round(image.height * width / image.width))
    if image.mode == "RGBA":
        # Premultiplied resampling: no dark fringes where transparent pixels hold black.
        return image.convert("RGBa").resize((width, height), Image.Resampling.LANCZOS).convert("RGBA")
    return image.resize((width, height), Image.Resampling.LANCZOS)
