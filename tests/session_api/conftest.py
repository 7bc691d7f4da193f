"""Shared fixtures: settings on a temp dir, real SQLite/PostgreSQL/Redis, an in-process app."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from session_api.config import Settings
from session_api.main import create_app
from tests.fake_clock import FakeClock
from tests.paths import SPEECH
from tests.postgres import fresh_database

from .api_support import Api


@pytest.fixture
def speech_bytes() -> bytes:
    return SPEECH.read_bytes()


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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    base = os.environ.get("ATLAS_TEST_DATABASE_URL")
    if not base:
        pytest.skip(
            "set ATLAS_TEST_DATABASE_URL (postgresql+asyncpg://...) to run PostgreSQL tests"
        )
    with fresh_database(base) as url:
        yield url


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


# --- realtime -----------------------------------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def livekit(clock: FakeClock) -> Iterator[Any]:
    """A fake LiveKit server API on loopback (tests/fakes/livekit_server.py), on the test's
    clock: the worker's join time, which starts the bill, is the clock's."""
    from tests.fakes.livekit_server import FakeLiveKit

    fake = FakeLiveKit(clock=clock.time).start()
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
