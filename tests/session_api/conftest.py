"""Shared fixtures: settings on a temp dir, real SQLite/PostgreSQL/Redis, an in-process app."""

from __future__ import annotations

import asyncio
import io
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from session_api.auth import NewKey, create_key
from session_api.config import Settings
from session_api.main import create_app
from session_api.services import Services
from tests.processes import free_port  # noqa: F401 (used by sibling modules)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SPEECH = FIXTURES / "speech.wav"
FACE = FIXTURES / "face.jpg"


def no_face_png() -> bytes:
    rng = np.random.default_rng(0)
    pixels = (rng.random((256, 256, 3)) * 40 + 100).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def speech_bytes() -> bytes:
    return SPEECH.read_bytes()


@pytest.fixture
def face_bytes() -> bytes:
    return FACE.read_bytes()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "public_url": "http://test",
            "secret_key": "test-secret-key-0123456789",
            "poll_interval_s": 0.05,
            "heartbeat_s": 0.2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


async def _pg_admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    base = os.environ.get("ATLAS_TEST_DATABASE_URL")
    if not base:
        pytest.skip(
            "set ATLAS_TEST_DATABASE_URL (postgresql+asyncpg://...) to run PostgreSQL tests"
        )
    admin_dsn = base.replace("postgresql+asyncpg://", "postgresql://")
    name = f"atlas_t_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    head, _, _ = base.rpartition("/")
    try:
        yield f"{head}/{name}"
    finally:
        asyncio.run(_pg_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    url = os.environ.get("ATLAS_TEST_REDIS_URL")
    if not url:
        pytest.skip("set ATLAS_TEST_REDIS_URL (redis://host:port/db) to run Redis tests")
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    await client.flushdb()
    try:
        yield url
    finally:
        await client.flushdb()
        await client.aclose()


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    async def new_key(self, name: str = "test", **kwargs: Any) -> NewKey:
        return await create_key(self.services.db, name=name, **kwargs)


@pytest.fixture
def open_api() -> Iterator[Callable[..., Any]]:
    """`async with open_api(settings, **create_app_kwargs) as api:` runs the app's lifespan."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def opener(settings: Settings, **kwargs: Any) -> AsyncIterator[Api]:
        kwargs.setdefault("worker", False)
        app = create_app(settings, **kwargs)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(app=app, client=client)

    yield opener


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(audio: bytes, image: bytes, **extra: tuple[str, bytes, str]) -> dict[str, Any]:
    files: dict[str, Any] = {
        "audio": ("speech.wav", audio, "audio/wav"),
        "image": ("face.jpg", image, "image/jpeg"),
    }
    files.update(extra)
    return files


# --- realtime -----------------------------------------------------------------------------------
class FakeClock:
    """An injected clock for sessions and the reaper: moves only when told."""

    def __init__(self) -> None:
        from datetime import UTC, datetime

        self.now = datetime(2026, 4, 1, 1, 30, 0, tzinfo=UTC)

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def livekit() -> Iterator[Any]:
    """A fake LiveKit server API on loopback (tests/fakes/livekit_server.py)."""
    from tests.fakes.livekit_server import FakeLiveKit

    fake = FakeLiveKit().start()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def rt_settings(make_settings: Callable[..., Settings], livekit: Any) -> Callable[..., Settings]:
    """Settings with LiveKit pointed at the fake."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "livekit_url": livekit.url,
            "livekit_api_key": livekit.api_key,
            "livekit_api_secret": livekit.api_secret,
            "realtime_capacity": 4,
        }
        values.update(overrides)
        return make_settings(**values)

    return make
