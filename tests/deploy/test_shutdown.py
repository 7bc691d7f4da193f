"""Graceful shutdown on real processes: `atlas worker` mid-job and `atlas serve` mid-request.

Each worker test renders a real job with the real renderer on SQLite in a temp data dir, and
signals the worker while the render is under way (the job's own progress, as the worker's
heartbeats write it, says so).
"""

from __future__ import annotations

import asyncio
import io
import signal
import socket
import sqlite3
import subprocess
import wave
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import requests

from session_api.auth import create_key
from session_api.config import Settings
from session_api.main import create_app
from tests.paths import FACE, SPEECH
from tests.processes import ATLAS, Procs, atlas_env, free_port, wait_until

REPEATS = 2  # ~15 s of speech: a render long enough to signal it halfway


def long_speech(repeats: int = REPEATS) -> bytes:
    with wave.open(str(SPEECH)) as w:
        params, pcm = w.getparams(), w.readframes(w.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(pcm * repeats)
    return out.getvalue()


def submit(data_dir: Path) -> str:
    """Submit one job through the real POST /v1/generate, in-process, on the test's data dir."""

    async def run() -> str:
        settings = Settings(data_dir=data_dir, secret_key="deploy-test-secret-0123456789")
        app = create_app(settings, worker=False, background=False)
        async with app.router.lifespan_context(app):
            key = await create_key(app.state.services.db, name="drain", rpm=100_000)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/v1/generate",
                    headers={"Authorization": f"Bearer {key.key}"},
                    files={
                        "audio": ("speech.wav", long_speech(), "audio/wav"),
                        "image": ("face.jpg", FACE.read_bytes(), "image/jpeg"),
                    },
                )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    return asyncio.run(run())


def job_row(data_dir: Path, job_id: str) -> dict[str, Any]:
    with sqlite3.connect(data_dir / "atlas.db") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(
            "SELECT status, attempts, lease_owner, progress, output_key FROM jobs WHERE id=?",
            (job_id,),
        ).fetchone()
    return dict(row)


def worker_env(data_dir: Path) -> dict[str, str]:
    # A lease far longer than the test: a job only comes back to pending if it is released.
    return atlas_env(
        data_dir,
        ATLAS_POLL_INTERVAL_S="0.1",
        ATLAS_HEARTBEAT_S="0.2",
        ATLAS_LEASE_S="600",
        ATLAS_RENDERER_SIZE="256",
    )


def signal_mid_render(proc: subprocess.Popen[bytes], data_dir: Path, job_id: str) -> int:
    """Wait until the job is rendering and not yet half done, then SIGTERM the worker."""

    def rendering() -> int:
        row = job_row(data_dir, job_id)
        assert row["status"] in {"pending", "processing"}, row  # it must not finish unsignalled
        return int(row["progress"]) if row["status"] == "processing" else 0

    progress = wait_until(rendering, limit_s=120, step_s=0.02)
    assert 0 < progress < 50, f"signal at {progress}%: not mid-render"
    proc.send_signal(signal.SIGTERM)
    return int(progress)


def exit_code(proc: subprocess.Popen[bytes], procs: Procs, limit_s: float = 120) -> int:
    try:
        return proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"process did not exit after SIGTERM:\n{procs.log(proc)[-3000:]}")


def check_output(data_dir: Path, row: dict[str, Any]) -> None:
    assert row["output_key"], row
    path = data_dir / "storage" / row["output_key"]
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= int(7.7 * REPEATS * 25) - 2


def test_worker_sigterm_finishes_the_job_in_hand(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    worker = procs.start(worker_env(data), "worker", "--drain-timeout", "300")
    signal_mid_render(worker, data, job_id)
    assert exit_code(worker, procs) == 0, procs.log(worker)[-3000:]
    row = job_row(data, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["lease_owner"] is None
    check_output(data, row)
    log = procs.log(worker)
    assert "worker draining" in log and "job completed" in log and "worker stopped" in log


def test_worker_sigterm_past_the_drain_timeout_releases_the_job(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    env = worker_env(data)
    first = procs.start(env, "worker", "--drain-timeout", "0")
    signal_mid_render(first, data, job_id)
    assert exit_code(first, procs) == 0, procs.log(first)[-3000:]
    # Handed back untouched: pending, unowned, the interrupted attempt not counted, no output.
    row = job_row(data, job_id)
    assert row == {
        "status": "pending",
        "attempts": 0,
        "lease_owner": None,
        "progress": 0,
        "output_key": None,
    }
    assert "job released" in procs.log(first)
    assert not list((data / "storage" / "jobs" / job_id).glob("output*"))

    # No job is lost: the next worker takes it and finishes it.
    second = procs.start(env, "worker")
    done = wait_until(
        lambda: (r := job_row(data, job_id))["status"] in {"completed", "failed"} and r,
        limit_s=180,
        step_s=0.1,
    )
    assert done["status"] == "completed" and done["attempts"] == 1, done
    check_output(data, done)
    second.send_signal(signal.SIGTERM)
    assert exit_code(second, procs) == 0


def test_worker_second_signal_releases_at_once(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    worker = procs.start(worker_env(data), "worker", "--drain-timeout", "600")
    signal_mid_render(worker, data, job_id)
    wait_until(lambda: "worker stopping" in procs.log(worker), limit_s=30)
    worker.send_signal(signal.SIGTERM)  # the operator insists: do not wait for the render
    assert exit_code(worker, procs) == 0, procs.log(worker)[-3000:]
    row = job_row(data, job_id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["lease_owner"] is None
    assert "job released" in procs.log(worker)


# --- the API -----------------------------------------------------------------------------------
def multipart(audio: bytes, image: bytes) -> tuple[bytes, str]:
    request = requests.Request(
        "POST",
        "http://x/v1/generate",
        files={
            "audio": ("speech.wav", audio, "audio/wav"),
            "image": ("face.jpg", image, "image/jpeg"),
        },
    ).prepare()
    assert isinstance(request.body, bytes)
    return request.body, request.headers["Content-Type"]


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_api_sigterm_stops_accepting_and_finishes_the_request_in_flight(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = atlas_env(data)
    created = subprocess.run(
        [*ATLAS, "keys", "create", "--name", "sigterm"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = created.stdout.splitlines()[0]
    port = free_port()
    server = procs.start(env, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(healthy, limit_s=90, step_s=0.1)
    assert requests.get(f"http://127.0.0.1:{port}/v1/ready", timeout=5).json()["status"] == "ready"

    body, content_type = multipart(SPEECH.read_bytes(), FACE.read_bytes())
    head = (
        f"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    uploads = data / "tmp"
    before = set(uploads.iterdir())
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head + body[: len(body) // 2])
        # The handler is running: it has opened its upload directory and is streaming into it.
        wait_until(lambda: set(uploads.iterdir()) - before, limit_s=60)
        server.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(port), limit_s=60)  # stopped accepting
        assert server.poll() is None  # ...but still serving the request in flight
        conn.sendall(body[len(body) // 2 :])
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 202"), response[:500]
    assert b'"status":"pending"' in rest.replace(b" ", b"")
    # uvicorn re-raises the signal once its shutdown is complete (so a supervisor sees why it
    # ended): the process ends by SIGTERM, after the lifespan closed everything.
    assert exit_code(server, procs) in {0, -signal.SIGTERM}
    log = procs.log(server)
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]
    with sqlite3.connect(data / "atlas.db") as db:
        assert db.execute("SELECT count(*) FROM jobs WHERE status='pending'").fetchone()[0] == 1
