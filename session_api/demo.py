"""The demo page at /demo and its same-origin session broker (the spec's backend-proxy pattern).

The page never holds an API key. With `ATLAS_DEMO=1` (`make dev` sets it) `atlas serve` also
answers the page's `/api/...` calls: it forwards each one to its own `/v1/...` endpoint with a
server-side key, exactly what the spec's Next.js routes do. Off by default.

Built to face the internet (session_api.demo_visitors has the pieces):
  - bodies are capped per route as they stream (JSON 64 KB, uploads at the API's own caps),
    with the API's upload idle and total timeouts (408);
  - requests from another site's pages are refused (Origin / Sec-Fetch-Site: 403);
  - per visitor (client IP; ATLAS_DEMO_TRUSTED_PROXIES names proxies whose X-Forwarded-For is
    believed): 1 live session and 3 creates a minute by default, speech and jobs per minute;
  - sessions last at most ATLAS_DEMO_MAX_SESSION_S (300 s); visitors send a face, face_url and
    mode, nothing else (no instructions, persona, durations: the operator pays for those);
  - the broker's key is minted with a monthly cap of offline generations and a session ceiling,
    and the broker holds at most ATLAS_DEMO_CAPACITY sessions (default half of the realtime
    capacity), so paying keys keep the rest;
  - a session or job id works only in the browser that created it (a signed cookie);
  - X-Callback-URL is never forwarded (webhooks are signed with the operator's secret).

Routes (the paths of the spec's React SDK and SDK Integration examples):
  POST   /api/session, /api/realtime-session          -> POST   /v1/realtime/session
  GET    /api/session/{id}                             -> GET    /v1/realtime/session/{id}
  PATCH  /api/session/{id} (POST too)                  -> PATCH  /v1/realtime/session/{id}
  DELETE /api/session/{id}, /api/realtime-session/{id} -> DELETE /v1/realtime/session/{id}
  POST   /api/generate, GET /api/jobs/{id}[/result]    -> the offline job endpoints
  POST   /api/speech {"text"}                          -> a WAV of it (session_api.demo_speech)
  GET    /api/demo                                     -> what the page needs to know
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from session_api import auth, demo_speech
from session_api.demo_visitors import (
    COOKIE,
    IdCookie,
    IpNetwork,
    capped_body,
    check_same_origin,
    parse_networks,
    read_capped,
    visitor_of,
    within,
)
from session_api.errors import (
    ApiError,
    Forbidden,
    InvalidInput,
    NoCapacity,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from session_api.realtime_store import LIVE
from session_api.services import Services
from session_api.uploads import UploadedPart, new_upload_dir, receive_parts

logger = logging.getLogger("session_api")

# The built page: web/dist/demo beside the packages (`make web` builds it).
DEFAULT_DIST = Path(__file__).resolve().parents[1] / "web" / "dist" / "demo"
KEY_FILE = "demo-broker.key"
BROKER_RPM = 600  # the page polls jobs and a kiosk retries: more than a person's 30 a minute
JSON_MAX_BYTES = 64 * 1024
FORM_MARGIN_BYTES = 64 * 1024  # multipart framing and short text fields beside a file
VISITOR_FIELDS = frozenset({"face_url", "mode"})  # all a visitor may set on a create
# The API's create fields a visitor may not set (multipart parts kept to be refused).
REFUSED_FIELDS = frozenset(
    {"max_duration_seconds", "voice_id", "voice", "instructions", "persona", "greeting", "language"}
)
COOKIE_MAX_AGE_S = 24 * 3600


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATLAS_", extra="ignore", hide_input_in_errors=True
    )

    demo: bool = False  # ATLAS_DEMO=1 turns the broker on
    demo_dir: Path | None = None  # ATLAS_DEMO_DIR: another build of the page
    demo_api_key: SecretStr | None = None  # ATLAS_DEMO_API_KEY: else one is minted and kept
    # ATLAS_DEMO_DEFAULT_MODE: the mode of JSON creates that name none (the API's default is
    # conversation); `passthrough` lets the spec's snippet run where no STT/LLM/TTS is set up.
    demo_default_mode: Literal["conversation", "passthrough"] | None = None
    # ATLAS_DEMO_TRUSTED_PROXIES: networks (JSON list) of reverse proxies whose X-Forwarded-For
    # names the visitor; empty: the socket's peer is the visitor.
    demo_trusted_proxies: list[str] = Field(default_factory=list)
    # ATLAS_DEMO_ALLOWED_ORIGINS: pages of other origins that may use the broker (JSON list);
    # ATLAS_PUBLIC_URL and the page's own host always may.
    demo_allowed_origins: list[str] = Field(default_factory=list)
    demo_sessions_per_visitor: int = Field(default=1, ge=1)  # live sessions at once
    demo_creates_per_minute: int = Field(default=3, ge=1)
    demo_speech_per_minute: int = Field(default=10, ge=1)
    demo_jobs_per_minute: int = Field(default=3, ge=1)
    demo_max_session_s: int = Field(default=300, ge=10)
    demo_monthly_cap: int = Field(default=1000, ge=0)  # offline generations a month, all visitors
    # Live sessions of all visitors together; default: half the realtime capacity (at least 1).
    demo_capacity: int | None = Field(default=None, ge=1)


class DemoNotBuilt(ApiError):
    status, code = 404, "not_found"
    default_message = (
        "The demo page is not built: run `make web` (needs Node.js >= 20) or `make dev`."
    )


class BrokerOff(ApiError):
    status, code = 404, "not_found"
    default_message = "The demo session broker is off: start atlas serve with ATLAS_DEMO=1."


class HashedAssets(StaticFiles):
    """The page's built assets: their names carry a hash of their content, so a browser may
    keep them for good (a rebuilt page names new files); without this every visit fetched the
    whole bundle again (the API's default is no-store)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def install_demo(app: FastAPI, demo: DemoSettings | None = None) -> None:
    """Serve the page at /demo (when built) and, when enabled, the broker under /api."""
    demo = demo or DemoSettings()
    dist = demo.demo_dir or DEFAULT_DIST
    app.include_router(_page_router(dist))
    if (dist / "assets").is_dir():
        app.mount("/demo/assets", HashedAssets(directory=dist / "assets"), name="demo-assets")
    if (dist / "faces").is_dir():
        app.mount("/demo/faces", StaticFiles(directory=dist / "faces"), name="demo-faces")
    app.include_router(_broker_router(Broker(demo) if demo.demo else None))


def _page_router(dist: Path) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/demo")
    @router.get("/demo/")
    async def page() -> FileResponse:
        index = dist / "index.html"
        if not index.is_file():
            raise DemoNotBuilt()
        # no-cache: a rebuilt page is picked up at once (the assets are content-hashed)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    return router


class _Recorded:
    """A body stream whose ApiError (413, 408) is kept, to answer it rather than the API's view."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.error: ApiError | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except ApiError as exc:
            self.error = exc
            raise


class Broker:
    """Forwards the page's calls to this app's own /v1 endpoints with the server-side key."""

    def __init__(self, demo: DemoSettings) -> None:
        self.demo = demo
        self._configured = demo.demo_api_key.get_secret_value() if demo.demo_api_key else None
        self._key: auth.AuthedKey | None = None
        self._secret: str | None = self._configured
        self._lock = asyncio.Lock()
        self._admit = asyncio.Lock()
        self.default_mode = demo.demo_default_mode
        self.speech = demo_speech.SpeechSettings()
        self.trusted: list[IpNetwork] = parse_networks(demo.demo_trusted_proxies)
        self._owners: dict[str, str] = {}  # live (or starting) session id -> visitor
        self._pending: dict[str, int] = {}  # visitor -> creates in flight

    # --- the key ------------------------------------------------------------------------------
    async def key(self, services: Services) -> tuple[str, auth.AuthedKey]:
        async with self._lock:
            if self._secret is None or self._key is None:
                if self._secret is None:
                    self._secret = await _load_or_mint_key(services, self.demo)
                self._key = await auth.authenticate(services.db, f"Bearer {self._secret}")
            return self._secret, self._key

    def forget_key(self) -> None:
        """The key stopped working (revoked): mint or read a new one next time."""
        self._key = None
        if self._configured is None:
            self._secret = None

    # --- visitors -----------------------------------------------------------------------------
    def visitor(self, request: Request) -> str:
        """Who is calling, after refusing another site's pages (403)."""
        services: Services = request.app.state.services
        host = request.headers.get("host", "")
        if request.client is not None and within(request.client.host, self.trusted):
            host = request.headers.get("x-forwarded-host", host).split(",")[-1].strip()
        check_same_origin(
            request,
            allowed_origins=[services.settings.public_url, *self.demo.demo_allowed_origins],
            trust_host=host,
        )
        return visitor_of(request, self.trusted)

    async def limit(self, request: Request, scope: str, visitor: str, per_minute: int) -> None:
        services: Services = request.app.state.services
        allowed, window = await services.limiter.hit_scoped(f"demo-{scope}", visitor, per_minute)
        if not allowed:
            raise RateLimited(
                f"Slow down: at most {per_minute} a minute from one visitor.",
                retry_after_s=window.resets_in_s,
            )

    def cookie(self, request: Request) -> IdCookie:
        services: Services = request.app.state.services
        return IdCookie(services.settings.secret_key.get_secret_value())

    def owned(self, request: Request, item_id: str) -> str:
        """`item_id` when this browser created it; 404 (as for an unknown id) when not."""
        if item_id not in self.cookie(request).read(request):
            raise NotFound("Session or job not found.")
        return item_id

    def remember(self, request: Request, response: Response, item_id: str) -> None:
        response.set_cookie(
            COOKIE,
            self.cookie(request).value_with(request, item_id),
            max_age=COOKIE_MAX_AGE_S,
            path="/api",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https"
            or request.headers.get("x-forwarded-proto", "") == "https",
        )

    async def admit(self, services: Services, visitor: str, key_id: int) -> None:
        """Reserve a create for `visitor`: 429 past their live sessions, 503 past the broker's."""
        async with self._admit:
            await self._forget_ended(services, key_id)
            mine = sum(1 for v in self._owners.values() if v == visitor)
            mine += self._pending.get(visitor, 0)
            if mine >= self.demo.demo_sessions_per_visitor:
                raise RateLimited(
                    "You already have a live demo session: end it first.",
                    retry_after_s=services.settings.realtime_retry_after_s,
                )
            if len(self._owners) + sum(self._pending.values()) >= self._capacity(services):
                raise NoCapacity(retry_after_s=services.settings.realtime_retry_after_s)
            self._pending[visitor] = self._pending.get(visitor, 0) + 1

    def admitted(self, visitor: str, session_id: str | None) -> None:
        """The reserved create finished: the new session counts (or, failed, nothing does)."""
        left = self._pending.get(visitor, 1) - 1
        if left > 0:
            self._pending[visitor] = left
        else:
            self._pending.pop(visitor, None)
        if session_id is not None:
            self._owners[session_id] = visitor

    def ended(self, session_id: str) -> None:
        self._owners.pop(session_id, None)

    def _capacity(self, services: Services) -> int:
        if self.demo.demo_capacity is not None:
            return self.demo.demo_capacity
        return max(1, services.settings.realtime_capacity // 2)

    async def _forget_ended(self, services: Services, key_id: int) -> None:
        if services.realtime is None:
            return
        for session_id in list(self._owners):
            row = await services.realtime.store.get(session_id, key_id=key_id)
            if row is None or row.status not in LIVE:
                self._owners.pop(session_id, None)

    # --- forwarding ---------------------------------------------------------------------------
    async def forward(
        self,
        request: Request,
        method: str,
        path: str,
        *,
        content: _Recorded | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        services: Services = request.app.state.services
        headers: dict[str, str] = {}
        if content is not None and (ctype := request.headers.get("content-type")):
            headers["content-type"] = ctype  # only this header: never X-Callback-URL or cookies
        for _attempt in range(2):
            secret, _ = await self.key(services)
            headers["authorization"] = f"Bearer {secret}"
            transport = httpx.ASGITransport(app=request.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://atlas") as client:
                upstream = await client.request(
                    method,
                    path,
                    headers=headers,
                    content=content,
                    files=files,
                    data=data,
                    json=json_body,
                )
            if isinstance(content, _Recorded) and content.error is not None:
                raise content.error
            if upstream.status_code != Forbidden.status:
                break
            self.forget_key()  # revoked: a new key, once (a streamed body cannot be sent twice)
            if content is not None:
                break
        return upstream

    def streamed(self, request: Request, max_bytes: int) -> _Recorded:
        settings = request.app.state.services.settings
        return _Recorded(
            capped_body(
                request,
                max_bytes=max_bytes,
                idle_timeout_s=settings.upload_idle_timeout_s,
                total_timeout_s=settings.upload_timeout_s,
            )
        )

    async def read_json(self, request: Request) -> object:
        settings = request.app.state.services.settings
        raw = await read_capped(
            request,
            max_bytes=JSON_MAX_BYTES,
            idle_timeout_s=settings.upload_idle_timeout_s,
            total_timeout_s=settings.upload_timeout_s,
        )
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ValidationFailed("Body is not valid JSON.") from None


def answer(upstream: httpx.Response) -> Response:
    """The API's answer as it is (errors included), with its Retry-After and, after a 408 (the
    rest of the body is never read), Connection: close."""
    kept = {k: v for k, v in upstream.headers.items() if k.lower() in ("retry-after", "connection")}
    return Response(
        content=upstream.content,
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type"),
        headers=kept,
    )


def with_camel_case(created: dict[str, Any]) -> dict[str, Any]:
    """The API's create answer plus `sessionId` and `livekitUrl`: what the React hooks' README
    says a backend returns (`return res.json(); // { sessionId, livekitUrl, token }`), so a page
    written for @northmodellabs/atlas-react works against this broker unchanged."""
    return {**created, "sessionId": created["session_id"], "livekitUrl": created["livekit_url"]}


def _visitor_fields(fields: dict[str, object]) -> dict[str, str]:
    """face_url and mode, as text; 400 for anything a visitor may not set."""
    for name in fields:
        if name not in VISITOR_FIELDS:
            raise InvalidInput(f"The demo broker does not accept {name}: it sets it itself.")
    out: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string.")
        out[name] = value
    return out


async def _load_or_mint_key(services: Services, demo: DemoSettings) -> str:
    """The broker's key, kept in the data dir (mode 0600) so restarts reuse one key.

    It is minted with the demo's caps (monthly generations, session length); a kept key with
    other caps is revoked and replaced, so changing a setting takes effect.
    """
    path = services.settings.data_dir / KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        try:
            authed = await auth.authenticate(services.db, f"Bearer {key}")
        except ApiError:
            logger.info("demo broker key no longer valid; minting a new one")
        else:
            caps = (authed.monthly_cap, authed.max_session_s)
            if caps == (demo.demo_monthly_cap, demo.demo_max_session_s):
                return key
            await auth.revoke_key(services.db, key)
            logger.info("demo broker key has other caps; minting a new one")
    new = await auth.create_key(
        services.db,
        name="demo-broker",
        rpm=BROKER_RPM,
        monthly_cap=demo.demo_monthly_cap,
        max_session_s=demo.demo_max_session_s,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(new.key + "\n")
    logger.info("demo broker key minted", extra={"key_prefix": new.key_prefix})
    return new.key


def _broker_router(broker: Broker | None) -> APIRouter:
    router = APIRouter(prefix="/api", include_in_schema=False)

    def need() -> Broker:
        if broker is None:
            raise BrokerOff()
        return broker

    @router.get("/demo")
    async def info(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        return JSONResponse(
            {
                "broker": broker is not None,
                "realtime": services.realtime is not None,
                "speech": broker is not None and broker.speech.enabled,
                "missing": services.settings.livekit_missing,
            }
        )

    @router.post("/session")
    @router.post("/realtime-session")
    async def create(request: Request) -> Response:
        b = need()
        visitor = b.visitor(request)
        services: Services = request.app.state.services
        with new_upload_dir(_tmp_base(services)) as tmp:
            fields, face = await _create_body(b, request, Path(tmp))
            if not fields.get("mode") and face is None and b.default_mode is not None:
                fields["mode"] = b.default_mode
            fields["max_duration_seconds"] = str(b.demo.demo_max_session_s)
            await b.limit(request, "create", visitor, b.demo.demo_creates_per_minute)
            _, key = await b.key(services)
            await b.admit(services, visitor, key.id)
            session_id: str | None = None
            try:
                if face is None:
                    upstream = await b.forward(
                        request, "POST", "/v1/realtime/session", json_body=dict(fields)
                    )
                else:
                    photo = (face.filename or "face", face.path.read_bytes(), face.content_type)
                    upstream = await b.forward(
                        request, "POST", "/v1/realtime/session", files={"face": photo}, data=fields
                    )
                if upstream.status_code == 200:
                    session_id = str(upstream.json()["session_id"])
            finally:
                b.admitted(visitor, session_id)
        if session_id is None:
            return answer(upstream)
        response = JSONResponse(with_camel_case(upstream.json()))
        b.remember(request, response, session_id)
        return response

    @router.get("/session/{session_id}")
    @router.get("/realtime-session/{session_id}")
    async def status(session_id: str, request: Request) -> Response:
        b = need()
        b.visitor(request)
        path = _session_path(b.owned(request, session_id))
        return answer(await b.forward(request, "GET", path))

    @router.patch("/session/{session_id}")
    @router.post("/session/{session_id}")
    async def swap(session_id: str, request: Request) -> Response:
        b = need()
        b.visitor(request)
        path = _session_path(b.owned(request, session_id))
        settings = request.app.state.services.settings
        multipart = request.headers.get("content-type", "").startswith("multipart/")
        cap = settings.realtime_face_max_bytes + FORM_MARGIN_BYTES if multipart else JSON_MAX_BYTES
        return answer(await b.forward(request, "PATCH", path, content=b.streamed(request, cap)))

    @router.delete("/session/{session_id}")
    @router.delete("/realtime-session/{session_id}")
    async def end(session_id: str, request: Request) -> Response:
        b = need()
        b.visitor(request)
        path = _session_path(b.owned(request, session_id))
        upstream = await b.forward(request, "DELETE", path)
        if upstream.status_code in (200, 409):
            b.ended(session_id)
        return answer(upstream)

    @router.post("/speech")
    async def speech(request: Request) -> Response:
        b = need()
        visitor = b.visitor(request)
        body = await b.read_json(request)
        text = demo_speech.check_text(body.get("text") if isinstance(body, dict) else None)
        if not b.speech.enabled:
            raise demo_speech.SpeechOff()
        await b.limit(request, "speech", visitor, b.demo.demo_speech_per_minute)
        wav = await demo_speech.synthesize(b.speech, text)
        return Response(content=wav, media_type="audio/wav")

    @router.post("/generate")
    async def generate(request: Request) -> Response:
        b = need()
        visitor = b.visitor(request)
        await b.limit(request, "jobs", visitor, b.demo.demo_jobs_per_minute)
        cap = request.app.state.services.settings.max_upload_bytes + FORM_MARGIN_BYTES
        upstream = await b.forward(
            request, "POST", "/v1/generate", content=b.streamed(request, cap)
        )
        response = answer(upstream)
        if upstream.status_code == 202:
            b.remember(request, response, str(upstream.json()["job_id"]))
        return response

    @router.get("/jobs/{job_id}")
    async def job(job_id: str, request: Request) -> Response:
        b = need()
        b.visitor(request)
        path = f"/v1/jobs/{_segment(b.owned(request, job_id))}"
        return answer(await b.forward(request, "GET", path))

    @router.get("/jobs/{job_id}/result")
    async def result(job_id: str, request: Request) -> Response:
        b = need()
        b.visitor(request)
        path = f"/v1/jobs/{_segment(b.owned(request, job_id))}/result"
        return answer(await b.forward(request, "GET", path))

    return router


async def _create_body(
    broker: Broker, request: Request, tmp: Path
) -> tuple[dict[str, str], UploadedPart | None]:
    """The visitor's create: JSON or multipart (the face streamed to `tmp`), capped and timed."""
    settings = request.app.state.services.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        data = await broker.read_json(request)
        if not isinstance(data, dict):
            raise ValidationFailed("Body must be a JSON object.")
        return _visitor_fields(data), None
    parts = await receive_parts(
        request.stream(),
        content_type=content_type,
        content_length=request.headers.get("content-length"),
        directory=tmp,
        max_total=settings.realtime_face_max_bytes + FORM_MARGIN_BYTES,
        wanted=frozenset({"face", *VISITOR_FIELDS, *REFUSED_FIELDS}),
        idle_timeout_s=settings.upload_idle_timeout_s,
        total_timeout_s=settings.upload_timeout_s,
    )
    face = parts.pop("face", None)
    fields: dict[str, object] = {}
    for name, part in parts.items():
        if part.filename is not None or part.size > JSON_MAX_BYTES:
            raise InvalidInput(f"Field {name} must be a short text value.")
        fields[name] = part.path.read_bytes().decode("utf-8", "replace")
    return _visitor_fields(fields), face


def _tmp_base(services: Services) -> Path | None:
    return services.upload_dir if services.upload_dir.is_dir() else None


def _segment(value: str) -> str:
    """A path segment forwarded verbatim must not climb out of its route."""
    if not value or "/" in value or value in {".", ".."} or len(value) > 128:
        raise NotFound()
    return value


def _session_path(session_id: str) -> str:
    return f"/v1/realtime/session/{_segment(session_id)}"
