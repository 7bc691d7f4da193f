"""The demo page at /demo and its same-origin session broker (the spec's backend-proxy pattern).

The page never holds an API key. With `ATLAS_DEMO=1` (`make dev` sets it) `atlas serve` also
answers the page's `/api/...` calls: it forwards each one to its own `/v1/...` endpoint with a
server-side key, exactly what the spec's Next.js routes do. Off by default: whoever reaches a
broker can start sessions on its key, so enable it only where that is intended.

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
from pathlib import Path
from typing import Literal

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from session_api import auth, demo_speech
from session_api.errors import ApiError, Forbidden, InvalidInput, NotFound, RateLimitExceeded
from session_api.services import Services

logger = logging.getLogger("session_api")

# The built page: web/dist/demo beside the packages (`make web` builds it).
DEFAULT_DIST = Path(__file__).resolve().parents[1] / "web" / "dist" / "demo"
KEY_FILE = "demo-broker.key"
SPEECH_RPM = 30  # text-to-speech calls a minute, all pages together: the operator pays for them
BROKER_RPM = 600  # the page polls jobs and a kiosk retries: more than a person's 30 a minute
# Request headers a proxied call keeps; everything else (cookies, auth) stays behind.
FORWARDED_HEADERS = ("content-type", "x-callback-url")


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATLAS_", extra="ignore")

    demo: bool = False  # ATLAS_DEMO=1 turns the broker on
    demo_dir: Path | None = None  # ATLAS_DEMO_DIR: another build of the page
    demo_api_key: SecretStr | None = None  # ATLAS_DEMO_API_KEY: else one is minted and kept
    # ATLAS_DEMO_DEFAULT_MODE: the mode of JSON creates that name none (the API's default is
    # conversation); `passthrough` lets the spec's snippet run where no STT/LLM/TTS is set up.
    demo_default_mode: Literal["conversation", "passthrough"] | None = None


class DemoNotBuilt(ApiError):
    status, code = 404, "not_found"
    default_message = (
        "The demo page is not built: run `make web` (needs Node.js >= 20) or `make dev`."
    )


class BrokerOff(ApiError):
    status, code = 404, "not_found"
    default_message = "The demo session broker is off: start atlas serve with ATLAS_DEMO=1."


def install_demo(app: FastAPI, demo: DemoSettings | None = None) -> None:
    """Serve the page at /demo (when built) and, when enabled, the broker under /api."""
    demo = demo or DemoSettings()
    dist = demo.demo_dir or DEFAULT_DIST
    app.include_router(_page_router(dist))
    if (dist / "assets").is_dir():
        app.mount("/demo/assets", StaticFiles(directory=dist / "assets"), name="demo-assets")
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


class Broker:
    """Forwards the page's calls to this app's own /v1 endpoints with the server-side key."""

    def __init__(self, demo: DemoSettings) -> None:
        self._configured = demo.demo_api_key.get_secret_value() if demo.demo_api_key else None
        self._key: str | None = self._configured
        self._lock = asyncio.Lock()
        self.default_mode = demo.demo_default_mode
        self.speech = demo_speech.SpeechSettings()

    async def key(self, services: Services) -> str:
        async with self._lock:
            if self._key is None:
                self._key = await _load_or_mint_key(services)
            return self._key

    def forget_key(self) -> None:
        """The key stopped working (revoked): mint or read a new one next time."""
        if self._configured is None:
            self._key = None

    async def forward(
        self, request: Request, method: str, path: str, *, create: bool = False
    ) -> Response:
        services: Services = request.app.state.services
        headers = {h: v for h in FORWARDED_HEADERS if (v := request.headers.get(h)) is not None}
        body = await request.body()
        if create and self.default_mode is not None:
            body = _with_default_mode(body, headers.get("content-type", ""), self.default_mode)
        for attempt in range(2):
            headers["authorization"] = f"Bearer {await self.key(services)}"
            transport = httpx.ASGITransport(app=request.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://atlas") as client:
                upstream = await client.request(method, path, headers=headers, content=body)
            if upstream.status_code == Forbidden.status and attempt == 0:
                self.forget_key()
                continue
            break
        return Response(
            content=upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
            headers={k: v for k, v in upstream.headers.items() if k.lower() == "retry-after"},
        )


def _with_default_mode(body: bytes, content_type: str, mode: str) -> bytes:
    """A JSON create without a mode gets `mode`; anything else passes unchanged."""
    if not content_type.startswith("application/json"):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body  # the API answers the error
    if isinstance(data, dict) and data.get("mode") in (None, ""):
        data["mode"] = mode
        return json.dumps(data).encode()
    return body


async def _load_or_mint_key(services: Services) -> str:
    """The broker's key, kept in the data dir (mode 0600) so restarts reuse one key."""
    path = services.settings.data_dir / KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        try:
            await auth.authenticate(services.db, f"Bearer {key}")
            return key
        except ApiError:
            logger.info("demo broker key no longer valid; minting a new one")
    new = await auth.create_key(services.db, name="demo-broker", rpm=BROKER_RPM)
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
        return await need().forward(request, "POST", "/v1/realtime/session", create=True)

    @router.get("/session/{session_id}")
    @router.get("/realtime-session/{session_id}")
    async def status(session_id: str, request: Request) -> Response:
        return await need().forward(request, "GET", _session_path(session_id))

    @router.patch("/session/{session_id}")
    @router.post("/session/{session_id}")
    async def swap(session_id: str, request: Request) -> Response:
        return await need().forward(request, "PATCH", _session_path(session_id))

    @router.delete("/session/{session_id}")
    @router.delete("/realtime-session/{session_id}")
    async def end(session_id: str, request: Request) -> Response:
        return await need().forward(request, "DELETE", _session_path(session_id))

    @router.post("/speech")
    async def speech(request: Request) -> Response:
        settings = need().speech
        services: Services = request.app.state.services
        allowed, window = await services.limiter.hit_scoped("demo-speech", "all", SPEECH_RPM)
        if not allowed:
            raise RateLimitExceeded(rpm=SPEECH_RPM, retry_after_s=window.resets_in_s)
        try:
            body = await request.json()
        except ValueError:
            raise InvalidInput('Send JSON: {"text": "..."}.') from None
        text = demo_speech.check_text(body.get("text") if isinstance(body, dict) else None)
        wav = await demo_speech.synthesize(settings, text)
        return Response(content=wav, media_type="audio/wav")

    @router.post("/generate")
    async def generate(request: Request) -> Response:
        return await need().forward(request, "POST", "/v1/generate")

    @router.get("/jobs/{job_id}")
    async def job(job_id: str, request: Request) -> Response:
        return await need().forward(request, "GET", f"/v1/jobs/{_segment(job_id)}")

    @router.get("/jobs/{job_id}/result")
    async def result(job_id: str, request: Request) -> Response:
        return await need().forward(request, "GET", f"/v1/jobs/{_segment(job_id)}/result")

    return router


def _segment(value: str) -> str:
    """A path segment forwarded verbatim must not climb out of its route."""
    if not value or "/" in value or value in {".", ".."} or len(value) > 128:
        raise NotFound()
    return value


def _session_path(session_id: str) -> str:
    return f"/v1/realtime/session/{_segment(session_id)}"
