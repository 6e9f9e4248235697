"""Pick the variant a viewer should get: format from ``Accept``, quality and width from Client Hints.

Pure functions of header values, so the rules are unit-tested without a server.

* Format: AVIF > WebP > JPEG among what ``Accept`` allows, weighed by q-values (a higher q wins;
  equal q falls back to that order, smallest files first). AVIF and WebP only when named
  outright (``*/*`` from a browser that cannot decode them must not get them); ``image/*`` or
  ``*/*`` admit JPEG; PNG is served only when it is the one thing asked for.
* Quality: ``Save-Data: on``, a slow ``ECT`` (slow-2g, 2g, 3g) or a low ``Downlink`` lower it.
* Width: ``Width`` / ``Sec-CH-Width`` (physical pixels) shrink the image, rounded *up* to a short
  ladder of widths so a handful of variants serve every screen; never wider than the master.
  Save-Data asks for 1x pixels on high-DPR screens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFERENCE = ("avif", "webp", "jpeg")
"""Best compression first: the order used when q-values tie."""
MEDIA_TYPES = {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg", "png": "image/png"}
_BY_MEDIA = {v: k for k, v in MEDIA_TYPES.items()} | {"image/jpg": "jpeg", "image/pjpeg": "jpeg"}

WIDTH_LADDER = (64, 128, 256, 320, 480, 640, 768, 960, 1080, 1280, 1536, 1920, 2048)
"""Widths a hinted width is rounded up to: bounds how many variants one master can have."""
QUALITY_STEP = 5
MIN_QUALITY = 30

ACCEPT_CH = "Save-Data, ECT, Downlink, DPR, Width, Sec-CH-DPR, Sec-CH-Width"
"""Client Hints the server asks browsers for (the ``Accept-CH`` response header)."""
HINT_HEADERS = ("save-data", "ect", "downlink", "dpr", "width", "sec-ch-dpr", "sec-ch-width")
VARY_HINTS = "Save-Data, ECT, Downlink, DPR, Width, Sec-CH-DPR, Sec-CH-Width"
"""What a hint-adapted response varies on (plus ``Accept`` when the format was negotiated)."""

_ECT_FACTOR = {"slow-2g": 0.5, "2g": 0.5, "3g": 0.75, "4g": 1.0}
_SAVE_DATA_FACTOR = 0.6
_LOW_DOWNLINK_MBPS = 1.0
_LOW_DOWNLINK_FACTOR = 0.75


@dataclass(frozen=True)
class ClientHints:
    save_data: bool = False
    ect: str | None = None
    downlink_mbps: float | None = None
    dpr: float | None = None
    width: int | None = None

    @property
    def any(self) -> bool:
        return self is not _NO_HINTS and self != _NO_HINTS


_NO_HINTS = ClientHints()


def parse_accept(header: str | None) -> dict[str, float]:
    """``Accept`` → {media range: q}. Malformed q-values count as 0 (not acceptable)."""
    out: dict[str, float] = {}
    if not header:
        return out
    for part in header.split(","):
        fields = part.strip().split(";")
        media = fields[0].strip().lower()
        if not media:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        out[media] = max(q, out.get(media, 0.0))
    return out


def _q_for(fmt: str, accept: Mapping[str, float]) -> float:
    media = MEDIA_TYPES[fmt]
    if media in accept:
        return accept[media]
    if fmt == "jpeg" and "image/jpg" in accept:
        return accept["image/jpg"]
    if fmt != "jpeg":
        # A wildcard admits JPEG only: browsers that decode AVIF or WebP name them outright,
        # and "*/*" from one that does not must not get a file it cannot show.
        return 0.0
    return accept.get("image/*", accept.get("*/*", 0.0))


def pick_format(accept_header: str | None, *, default: str = "jpeg") -> str | None:
    """The best format the viewer accepts, or None when it accepts none of ours (→ 406).

    No ``Accept`` header at all means anything goes: ``default``.
    """
    accept = parse_accept(accept_header)
    if not accept:
        return default
    best, best_q = None, 0.0
    for fmt in PREFERENCE:
        q = _q_for(fmt, accept)
        if q > best_q:
            best, best_q = fmt, q
    png_q = _q_for("png", accept)
    if png_q > best_q:
        return "png"
    return best


def wants_image(accept_header: str | None) -> bool:
    """True when ``Accept`` prefers image bytes over JSON (``image/*``, ``image/webp`` ...)."""
    accept = parse_accept(accept_header)
    image_q = max((q for m, q in accept.items() if m.startswith("image/")), default=0.0)
    json_q = max(accept.get("application/json", 0.0), accept.get("application/*", 0.0))
    return image_q > 0 and image_q >= json_q


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        v = float(value.strip().strip('"'))
    except ValueError:
        return None
    return v if v > 0 and v == v and v != float("inf") else None


def parse_hints(headers: Mapping[str, str]) -> ClientHints:
    """Client Hints from request headers (lower-case names); unparseable hints are ignored.

    Both the legacy names (``DPR``, ``Width``) and the ``Sec-CH-`` spellings are read; the
    ``Sec-CH-`` ones win when both are sent.
    """
    if not any(name in headers for name in HINT_HEADERS):
        return _NO_HINTS  # the common case, on every cache hit: no hint sent
    save = (headers.get("save-data") or "").strip().lower() == "on"
    ect = (headers.get("ect") or "").strip().strip('"').lower() or None
    if ect not in _ECT_FACTOR:
        ect = None
    downlink = _float(headers.get("downlink"))
    dpr = _float(headers.get("sec-ch-dpr")) or _float(headers.get("dpr"))
    width_f = _float(headers.get("sec-ch-width")) or _float(headers.get("width"))
    width = int(width_f) if width_f is not None and width_f >= 1 else None
    hints = ClientHints(save, ect, downlink, dpr, width)
    return hints if hints.any else _NO_HINTS


def adapt_quality(base: int, hints: ClientHints) -> int:
    """Lower ``base`` for a viewer on a slow or metered link; rounded to a few steps."""
    factor = 1.0
    if hints.save_data:
        factor = min(factor, _SAVE_DATA_FACTOR)
    if hints.ect is not None:
        factor = min(factor, _ECT_FACTOR[hints.ect])
    if hints.downlink_mbps is not None and hints.downlink_mbps < _LOW_DOWNLINK_MBPS:
        factor = min(factor, _LOW_DOWNLINK_FACTOR)
    if factor == 1.0:
        return base
    q = int(base * factor) // QUALITY_STEP * QUALITY_STEP
    return max(min(MIN_QUALITY, base), q)


def adapt_width(master_width: int, hints: ClientHints) -> int | None:
    """Width to resize to, or None to keep the master's width."""
    if hints.width is None:
        return None
    want = hints.width
    if hints.save_data and hints.dpr and hints.dpr > 1:
        want = max(1, int(want / hints.dpr))
    rung = next((w for w in WIDTH_LADDER if w >= want), WIDTH_LADDER[-1])
    return rung if rung < master_width else None


@dataclass(frozen=True)
class Variant:
    fmt: str
    quality: int | None
    """None for PNG (lossless)."""
    width: int | None


def negotiate(accept_header: str | None, headers: Mapping[str, str], *, master_width: int,
              default_quality: Mapping[str, int], fmt: str | None = None) -> Variant | None:
    """The variant for this viewer; ``fmt`` fixes the format (a URL with an extension).

    Returns None when ``Accept`` admits none of the formats served.
    """
    if fmt is None:
        fmt = pick_format(accept_header)
        if fmt is None:
            return None
    hints = parse_hints(headers)
    quality = None if fmt == "png" else adapt_quality(default_quality[fmt], hints)
    return Variant(fmt, quality, adapt_width(master_width, hints))
