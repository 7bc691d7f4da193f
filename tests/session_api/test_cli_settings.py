"""`atlas keys|migrate`, settings rules, and result expiry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from session_api.config import Settings
from session_api.jobs.queue import NewJob
from session_api.jobs.worker import ResultCleaner

from .api_support import auth


def atlas(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "ATLAS_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "atlas.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    created = atlas(
        tmp_path, "keys", "create", "--name", "demo", "--rpm", "45", "--monthly-cap", "9"
    )
    assert created.returncode == 0, created.stderr
    key, secret = created.stdout.splitlines()
    assert key.startswith("sk_live_") and len(key) > 40
    assert secret.startswith("whsec_")
    listed = atlas(tmp_path, "keys", "list").stdout
    assert key[:12] in listed and "45rpm" in listed and "cap=9" in listed and "active" in listed
    assert key not in listed and secret not in listed  # never shown again
    db_bytes = (tmp_path / "data" / "atlas.db").read_bytes()
    assert key.encode() not in db_bytes  # stored hashed
    revoked = atlas(tmp_path, "keys", "revoke", key[:12])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in atlas(tmp_path, "keys", "list").stdout
    again = atlas(tmp_path, "keys", "revoke", key[:12])
    assert again.returncode == 1


def test_migrate_and_help(tmp_path: Path) -> None:
    migrated = atlas(tmp_path, "migrate")
    assert migrated.returncode == 0 and "revision 0002" in migrated.stdout
    usage = atlas(tmp_path, "--help").stdout
    for command in ("serve", "worker", "keys", "migrate"):
        assert command in usage


def test_placeholder_secret_refused_outside_dev(tmp_path: Path) -> None:
    result = atlas(tmp_path, "migrate", ATLAS_ENV="prod")
    assert result.returncode == 2 and "ATLAS_SECRET_KEY" in result.stderr
    with pytest.raises(ValueError):
        Settings(env="prod", secret_key="change-me")
    Settings(env="prod", secret_key="a-real-secret-of-some-length")


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ATLAS_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.max_upload_bytes == 50 * 1024 * 1024
    assert settings.job_timeout_s == 300 and settings.job_max_attempts == 3
    assert settings.result_ttl_s == 86400 and settings.default_rpm == 30
    assert settings.webhook_retry_delays_s == (5, 30, 120) and settings.webhook_timeout_s == 10
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith("atlas-data/atlas.db")
    assert settings.resolved_storage_url.endswith("atlas-data/storage")
    monkeypatch.setenv("ATLAS_STORAGE_URL", "s3://bucket/prefix")
    assert Settings().storage_kind == "s3"


async def test_results_expire_after_24h(
    make_settings: Callable[..., Any], open_api: Callable[..., Any], tmp_path: Path
) -> None:
    async with open_api(make_settings(), background=False) as api:
        key = await api.new_key()
        services = api.services
        queue = services.queue
        new = NewJob(key_id=key.id, audio_key="a", image_key="i", audio_size=1, image_size=1)
        await queue.submit("j1", new, monthly_cap=None)
        assert await queue.claim("w") is not None
        src = tmp_path / "o.mp4"
        src.write_bytes(b"mp4")
        await services.storage.put_file("jobs/j1/output.mp4", src, content_type="video/mp4")
        assert await queue.complete(
            "j1",
            "w",
            output_key="jobs/j1/output.mp4",
            output_size=3,
            duration=1.0,
            result_ttl_s=86400,
        )
        cleaner = ResultCleaner(queue=queue, storage=services.storage)
        assert await cleaner.clean_once() == 0
        assert (
            await api.client.get("/v1/jobs/j1/result", headers=auth(key.key))
        ).status_code == 200
        real_clock = queue.clock
        queue.clock = lambda: real_clock() + timedelta(hours=24, seconds=1)
        assert await cleaner.clean_once() == 1
        response = await api.client.get("/v1/jobs/j1/result", headers=auth(key.key))
        assert response.status_code == 404 and response.json()["error"] == "no_output"
        assert not (services.settings.data_dir / "storage" / "jobs" / "j1" / "output.mp4").exists()
        job = (await api.client.get("/v1/jobs/j1", headers=auth(key.key))).json()
        assert job["status"] == "completed" and "url" not in job


def test_keys_create_into_a_closed_pipe_prints_no_traceback(tmp_path: Path) -> None:
    """`KEY=$(atlas keys create --name demo | head -1)` (the README) must stay quiet when the
    reader leaves early; `| true` leaves before the first byte, so the pipe is always closed."""
    env = {**os.environ, "ATLAS_DATA_DIR": str(tmp_path)}
    for reader in ("head -1", "true"):
        done = subprocess.run(
            f"{sys.executable} -m atlas.cli keys create --name demo-{reader[:4]} | {reader}",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        if reader == "head -1":
            assert done.stdout.startswith("sk_live_") and done.stdout.count("\n") == 1
