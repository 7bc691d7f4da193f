"""GET /v1/ready: 200 while the database answers, 503 (the one error shape) when it does not;
/v1/health, the liveness probe, does not depend on the database."""

from __future__ import annotations

from pathlib import Path

import httpx

from session_api.config import Settings
from session_api.main import create_app
from tests.processes import free_port


async def get(settings: Settings, *paths: str) -> list[httpx.Response]:
    app = create_app(settings, worker=False, background=False, migrate=settings.is_embedded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(path) for path in paths]


async def test_ready_when_the_database_answers(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="ready-test-secret-0123456789")
    ready, health = await get(settings, "/v1/ready", "/v1/health")
    assert ready.status_code == 200 and ready.json() == {
        "status": "ready",
        "checks": {"database": "ok"},
    }
    assert health.status_code == 200


async def test_not_ready_while_the_database_is_unreachable(tmp_path: Path) -> None:
    # A PostgreSQL URL on a loopback port where nothing listens.
    settings = Settings(
        data_dir=tmp_path / "data",
        secret_key="ready-test-secret-0123456789",
        database_url=f"postgresql+asyncpg://atlas@127.0.0.1:{free_port()}/atlas",
    )
    ready, health = await get(settings, "/v1/ready", "/v1/health")
    assert ready.status_code == 503
    assert ready.json()["error"] == "temporarily_unavailable"
    assert health.status_code == 200  # liveness must not restart pods for a database outage
