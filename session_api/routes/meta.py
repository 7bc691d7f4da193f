"""GET /, /v1/health, /v1/ready, /v1/status and /v1/me (/metrics: session_api.metrics_listener)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from session_api.deps import CallerDep, ServicesDep
from session_api.errors import TemporarilyUnavailable
from session_api.schemas import (
    Health,
    Me,
    MonthlyCapInfo,
    RateLimitInfo,
    Services,
    SystemStatus,
)

router = APIRouter()

ENDPOINTS = {
    "POST /v1/generate": "Audio + image → lip-sync avatar video",
    "GET /v1/jobs/{id}": "Get job status and details",
    "GET /v1/jobs/{id}/result": "Get presigned download URL for completed job output",
    "GET /v1/jobs": "List your recent jobs",
    "POST /v1/realtime/session": (
        "Create realtime avatar session (conversation or passthrough mode)"
    ),
    "PATCH /v1/realtime/session/{id}": "Hot-swap face image mid-session",
    "GET /v1/realtime/session/{id}": "Get session status",
    "DELETE /v1/realtime/session/{id}": "End session and release GPU",
    "GET /v1/health": "Health check",
    "GET /v1/status": "System status",
    "GET /v1/me": "Your API key info and usage",
}


@router.get("/")
async def index() -> dict[str, Any]:
    return {
        "name": "Atlas API",
        "version": "8.0",
        "endpoints": ENDPOINTS,
        "authentication": "Authorization: Bearer <api_key>",
        "flow": {
            "offline": "POST → 202 {job_id} → poll GET /v1/jobs/{id} → GET /v1/jobs/{id}/result",
            "realtime": "POST /v1/realtime/session → connect to LiveKit with token → DELETE to end",
        },
    }


@router.get("/v1/health")
@router.head("/v1/health", operation_id="health_head")  # load balancers probe with HEAD
async def health() -> Health:
    return Health(status="all systems go", services={"avatar_generation": "online"})


@router.get("/v1/ready", include_in_schema=False)
async def ready(services: ServicesDep) -> dict[str, Any]:
    """Readiness (for load balancers and k8s): 503 while the database does not answer."""
    try:
        async with services.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        raise TemporarilyUnavailable("The database is not reachable.") from exc
    return {"status": "ready", "checks": {"database": "ok"}}


@router.get("/v1/status")
async def status(caller: CallerDep, services: ServicesDep) -> SystemStatus:
    depth = await services.queue.depth()
    # Pending jobs mean every worker slot is taken; so do realtime sessions at capacity.
    realtime_full = services.realtime is not None and await services.realtime.busy()
    generation = "busy" if depth["pending"] > 0 or realtime_full else "available"
    return SystemStatus(
        status="operational",
        services=Services(avatar_generation=generation, voice_synthesis="unavailable"),
    )


@router.get("/v1/me")
async def me(caller: CallerDep, services: ServicesDep) -> Me:
    used = await services.queue.usage(caller.key.id)
    return Me(
        authenticated=True,
        key_prefix=caller.key.key_prefix,
        name=caller.key.name,
        tier="self_hosted",
        requests_used=used,
        rate_limit=RateLimitInfo(
            requests_per_minute=caller.window.limit,
            remaining=caller.window.remaining,
            resets_in=f"{caller.window.resets_in_s}s",
        ),
        monthly_cap=MonthlyCapInfo(limit=caller.key.monthly_cap, used=used),
        billing="self_hosted",
    )
