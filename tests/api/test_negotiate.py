"""Format, quality and width choice from Accept and Client Hints (pure functions)."""

from __future__ import annotations

import pytest

from swiftshot.delivery import negotiate as n

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
QUALITY = {"jpeg": 85, "webp": 80, "avif": 55}


@pytest.mark.parametrize("accept,fmt", [
    (None, "jpeg"), ("", "jpeg"),
    (CHROME, "avif"), (SAFARI_15, "webp"),
    ("image/jpeg", "jpeg"), ("image/jpg", "jpeg"), ("image/png", "png"),
    ("image/*", "jpeg"), ("*/*", "jpeg"),
    ("image/avif;q=0.4, image/webp;q=0.6, image/jpeg;q=0.5", "webp"),
    ("image/avif;q=0, image/webp", "webp"),
    ("image/avif;q=bogus, image/jpeg", "jpeg"),
    ("IMAGE/WEBP", "webp"),
    ("image/png, image/jpeg;q=0.9", "png"),
    ("image/gif", None), ("text/html", None), ("image/avif;q=0", None),
])
def test_pick_format(accept, fmt):
    assert n.pick_format(accept) == fmt


def test_parse_accept_keeps_highest_q_and_clamps():
    assert n.parse_accept("image/webp;q=0.3, image/webp;q=0.7, image/avif;q=7") == {
        "image/webp": 0.7, "image/avif": 1.0}


@pytest.mark.parametrize("accept,expected", [
    ("application/json", False), ("image/*", True), ("image/webp", True),
    ("application/json, image/*;q=0.5", False), ("image/png, application/json;q=0.1", True),
    (None, False), ("*/*", False),
])
def test_wants_image(accept, expected):
    assert n.wants_image(accept) is expected


def test_hints_parse_both_spellings_and_ignore_garbage():
    h = n.parse_hints({"save-data": "on", "ect": "3g", "downlink": "0.4", "dpr": "2",
                       "sec-ch-dpr": "3", "width": "600", "sec-ch-width": "900"})
    assert h == n.ClientHints(True, "3g", 0.4, 3.0, 900)
    junk = n.parse_hints({"save-data": "yes", "ect": "6g", "downlink": "fast", "dpr": "-1",
                          "width": "nan"})
    assert junk == n.ClientHints() and not junk.any


@pytest.mark.parametrize("headers,quality", [
    ({}, 80),
    ({"save-data": "on"}, 45),
    ({"ect": "2g"}, 40), ({"ect": "slow-2g"}, 40), ({"ect": "3g"}, 60), ({"ect": "4g"}, 80),
    ({"downlink": "0.5"}, 60), ({"downlink": "10"}, 80),
    ({"save-data": "on", "ect": "2g"}, 40),
])
def test_quality_drops_on_slow_or_metered_links(headers, quality):
    assert n.adapt_quality(80, n.parse_hints(headers)) == quality


def test_quality_never_below_floor_and_never_raised():
    assert n.adapt_quality(20, n.parse_hints({"ect": "2g"})) == 20
    assert n.adapt_quality(50, n.parse_hints({"save-data": "on"})) == n.MIN_QUALITY


@pytest.mark.parametrize("master,headers,width", [
    (1024, {}, None),
    (1024, {"width": "300"}, 320),
    (1024, {"width": "1000"}, None),  # rounds up past the master: keep the master
    (1024, {"width": "1500"}, None),
    (2048, {"width": "1500"}, 1536),
    (1024, {"width": "800", "dpr": "2", "save-data": "on"}, 480),  # 1x pixels when saving data
    (1024, {"dpr": "2"}, None),
])
def test_width_from_hints(master, headers, width):
    assert n.adapt_width(master, n.parse_hints(headers)) == width


def test_negotiate_combines_and_respects_a_fixed_format():
    v = n.negotiate(CHROME, {"save-data": "on", "width": "500"}, master_width=1024,
                    default_quality=QUALITY)
    assert v == n.Variant("avif", 30, 640)
    fixed = n.negotiate(CHROME, {}, master_width=1024, default_quality=QUALITY, fmt="png")
    assert fixed == n.Variant("png", None, None)
    assert n.negotiate("image/gif", {}, master_width=1024, default_quality=QUALITY) is None
