"""API keys: who is calling, their priority tier, their rate limit, whether they may purge.

Keys come from ``auth.api_keys_file`` (TOML or JSON), either flat or under a ``keys`` table::

    [keys."sk-live-abc123"]
    tenant = "acme"
    tier = "realtime"        # highest priority this key may ask for
    rate_per_s = 20
    burst = 40
    admin = false            # may purge the cache

Sent as ``Authorization: Bearer KEY`` (what the openai client sends) or ``X-Api-Key: KEY``.
Lookup goes through a SHA-256 of the key and ends in ``hmac.compare_digest``, so response time
says nothing about how much of a guessed key was right. With no file, auth is off: every caller
is the anonymous tenant at ``auth.anonymous_tier``, unlimited.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swiftshot.api.errors import ApiError, retry_after
from swiftshot.api.ratelimit import TokenBuckets
from swiftshot.config import PRIORITIES, AuthSettings, Priority

RANK = {p: i for i, p in enumerate(PRIORITIES)}
"""0 is the most urgent class."""


@dataclass(frozen=True)
class Principal:
    tenant: str
    tier: Priority
    rate_per_s: float | None
    """None: unlimited (auth off)."""
    burst: int
    admin: bool


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(min_length=1, max_length=128)
    tier: Priority = "standard"
    rate_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)
    admin: bool = False


def load_keys(path: Path, settings: AuthSettings) -> dict[bytes, tuple[bytes, Principal]]:
    """sha256(key) → (key, principal). Raises ValueError naming the file and the bad entry."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"auth.api_keys_file {str(path)!r} cannot be read: {e.strerror}") from None
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"auth.api_keys_file {str(path)!r} is not valid "
                         f"{'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    entries = data.get("keys", data) if isinstance(data, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"auth.api_keys_file {str(path)!r} holds no keys; expected a table of "
                         "key → {tenant, tier, rate_per_s, burst, admin}")
    out: dict[bytes, tuple[bytes, Principal]] = {}
    for key, entry in entries.items():
        try:
            e = _KeyEntry.model_validate(entry)
        except ValidationError as err:
            raise ValueError(f"auth.api_keys_file {str(path)!r}: entry for key "
                             f"{key[:4]}…: {err.errors()[0]['msg']}") from None
        k = key.encode()
        out[hashlib.sha256(k).digest()] = (k, Principal(
            e.tenant, e.tier, e.rate_per_s or settings.default_rate_per_s,
            e.burst or settings.default_burst, e.admin))
    return out


class Auth:
    def __init__(self, settings: AuthSettings) -> None:
        self._keys = load_keys(settings.api_keys_file, settings) if settings.api_keys_file else None
        # Not admin: with auth off, purges are taken from loopback callers only (require_admin).
        self.anonymous = Principal("anonymous", settings.anonymous_tier, None, 1, False)
        self.metrics_open = settings.metrics_open
        self.buckets = TokenBuckets()

    @property
    def enabled(self) -> bool:
        return self._keys is not None

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller, or ApiError 401 when auth is on and the key is missing or unknown."""
        if self._keys is None:
            return self.anonymous
        token = _token(headers)
        if not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY' or "
                           "'X-Api-Key: KEY'", code="missing_api_key")
        t = token.encode()
        found = self._keys.get(hashlib.sha256(t).digest())
        if found is None or not hmac.compare_digest(found[0], t):
            raise ApiError(401, "invalid API key", code="invalid_api_key")
        return found[1]

    def admit(self, who: Principal, cost: float = 1.0) -> None:
        """Spend ``cost`` of the tenant's rate; ApiError 429 with Retry-After when it is spent."""
        if who.rate_per_s is None:
            return
        wait = self.buckets.take(who.tenant, who.rate_per_s, who.burst, cost)
        if wait > 0:
            from swiftshot import telemetry

            telemetry.REJECTED.labels("rate_limit").inc()
            raise ApiError(429, f"rate limit of tenant {who.tenant!r} reached "
                           f"({who.rate_per_s:g}/s, burst {who.burst}); retry in {wait:.1f} s",
                           code="rate_limit_exceeded", headers=retry_after(wait))

    def require_admin(self, who: Principal, client: str | None = None,
                      headers: Mapping[str, str] | None = None) -> None:
        """Purges: an admin key; with auth off, a caller on loopback with no proxy between
        (``client``: the peer address; ``headers``: the request's, for forwarding headers)."""
        if who.admin:
            return
        if not self.enabled:
            if is_direct_loopback(client, headers or {}):
                return
            raise ApiError(403, "purging the cache needs an admin API key; with auth off (no "
                           "auth.api_keys_file) purges are accepted only from loopback, not "
                           "through a proxy", code="admin_required")
        raise ApiError(403, "purging the cache needs an admin API key (admin = true in "
                       "auth.api_keys_file)", code="admin_required")

    def require_metrics(self, headers: Mapping[str, str]) -> None:
        """``/metrics``: any valid key when auth is on, unless ``auth.metrics_open``."""
        if self.enabled and not self.metrics_open:
            self.authenticate(headers)


_FORWARDING = ("x-forwarded-for", "forwarded", "x-real-ip")


def is_direct_loopback(client: str | None, headers: Mapping[str, str]) -> bool:
    """The peer is a loopback address and no proxy says it forwarded someone else."""
    if not client or any(headers.get(h) for h in _FORWARDING):
        return False
    try:
        return ipaddress.ip_address(client.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    return headers.get("x-api-key") or None


def priority(who: Principal, header: str | None) -> Priority:
    """``X-Priority`` if given, but never above the key's tier."""
    if header is None:
        return who.tier
    asked = header.strip().lower()
    if asked not in RANK:
        raise ApiError(400, f"X-Priority must be one of {', '.join(PRIORITIES)}; got {header!r}",
                       param="X-Priority", code="invalid_value")
    return asked if RANK[asked] >= RANK[who.tier] else who.tier  # type: ignore[return-value]
