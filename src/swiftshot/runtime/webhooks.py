"""Webhook signing, URL checks and one delivery attempt.

Signature: ``X-Swiftshot-Signature: sha256=<hex>`` is HMAC-SHA256 of the raw body with the key
``jobs.webhook_secret``. The body carries a ``timestamp`` (Unix seconds) that is repeated in
``X-Swiftshot-Timestamp``; because the timestamp is *inside* the signed bytes, a receiver that
checks the signature, that both agree, and that the time is recent (say within 5 minutes)
cannot be fooled by a replayed delivery. ``X-Swiftshot-Delivery`` is unique per attempt and the
job ``id`` is stable, so receivers can also de-duplicate: delivery is at-least-once (a crash
between a 2xx and recording it sends again).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

SIGNATURE_HEADER = "X-Swiftshot-Signature"
TIMESTAMP_HEADER = "X-Swiftshot-Timestamp"
DELIVERY_HEADER = "X-Swiftshot-Delivery"
EVENT_HEADER = "X-Swiftshot-Event"


class WebhookURLError(ValueError):
    """A webhook URL we refuse to call; the message says why and what is allowed."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str | None) -> bool:
    """What a receiver does (and what the tests do): constant-time compare."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


def check_url(url: str, *, allow_private: bool) -> str:
    """Only absolute http(s) URLs; no private/loopback targets unless allowed (SSRF)."""
    if not isinstance(url, str) or len(url) > 2048:
        raise WebhookURLError("webhook_url must be an http(s) URL of at most 2048 characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookURLError(
            f"webhook_url must be an absolute http:// or https:// URL; got {url!r}")
    if parts.username or parts.password:
        raise WebhookURLError("webhook_url must not carry credentials; sign with the shared "
                              "secret instead")
    if not allow_private:
        for addr in _resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
            ip = ipaddress.ip_address(addr)
            if not ip.is_global:
                raise WebhookURLError(
                    f"webhook_url host {parts.hostname!r} resolves to {addr}, a private, "
                    "loopback or reserved address; only public hosts are allowed (set "
                    "jobs.webhook_allow_private to call hosts on your own network)")
    return url.strip()


def _resolve(host: str, port: int) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port)})
    except socket.gaierror as e:
        raise WebhookURLError(f"webhook_url host {host!r} cannot be resolved: {e}") from None


async def post(client: httpx.AsyncClient, url: str, body: bytes, *, secret: str | None,
               timestamp: int, delivery_id: str, timeout_s: float) -> str | None:
    """One attempt. None on a 2xx answer, else a short reason for the retry log."""
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: str(timestamp),
               DELIVERY_HEADER: delivery_id, EVENT_HEADER: "batch.completed",
               "User-Agent": "swiftshot-webhook/1"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    try:
        r = await client.post(url, content=body, headers=headers, timeout=timeout_s,
                              follow_redirects=False)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"[:300]
    if 200 <= r.status_code < 300:
        return None
    return f"HTTP {r.status_code}"
