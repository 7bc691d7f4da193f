"""The realtime endpoints: POST/GET/PATCH(+POST alias)/DELETE /v1/realtime/session, and the
LiveKit webhook receiver POST /v1/livekit/webhook."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from session_api.config import Settings
from session_api.deps import Caller, ServicesDep, get_caller
from session_api.errors import (
    AlreadyEnded,
    InvalidInput,
    InvalidMode,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RateLimitExceeded,
    TemporarilyUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from session_api.faces import FaceFile, check_face_url
from session_api.json_limits import loads_limited
from session_api.livekit import LiveKitError, WebhookRejected
from session_api.pricing import Mode, estimated_cost, pricing_text
from session_api.realtime import MODES, NewSession, RealtimeService
from session_api.realtime_events import apply_webhook
from session_api.schemas import (
    RealtimeFaceUpdated,
    RealtimeSessionCreated,
    RealtimeSessionEnded,
    RealtimeSessionStatus,
    iso_z,
    whole_seconds,
)
from session_api.services import Services
from session_api.uploads import UploadedPart, new_upload_dir, receive_parts

logger = logging.getLogger("session_api")
router = APIRouter()

MIN_DURATION_S = 10
JSON_MAX_BYTES = 64 * 1024
TEXT_MAX_BYTES = 8 * 1024
WEBHOOK_MAX_BYTES = 1024 * 1024
# Optional extras handed to the worker in the dispatch metadata's `options`, with size limits.
OPTION_LIMITS = {
    "voice_id": 200,
    "instructions": 4000,
    "persona": 4000,
    "greeting": 1000,
    "language": 32,
}
ALIASES = {"voice": "voice_id"}
TEXT_FIELDS = frozenset({"face_url", "mode", "max_duration_seconds", *OPTION_LIMITS, *ALIASES})


# --- dependencies ------------------------------------------------------------------------------
async def realtime_caller(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """The API key, counted against its rate limit; realtime names its 429 `rate_limited`."""
    try:
        return await get_caller(services, authorization)
    except RateLimitExceeded as exc:
        raise RateLimited(exc.message, retry_after_s=int(exc.extra["retry_after_seconds"])) from exc


def realtime_service(services: ServicesDep) -> RealtimeService:
    if services.realtime is None:
        missing = ", ".join(services.settings.livekit_missing)
        raise TemporarilyUnavailable(
            f"Realtime sessions are not configured: set {missing} to enable them."
        )
    return services.realtime


RealtimeCaller = Annotated[Caller, Depends(realtime_caller)]
RealtimeDep = Annotated[RealtimeService, Depends(realtime_service)]


# --- request bodies ----------------------------------------------------------------------------
@dataclass(slots=True)
class Body:
    fields: dict[str, object]
    face: UploadedPart | None = None


async def read_body(request: Request, tmp: Path, *, max_face_bytes: int) -> Body:
    """JSON or multipart/form-data (the face streamed to `tmp`); an empty body is {}."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _read_multipart(request, tmp, max_face_bytes=max_face_bytes)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > JSON_MAX_BYTES:
            raise PayloadTooLarge("JSON body exceeds 64 KB.")
    if not raw.strip():
        return Body(fields={})
    if not content_type.startswith("application/json"):
        raise UnsupportedMediaType("Content-Type must be application/json or multipart/form-data.")
    data = loads_limited(bytes(raw), max_bytes=JSON_MAX_BYTES)
    if not isinstance(data, dict):
        raise ValidationFailed("Body must be a JSON object.")
    return Body(fields=data)


async def _read_multipart(request: Request, tmp: Path, *, max_face_bytes: int) -> Body:
    try:
        parts = await receive_parts(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=None,  # the face cap is checked on the face part below
            directory=tmp,
            max_total=max_face_bytes + len(TEXT_FIELDS) * TEXT_MAX_BYTES,
            wanted=frozenset({"face", *TEXT_FIELDS}),
        )
    except PayloadTooLarge as exc:
        raise PayloadTooLarge("Face image exceeds the 10 MB limit.") from exc
    face = parts.pop("face", None)
    if face is not None and face.size > max_face_bytes:
        raise PayloadTooLarge("Face image exceeds the 10 MB limit.")
    fields: dict[str, object] = {}
    for name, part in parts.items():
        if part.filename is not None or part.size > TEXT_MAX_BYTES:
            raise InvalidInput(f"Field {name} must be a short text value.")
        fields[name] = part.path.read_bytes().decode("utf-8", "replace")
    return Body(fields=fields, face=face)


def parse_mode(value: object) -> Mode:
    if value is None or value == "":
        return "conversation"
    if value not in MODES:
        raise InvalidMode()
    return value


def parse_max_duration(value: object, *, settings: Settings, key_limit: int | None) -> int:
    ceiling = settings.realtime_max_duration_s
    if key_limit is not None:
        ceiling = min(ceiling, key_limit)
    if value is None or value == "":
        return ceiling
    seconds = whole_seconds(value)
    if seconds is None or not MIN_DURATION_S <= seconds <= ceiling:
        raise InvalidInput(
            f"max_duration_seconds must be an integer from {MIN_DURATION_S} to {ceiling}."
        )
    return seconds


def parse_options(fields: Mapping[str, object]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in fields.items():
        target = ALIASES.get(name, name)
        limit = OPTION_LIMITS.get(target)
        if limit is None or value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise InvalidInput(f"{name} must be text of at most {limit} characters.")
        options[target] = value
    return options


async def face_of(body: Body, rt: RealtimeService, tmp: Path, *, url: str | None) -> FaceFile:
    """The checked face from the upload or the (already statically checked) URL."""
    if body.face is not None:
        return await rt.checker.check(body.face.path, body.face.size)
    assert url is not None
    dest = tmp / "face-from-url"
    size = await rt.fetcher.fetch(url, dest)
    return await rt.checker.check(dest, size)


def face_url_of(body: Body, settings: Settings) -> str | None:
    """face_url after its static checks; 422 when neither face_url nor face, 400 when both."""
    raw = body.fields.get("face_url")
    given = raw is not None and raw != ""
    if given and body.face is not None:
        raise InvalidInput("Provide either face_url or face, not both.")
    if not given and body.face is None:
        raise ValidationFailed("Missing required fields: face_url or face.")
    return check_face_url(raw, settings.realtime_face_allow_networks) if given else None


def client_url(settings: Settings) -> str:
    url = settings.livekit_public_url or settings.livekit_url or ""
    if url.startswith("http"):
        url = "ws" + url.removeprefix("http")
    return url


def _tmp_base(services: Services) -> Path | None:
    return services.upload_dir if services.upload_dir.is_dir() else None


# --- endpoints ---------------------------------------------------------------------------------
@router.post("/v1/realtime/session")
async def create_session(
    request: Request, caller: RealtimeCaller, rt: RealtimeDep, services: ServicesDep
) -> RealtimeSessionCreated:
    settings = services.settings
    with new_upload_dir(_tmp_base(services)) as tmp:
        body = await read_body(request, Path(tmp), max_face_bytes=settings.realtime_face_max_bytes)
        mode = parse_mode(body.fields.get("mode"))
        url = face_url_of(body, settings)
        max_duration = parse_max_duration(
            body.fields.get("max_duration_seconds"),
            settings=settings,
            key_limit=caller.key.max_session_s,
        )
        options = parse_options(body.fields)
        face = await face_of(body, rt, Path(tmp), url=url)
        created = await rt.create(
            NewSession(
                key_id=caller.key.id,
                mode=mode,
                max_duration_s=max_duration,
                options=options,
                face=face,
            )
        )
    return RealtimeSessionCreated(
        session_id=created.session_id,
        livekit_url=client_url(settings),
        token=created.token,
        room=created.room,
        mode=created.mode,
        max_duration_seconds=created.max_duration_s,
        pricing=pricing_text(created.cents_per_hour),
    )


@router.get("/v1/realtime/session/{session_id}")
async def get_session(
    session_id: str, caller: RealtimeCaller, rt: RealtimeDep
) -> RealtimeSessionStatus:
    view = await rt.view(session_id, key_id=caller.key.id)
    return RealtimeSessionStatus(
        session_id=view.session_id,
        status=view.status,
        room=view.room,
        started_at=iso_z(view.started_at),
        ended_at=iso_z(view.ended_at),
        duration_seconds=view.duration_s,
        estimated_cost=view.estimated_cost,
        error_code=view.error_code,
    )


@router.patch("/v1/realtime/session/{session_id}")
@router.post("/v1/realtime/session/{session_id}")
async def swap_face(
    session_id: str,
    request: Request,
    caller: RealtimeCaller,
    rt: RealtimeDep,
    services: ServicesDep,
) -> RealtimeFaceUpdated:
    settings = services.settings
    with new_upload_dir(_tmp_base(services)) as tmp:
        body = await read_body(request, Path(tmp), max_face_bytes=settings.realtime_face_max_bytes)
        url = face_url_of(body, settings)
        await rt.require_active(session_id, key_id=caller.key.id)
        allowed, window = await services.limiter.hit_scoped(
            "face-swap", session_id, settings.realtime_swaps_per_minute
        )
        if not allowed:
            raise RateLimited(
                "Too many face swaps — wait before retrying.", retry_after_s=window.resets_in_s
            )
        face = await face_of(body, rt, Path(tmp), url=url)
        await rt.swap_face(session_id, key_id=caller.key.id, face=face)
    return RealtimeFaceUpdated(
        session_id=session_id, status="active", message="Face updated successfully."
    )


@router.delete("/v1/realtime/session/{session_id}")
async def end_session(
    session_id: str, caller: RealtimeCaller, rt: RealtimeDep
) -> RealtimeSessionEnded:
    row = await rt.store.get(session_id, key_id=caller.key.id)
    if row is None or row.status not in ("active", "ended"):
        raise NotFound("Session not found.")
    ended = await rt.end(session_id, reason="deleted") if row.status == "active" else None
    if ended is None:  # ended before, or by another path (reaper, webhook) just now
        raise AlreadyEnded()
    return RealtimeSessionEnded(
        session_id=session_id,
        status="ended",
        duration_seconds=ended.duration_s,
        estimated_cost=estimated_cost(ended.duration_s, ended.cents_per_hour),
    )


@router.post("/v1/livekit/webhook", include_in_schema=False)
async def livekit_webhook(
    request: Request,
    rt: RealtimeDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> dict[str, bool]:
    """LiveKit's signed webhooks: joins, ends and failures (session_api/realtime_events.py)."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > WEBHOOK_MAX_BYTES:
            raise PayloadTooLarge("Webhook body too large.")
    try:
        event = rt.livekit.receive_webhook(raw.decode("utf-8", "replace"), authorization)
    except WebhookRejected as exc:
        raise Unauthorized("Invalid LiveKit webhook signature.") from exc
    try:
        await apply_webhook(rt, event)
    except LiveKitError as exc:  # LiveKit retries a webhook that was not answered 2xx
        raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
    return {"received": True}
