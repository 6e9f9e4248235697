"""The request mix a shop's traffic looks like, as plain data: shared by ``bench serve`` and Locust.

Pure Python (``random.Random`` only) so Locust's gevent workers can import it without asyncio,
numpy or the server's code. Every draw goes through one seeded ``Random``, so a run is
reproducible from its seed.

What is mixed:
  * prompts drawn from a Zipf law over a fixed list, so popular backdrops repeat (cache hits)
    and a long tail does not;
  * the priority class of each request (``X-Priority``);
  * a share of product uploads (a seller's photo composed onto a backdrop);
  * a share of image fetches after a generation, each with a browser-like set of ``Accept`` and
    Client Hint headers (``Save-Data``, ``DPR``, ``Width``, ``ECT``).
"""

from __future__ import annotations

import bisect
import io
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

PRIORITIES = ("realtime", "standard", "batch", "prefetch")
DEFAULT_PRIORITY_MIX = "realtime=0.2,standard=0.6,batch=0.2"

_MATERIALS = ("white marble", "oak wood", "brushed concrete", "linen cloth", "terrazzo",
              "slate", "sand", "velvet", "paper", "walnut", "travertine", "ceramic tile")
_COLOURS = ("warm beige", "soft grey", "pale pink", "sage green", "navy", "ivory",
            "terracotta", "sky blue", "charcoal", "butter yellow")
_LIGHTS = ("soft morning light", "studio softbox", "hard noon shadow", "golden hour",
           "overcast daylight")


def default_prompts() -> list[str]:
    """600 distinct backdrop prompts, most 'popular' first (rank 1 is the Zipf head)."""
    combos = itertools.product(_MATERIALS, _COLOURS, _LIGHTS)
    prompts = [f"{c} {m} backdrop, {light}" for m, c, light in combos]
    # A fixed shuffle: the head of the Zipf law should not be one material only.
    random.Random(7).shuffle(prompts)
    return prompts


class ZipfSampler:
    """Ranks 0..n-1 with P(k) ∝ 1 / (k+1)^s: a finite Zipf law, sampled by inverse CDF."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        if n < 1:
            raise ValueError(f"Zipf needs at least one item; got n={n}")
        if s < 0:
            raise ValueError(f"Zipf exponent must be ≥ 0; got s={s}")
        self.n, self.s, self.rng = n, s, rng
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        self.probabilities = [w / total for w in weights]
        self._cdf = list(itertools.accumulate(self.probabilities))
        self._cdf[-1] = 1.0

    def sample(self) -> int:
        return bisect.bisect_left(self._cdf, self.rng.random())


def parse_shares(text: str, allowed: tuple[str, ...], what: str) -> dict[str, float]:
    """``"realtime=0.2,standard=0.6,batch=0.2"`` → shares normalised to sum 1."""
    shares: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in allowed:
            raise ValueError(f"{what}: {part!r} is not NAME=SHARE with NAME one of "
                             f"{', '.join(allowed)}; e.g. {DEFAULT_PRIORITY_MIX!r}")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"{what}: share of {name!r} must be a number; got {value!r}") from None
        if share < 0:
            raise ValueError(f"{what}: share of {name!r} must be ≥ 0; got {share}")
        shares[name] = share
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"{what}: shares must add up to more than 0; got {text!r}")
    return {k: v / total for k, v in shares.items()}


# Browser-like delivery headers for GET /i/{key}: (weight, headers).
HEADER_PROFILES: tuple[tuple[float, dict[str, str]], ...] = (
    (0.45, {"Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            "Sec-CH-DPR": "2", "DPR": "2", "Width": "800"}),  # Chrome desktop, retina
    (0.25, {"Accept": "image/avif,image/webp,*/*", "DPR": "3", "Width": "390",
            "ECT": "4g"}),  # phone
    (0.10, {"Accept": "image/avif,image/webp,*/*", "Save-Data": "on", "ECT": "3g",
            "DPR": "2", "Width": "360"}),  # phone on a slow plan
    (0.15, {"Accept": "image/webp,*/*"}),  # Safari before AVIF
    (0.05, {"Accept": "image/png,image/*;q=0.8"}),  # old client, no modern formats
)


@dataclass(frozen=True)
class MixConfig:
    prompts: tuple[str, ...] = field(default_factory=lambda: tuple(default_prompts()))
    zipf_s: float = 1.1
    """Zipf exponent: 0 is uniform; ~1 is typical of catalog traffic."""
    priority_mix: str = DEFAULT_PRIORITY_MIX
    upload_share: float = 0.0
    """Share of requests that upload a product photo to cut out (needs the server's upload route)."""
    fetch_share: float = 0.5
    """Share of generations followed by a GET of the image with browser headers."""
    size: str = "512x512"
    output_format: str = "webp"
    model: str = "studio"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("upload_share", "fetch_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1; got {v}")
        if not self.prompts:
            raise ValueError("the prompt list is empty")
        parse_shares(self.priority_mix, PRIORITIES, "priority mix")


@dataclass(frozen=True)
class PlannedRequest:
    """One request the mix asks for; the client decides when and how to send it."""

    kind: str
    """"generate" (POST /v1/images/generations) or "upload" (a product photo to cut out)."""
    priority: str
    body: dict[str, Any]
    prompt_rank: int
    fetch_headers: dict[str, str] | None
    """Headers of the follow-up GET of the image, or None for no follow-up."""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Priority": self.priority}


class Mix:
    """Draws :class:`PlannedRequest` one by one from a :class:`MixConfig`."""

    def __init__(self, config: MixConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.zipf = ZipfSampler(len(config.prompts), config.zipf_s, self.rng)
        shares = parse_shares(config.priority_mix, PRIORITIES, "priority mix")
        self._classes = list(shares)
        self._class_weights = list(shares.values())
        self._profile_weights = [w for w, _ in HEADER_PROFILES]
        self._seeds = _FreshSeeds(self.rng)

    def next(self) -> PlannedRequest:
        c = self.config
        rank = self.zipf.sample()
        priority = self.rng.choices(self._classes, self._class_weights)[0]
        kind = "upload" if self.rng.random() < c.upload_share else "generate"
        body: dict[str, Any] = {"model": c.model, "prompt": c.prompts[rank], "size": c.size,
                                "n": 1, "response_format": "url", "output_format": c.output_format}
        fetch = None
        if self.rng.random() < c.fetch_share and kind == "generate":
            fetch = dict(self.rng.choices(HEADER_PROFILES, self._profile_weights)[0][1])
        return PlannedRequest(kind, priority, body, rank, fetch)

    def unique(self, i: int) -> PlannedRequest:
        """A request no cache can answer: a prompt of the mix (so the engine's cost is the
        mix's) with a seed of its own. For capacity calibration."""
        c = self.config
        body = {"model": c.model, "prompt": c.prompts[self.zipf.sample()], "size": c.size, "n": 1,
                "response_format": "url", "output_format": c.output_format,
                "seed": self._seeds.next(i)}
        return PlannedRequest("generate", "standard", body, -1, None)


class _FreshSeeds:
    """Seeds not used by any earlier request of this process (derived seeds are 32-bit hashes;
    a collision would be one cache hit in a calibration, and is made unlikely by the offset)."""

    def __init__(self, rng: random.Random) -> None:
        self.base = rng.randrange(2**31)

    def next(self, i: int) -> int:
        return (self.base + 7919 * i) % 2**32


def product_png(rng: random.Random, side: int = 256) -> bytes:
    """A small synthetic product photo (a coloured bottle shape on white) for upload requests."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    colour = tuple(rng.randrange(40, 200) for _ in range(3))
    w = side // 4
    draw.rectangle((side // 2 - w // 2, side // 3, side // 2 + w // 2, side - side // 8), fill=colour)
    draw.rectangle((side // 2 - w // 6, side // 6, side // 2 + w // 6, side // 3), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
