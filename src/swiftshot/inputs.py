"""The one place product images are decoded: every entry point (API, CLI, jobs) comes here.

``load_image`` turns untrusted bytes into an 8-bit sRGB ``RGB`` or ``RGBA`` image with EXIF
orientation applied, or raises :class:`InputError` with an HTTP status, a message that says what
was wrong and what is allowed, and a short machine code.

Order matters for safety: the byte size is checked before anything is parsed, and the pixel
count is read from the header and checked before any pixel is decoded, so a decompression bomb
(a small file that claims gigapixels) costs nothing.

Animated files (animated WebP/PNG/AVIF) are accepted and their **first frame** is used: a seller
who uploads a spin animation still gets a catalog image, and the first frame is the one
marketplaces show. GIF is refused: it is palette-limited and no marketplace wants it as a master.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageFile, ImageOps, UnidentifiedImageError

from swiftshot.config import LimitsSettings
from swiftshot.errors import ServiceError

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "AVIF")
ALLOWED_TEXT = "JPEG, PNG, WebP or AVIF"

# Magic bytes of formats people commonly try, so a refusal can name what was sent.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"), (b"%PDF", "PDF"), (b"<svg", "SVG"), (b"<?xml", "XML/SVG"),
    (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"),
)

# Signatures of the allowed formats: a file that starts like one but will not open is corrupt
# (422), not of the wrong type (415).
_ALLOWED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "JPEG"), (0, b"\x89PNG\r\n\x1a\n", "PNG"), (8, b"WEBP", "WebP"),
    (4, b"ftypavi", "AVIF"),
)

_SRGB = ImageCms.createProfile("sRGB")


class InputError(Exception):
    """A product image that cannot be used. ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return f"InputError({self.status}, {self.message!r}, {self.code!r})"


class PhotoError(ValueError, ServiceError):
    """An uploaded photo refused where it was decoded (an engine worker: a file whose header
    passed the front's checks but whose data is truncated or corrupt): the same 4xx, code and
    message as the front's own refusal (``api.common.load_upload``), as a ServiceError, so it
    crosses the executor's boundary and reaches the caller (or a batch item) unchanged."""

    def __init__(self, error: InputError, param: str) -> None:
        ServiceError.__init__(self, f"{param}: {error.message}", status=error.status,
                              code=error.code, param=param)


@dataclass(frozen=True, eq=False)
class PhotoFile:
    """An uploaded photo whose header passed every check that needs no pixels (:func:`check_header`:
    byte size, format, dimensions, pixel count, decompression bomb), decoded where its pixels
    are used — an engine worker process decodes the file it is sent anyway, so the front does
    not decode it too (~16 ms at 2000²). :meth:`decode` gives what :func:`load_image` gives
    under the front's limits, or raises :class:`PhotoError` (truncated or corrupt data)."""

    data: bytes
    param: str = "product"
    """The request field it came in (``product``, ``images[1]`` ...), for the refusal."""
    max_side: int | None = None
    """The front's ``limits.max_work_side``: the decode is reduced as the front would have."""

    def decode(self) -> Image.Image:
        # The bytes and pixel limits were checked on the header by the front, under its own
        # settings; the decode is bounded by the front's work side, not by this process's.
        admitted = LimitsSettings(max_upload_bytes=max(1, len(self.data)), max_pixels=1 << 62)
        try:
            return load_image(self.data, admitted, max_side=self.max_side)
        except InputError as e:
            raise PhotoError(e, self.param) from None


def check_header(data: bytes, limits: LimitsSettings, param: str = "product") -> PhotoFile:
    """The refusals of :func:`load_image` that the header decides (everything but truncated or
    corrupt pixel data), without decoding a pixel; raises :class:`InputError`."""
    _open(data, limits).close()
    return PhotoFile(data, param, limits.max_work_side)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_b64(s: str, max_bytes: int | None = None) -> bytes:
    """Decode base64 (plain or a ``data:image/...;base64,`` URL); InputError 422 if malformed."""
    if not isinstance(s, str) or not s.strip():
        raise InputError(422, "image_file_b64 is empty; send the image as base64 text", "empty_image")
    text = s.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise InputError(422, "data URL must be base64-encoded (data:image/png;base64,...)",
                             "invalid_base64")
    text = "".join(text.split())
    if max_bytes is not None and len(text) * 3 // 4 > max_bytes + 3:
        raise InputError(413, f"image is larger than the {max_bytes} bytes allowed "
                              f"(base64 text of {len(text)} characters)", "file_too_large")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(422, "image_file_b64 is not valid base64", "invalid_base64") from None


def _sniff(data: bytes) -> str | None:
    head = data[:16].lstrip()
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _open(data: bytes, limits: LimitsSettings) -> Image.Image:
    if not data:
        raise InputError(422, f"image is empty (0 bytes); send a {ALLOWED_TEXT} file", "empty_image")
    if len(data) > limits.max_upload_bytes:
        raise InputError(413, f"image is {len(data)} bytes; the most allowed is "
                              f"{limits.max_upload_bytes} bytes", "file_too_large")
    try:
        with warnings.catch_warnings():
            # Our own limit below is the one that decides; Pillow's bomb check only backs it up.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as e:
        raise InputError(413, f"image dimensions are too large (decompression bomb): {e}; "
                              f"the most allowed is {limits.max_pixels} pixels",
                         "too_many_pixels") from None
    except UnidentifiedImageError:
        for offset, magic, name in _ALLOWED_MAGIC:
            if data[offset:offset + len(magic)] == magic:
                raise InputError(422, f"{name} file is corrupt or has an impossible header "
                                      "(zero size?)", "corrupt_image") from None
        sniffed = _sniff(data)
        if sniffed:
            raise InputError(415, f"{sniffed} images are not accepted; send {ALLOWED_TEXT}",
                             "unsupported_format") from None
        raise InputError(415, f"file is not a recognisable image; send {ALLOWED_TEXT}",
                         "unsupported_format") from None
    except Exception as e:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        # Pillow's plugins raise OSError, SyntaxError, ValueError, EOFError, and (AVIF)
        # RuntimeError on corrupt data; whatever it is, it is the file's fault, not a 500.
        raise InputError(422, f"image header is corrupt: {type(e).__name__}: {e}",
                         "corrupt_image") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InputError(422, f"image has zero size ({w}x{h})", "empty_image")
    if w * h > limits.max_pixels:
        raise InputError(413, f"image is {w}x{h} = {w * h} pixels; the most allowed is "
                              f"{limits.max_pixels} pixels", "too_many_pixels")
    return im


def _decode(im: Image.Image) -> Image.Image:
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            prev = ImageFile.LOAD_TRUNCATED_IMAGES
            if prev:  # someone set it process-wide; truncated input must still be refused here
                ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                im.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = prev
    except Exception as e:  # noqa: BLE001 - see _open
        raise InputError(422, f"image data is truncated or corrupt: {type(e).__name__}: {e}",
                         "corrupt_image") from None
    return im


def _to_8bit(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.dtype != np.uint16 and arr.max(initial=0) <= 255:
            return Image.fromarray(arr.astype(np.uint8), "L")
        # 16-bit grey: round to the nearest 8-bit level (65535 / 255 = 257).
        scaled = (arr.astype(np.uint32) + 128) // 257
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        arr = np.asarray(im)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    return im


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info)


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    alpha = _has_alpha(im)
    if im.mode == "P" or im.mode in ("1", "L", "LA", "La", "PA", "RGBa", "I;16"):
        im = im.convert("RGBA" if alpha else "RGB")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            desc = (ImageCms.getProfileDescription(src) or "").lower()
            if "srgb" not in desc:
                out_mode = "RGBA" if im.mode == "RGBA" else "RGB"
                if im.mode not in ("RGB", "RGBA", "CMYK"):
                    im = im.convert("RGB")
                im = ImageCms.profileToProfile(im, src, _SRGB, outputMode=out_mode,
                                               renderingIntent=ImageCms.Intent.PERCEPTUAL,
                                               inPlace=False) or im
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # an unreadable profile is not worth refusing the photo; assume sRGB
    if im.mode == "CMYK":
        # No usable profile: Adobe-style JPEG CMYK is stored inverted; Pillow's convert copes.
        im = im.convert("RGB")
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if alpha else "RGB")
    if im.mode == "RGBA":
        lo, _ = im.getchannel("A").getextrema()
        if lo == 255:  # an all-opaque alpha says nothing about the product; drop it
            im = im.convert("RGB")
    return im


def peek_size(data: bytes, limits: LimitsSettings | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, with the same refusals as :func:`load_image`
    for bytes and pixel limits (nothing is decoded): what memory admission is priced on."""
    im = _open(data, limits or LimitsSettings())
    try:
        return im.size
    finally:
        im.close()


_RESIZABLE = frozenset({"RGB", "RGBA", "L", "LA", "RGBX", "CMYK"})


def _reduce(im: Image.Image, max_side: int | None) -> Image.Image:
    """``im`` with its longer side at most ``max_side`` (area-averaging; aspect kept)."""
    w, h = im.size
    if not max_side or max(w, h) <= max_side or im.mode not in _RESIZABLE:
        return im
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
    out.info = dict(im.info)
    return out


def load_image(data: bytes, limits: LimitsSettings | None = None, *,
               max_side: int | None = -1) -> Image.Image:
    """Decode an uploaded product photo safely. See the module docstring for what is allowed.

    Returns an 8-bit sRGB ``RGB`` image, or ``RGBA`` when the file has a real alpha channel,
    at most ``max_side`` pixels on its longer side (default ``limits.max_work_side``; None:
    full size). A larger JPEG is decoded at reduced scale (``draft``: 1/2, 1/4 or 1/8 in the
    DCT, never below ``max_side``), so its full-size pixels are never held; other formats are
    reduced right after decoding, before any further copy is made.
    """
    limits = limits or LimitsSettings()
    if max_side == -1:
        max_side = limits.max_work_side
    im = _open(data, limits)
    fmt = im.format
    w, h = im.size
    if max_side and fmt == "JPEG" and max(w, h) > max_side:
        scale = max_side / max(w, h)
        im.draft(im.mode, (max(1, int(w * scale + 0.999)), max(1, int(h * scale + 0.999))))
    im = _decode(im)
    im = _reduce(im, max_side)
    icc = im.info.get("icc_profile")
    try:
        if im.getexif().get(0x0112, 1) != 1:  # without an orientation tag it would only copy
            im = ImageOps.exif_transpose(im) or im
    except (OSError, ValueError, SyntaxError, TypeError, KeyError):
        pass  # broken EXIF: keep the pixels as stored rather than refuse the photo
    im = _to_8bit(im)
    im = _to_srgb(im, icc)
    im = _reduce(im, max_side)  # modes reduced only after conversion (palette, 16-bit)
    im.info.pop("icc_profile", None)
    im.info.pop("exif", None)
    im.format = fmt  # type: ignore[misc]
    return im
