"""Operations: liveness, readiness, Prometheus metrics, and the small web page at ``/``."""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from swiftshot import telemetry
from swiftshot.api.common import json_response, service
from swiftshot.api.errors import error_response, retry_after
from swiftshot.delivery import negotiate

router = APIRouter()


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when ready to take work, else 503 saying why; both name the executor (inline,
    process, ray) and, per engine, its workers/replicas and how many are warm."""
    svc = service(request)
    detail = svc.readiness()
    if svc.ready:
        body = {"status": "ready", "engine": svc.info.name, "version": svc.info.version,
                **detail}
        degraded = _degraded(svc)
        if degraded:  # still 200: it serves (from the other tiers); operators are told why
            body["status"] = "degraded"
            body["degraded"] = degraded
        return json_response(body)
    error = getattr(request.app.state, "start_error", None)
    if svc.draining:
        reason, msg = "draining", "the server is draining and takes no new work"
    elif error:
        reason, msg = "start_failed", f"the engine failed to start: {error}"
    else:
        reason, msg = "warming_up", "the engine is loading and warming up"
        why = "; ".join(f"{e['name']}: {e['error']}" for e in detail.get("engines", ())
                        if e.get("error"))
        if why:  # e.g. a load that failed and is being tried again
            msg = f"{msg} ({why})"
    resp = error_response(503, msg, code=reason,
                          headers=retry_after(svc.settings.server.retry_after_s))
    body = orjson.loads(resp.body)
    body.update({"status": reason, **detail})
    return json_response(body, status=503, headers=dict(retry_after(svc.settings.server.retry_after_s)))


def _degraded(svc: object) -> dict[str, str]:
    """Cache tiers that are off or failing (a full or read-only disk ...): tier → why."""
    out: dict[str, str] = {}
    for tier in getattr(getattr(svc, "cache", None), "tiers", ()):
        health = getattr(tier, "health", None)
        why = health() if callable(health) else None
        if why:
            out[f"cache.{tier.name}"] = why
    return out


async def metrics(request: Request) -> Response:
    request.app.state.auth.require_metrics(request.headers)  # follows auth (auth.metrics_open)
    # set here, not per request: the hot path pays nothing for it
    telemetry.HTTP_IN_FLIGHT.set(request.app.state.inflight.count)
    return Response(generate_latest(telemetry.REGISTRY), media_type=CONTENT_TYPE_LATEST)


_INDEX: bytes | None = None


async def index(request: Request) -> Response:
    global _INDEX
    if _INDEX is None:
        _INDEX = (Path(__file__).parent.parent / "web" / "index.html").read_bytes()
    return Response(_INDEX, media_type="text/html; charset=utf-8",
                    headers={"Accept-CH": negotiate.ACCEPT_CH, "Cache-Control": "no-cache"})


router.add_route("/healthz", healthz, methods=["GET", "HEAD"])
router.add_route("/readyz", readyz, methods=["GET", "HEAD"])
router.add_route("/metrics", metrics, methods=["GET"])
router.add_route("/", index, methods=["GET", "HEAD"])
