"""Worker wiring: the dispatch contract, capacity, face sources and the `atlas agent` command."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from livekit.agents import JobExecutorType

from agent.config import AGENT_NAME, AgentSettings
from agent.faces import FaceFetchError, FileFaceSource, HttpFaceSource, RoutingFaceSource
from agent.metadata import (
    FaceRef,
    MetadataError,
    parse_dispatch_metadata,
    parse_room_face,
)
from agent.worker import create_server

GOOD = {
    "session_id": "ses_abcdefghijklmnopqrstuvwx",
    "mode": "passthrough",
    "face": {"url": "https://example.com/f.jpg", "version": 3},
    "max_duration_seconds": 600,
    "options": {"instructions": "Be nice", "future_option": 1},
}


def test_dispatch_metadata_contract() -> None:
    meta = parse_dispatch_metadata(json.dumps(GOOD))
    assert meta.room_name == "atlas-rt-ses_abcdefghijklmnopqrstuvwx"
    assert meta.client_identity == "user-ses_abcdefghijklmnopqrstuvwx"
    assert meta.face.version == 3 and meta.options.instructions == "Be nice"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"session_id": "nope"}, "session_id"),
        ({"mode": "karaoke"}, "mode"),
        ({"face": {"version": 1}}, "face"),
        ({"face": {"url": "https://a", "storage_key": "b"}}, "face"),
        ({"max_duration_seconds": 0}, "max_duration_seconds"),
        ({"mode": "plugin"}, "<root>"),  # plugin mode needs options.sender_identity
        ({"mode": "plugin", "options": {"sender_identity": "a"}}, "<root>"),  # and the avatar's
        # ... not the sender's own: joining as it would disconnect the sending agent
        ({"mode": "plugin", "options": {"sender_identity": "a", "avatar_identity": "a"}}, "<root>"),
    ],
)
def test_bad_dispatch_metadata_names_the_field(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(MetadataError) as err:
        parse_dispatch_metadata(json.dumps({**GOOD, **patch}))
    assert field in str(err.value)


@pytest.mark.parametrize("raw", ["", "not json", "[]"])
def test_unparseable_dispatch_metadata(raw: str) -> None:
    with pytest.raises(MetadataError):
        parse_dispatch_metadata(raw)


def test_room_metadata_face() -> None:
    face = parse_room_face(json.dumps({"face": {"storage_key": "k", "version": 4}, "x": 1}))
    assert face == FaceRef(storage_key="k", version=4)
    assert parse_room_face("") is None and parse_room_face("{}") is None
    assert parse_room_face('{"face": {"version": 2}}') is None


def test_server_uses_explicit_dispatch_threads_and_admission() -> None:
    server = create_server(AgentSettings(agent_max_streams=3))
    assert server._agent_name == AGENT_NAME  # explicit dispatch: only named dispatches
    assert server.setup_fnc is not None and server.load_fnc is not None
    # every session of the worker in one process, one idle job thread per stream
    assert server._job_executor_type == JobExecutorType.THREAD
    assert server._num_idle_processes == 3
    assert server._load_threshold == 0.7  # LiveKit's default target load


def test_process_executor_is_still_available() -> None:
    server = create_server(AgentSettings(agent_max_streams=3, agent_job_executor="process"))
    assert server._job_executor_type == JobExecutorType.PROCESS
    assert server._num_idle_processes == 2


async def test_file_face_source_stays_inside_its_root(tmp_path: Path) -> None:
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "a.jpg").write_bytes(b"x" * 10)
    (tmp_path / "secret.txt").write_bytes(b"no")
    source = FileFaceSource(root=tmp_path / "faces", max_bytes=5)
    for key in ("../secret.txt", "/etc/passwd", "a.jpg", "missing.jpg"):
        with pytest.raises(FaceFetchError):
            await source.fetch(FaceRef(storage_key=key))
    assert (
        await FileFaceSource(root=tmp_path / "faces", max_bytes=10).fetch(
            FaceRef(storage_key="a.jpg")
        )
        == b"x" * 10
    )


@pytest.fixture
async def face_server() -> AsyncIterator[str]:
    async def small(_: web.Request) -> web.Response:
        return web.Response(body=b"y" * 100)

    async def big(_: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no content-length: the limit is enforced while reading
        await response.prepare(_)
        for _i in range(100):
            await response.write(b"z" * 1000)
        return response

    app = web.Application()
    app.router.add_get("/small.jpg", small)
    app.router.add_get("/big.jpg", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_http_face_source_limits_size_and_scheme(face_server: str) -> None:
    strict = HttpFaceSource(max_bytes=1000)
    with pytest.raises(FaceFetchError, match="https"):
        await strict.fetch(FaceRef(url=f"{face_server}/small.jpg"))
    await strict.aclose()
    dev = HttpFaceSource(max_bytes=1000, allow_http=True)
    routed = RoutingFaceSource(urls=dev, storage=None)
    try:
        assert await routed.fetch(FaceRef(url=f"{face_server}/small.jpg")) == b"y" * 100
        with pytest.raises(FaceFetchError, match="larger"):
            await routed.fetch(FaceRef(url=f"{face_server}/big.jpg"))
        with pytest.raises(FaceFetchError, match="HTTP 404"):
            await routed.fetch(FaceRef(url=f"{face_server}/none.jpg"))
        with pytest.raises(FaceFetchError, match="no face store"):
            await routed.fetch(FaceRef(storage_key="k"))
    finally:
        await routed.aclose()


def test_atlas_agent_command_delegates_to_livekit_agents() -> None:
    def atlas(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atlas.cli", *args], capture_output=True, text=True, timeout=120
        )

    assert "agent" in atlas("--help").stdout
    assert atlas("agent", "--help").returncode == 0
    start = atlas("agent", "start", "--help")
    assert start.returncode == 0 and "--url" in start.stdout
    assert atlas("agent", "bogus").returncode == 2


async def test_a_dripping_face_url_fails_within_the_fetch_deadline(tmp_path: Path) -> None:
    """The worker's face fetch has one deadline for the whole answer, not per read."""
    from tests.session_api.drip_server import DripServer

    drip = DripServer(tmp_path, hang_up_after=60)
    client = httpx.AsyncClient(verify=ssl.create_default_context(cafile=drip.ca_file), timeout=2.0)
    source = HttpFaceSource(max_bytes=1_000_000, timeout_s=2.0, client=client)
    started = time.monotonic()
    try:
        with pytest.raises(FaceFetchError, match="deadline"):
            await source.fetch(FaceRef(url=f"{drip.base}/face.jpg"))
    finally:
        await client.aclose()
        drip.close()
    assert time.monotonic() - started < 2.0 + 1


def test_conversation_plugins_load_on_a_job_thread() -> None:
    """livekit-agents registers plugins on the main thread only; sessions start on job
    threads, so the worker imports them first (a fresh interpreter: nothing imported yet)."""
    script = (
        "import threading\n"
        "from agent.config import AgentSettings\n"
        "from agent.worker import create_server\n"
        "create_server(AgentSettings())\n"
        "errors = []\n"
        "def job():\n"
        "    try:\n"
        "        from livekit.plugins import deepgram, elevenlabs, openai, silero\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "t = threading.Thread(target=job); t.start(); t.join()\n"
        "assert not errors, errors\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
