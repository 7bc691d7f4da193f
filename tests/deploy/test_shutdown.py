"""Graceful shutdown on real processes: `atlas worker` mid-job and `atlas serve` mid-request.

Each worker test renders a real job with the real renderer on SQLite in a temp data dir, and
signals the worker while the render is under way. The worker runs with a test-only pause point
(tests/paused_worker.py): its render stops at 10% until the test lets it go on, so the
signal lands mid-render however fast or slow the machine is.
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
from tests.audio_match import assert_same_audio
from tests.paths import FACE, SPEECH
from tests.paused_worker import PausedWorker
from tests.processes import ATLAS, Procs, atlas_env, free_port, wait_until

REPEATS = 2  # ~15 s of speech
HANG_GUARD_S = 180  # waits for an event end here only if something is broken


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


def paused(worker: PausedWorker, data_dir: Path, job_id: str) -> None:
    """The worker's render is paused mid-way: the job is in hand and unfinished."""
    assert 0 < worker.wait_paused() < 1
    assert job_row(data_dir, job_id)["status"] == "processing"


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
    source = data_dir / "input.wav"
    source.write_bytes(long_speech())
    assert_same_audio(path, source)  # the whole input, in time


def test_worker_sigterm_finishes_the_job_in_hand(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    worker = PausedWorker(procs, worker_env(data), "--drain-timeout", "300")
    paused(worker, data, job_id)
    worker.signal()
    worker.wait_log("worker draining")  # it heard the signal with the render still in hand
    worker.resume()
    assert exit_code(worker.proc, procs) == 0, worker.log()[-3000:]
    row = job_row(data, job_id)
    assert row["status"] == "completed" and row["attempts"] == 1 and row["lease_owner"] is None
    check_output(data, row)
    log = worker.log()
    assert log.index("worker draining") < log.index("job completed") < log.index("worker stopped")


def test_worker_sigterm_past_the_drain_timeout_releases_the_job(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    env = worker_env(data)
    first = PausedWorker(procs, env, "--drain-timeout", "0")
    paused(first, data, job_id)
    first.signal()
    first.wait_log("job released")
    first.resume()  # the render thread goes on to its next progress report, and stops there
    assert exit_code(first.proc, procs) == 0, first.log()[-3000:]
    # Handed back untouched: pending, unowned, the interrupted attempt not counted, no output.
    row = job_row(data, job_id)
    assert row == {
        "status": "pending",
        "attempts": 0,
        "lease_owner": None,
        "progress": 0,
        "output_key": None,
    }
    assert "job completed" not in first.log()
    assert not list((data / "storage" / "jobs" / job_id).glob("output*"))

    # No job is lost: the next worker takes it and finishes it.
    second = procs.start(env, "worker")
    done = wait_until(
        lambda: (r := job_row(data, job_id))["status"] in {"completed", "failed"} and r,
        limit_s=HANG_GUARD_S,
        step_s=0.1,
    )
    assert done["status"] == "completed" and done["attempts"] == 1, done
    check_output(data, done)
    second.send_signal(signal.SIGTERM)
    assert exit_code(second, procs) == 0


def test_worker_second_signal_releases_at_once(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "data"
    job_id = submit(data)
    worker = PausedWorker(procs, worker_env(data), "--drain-timeout", "600")
    paused(worker, data, job_id)
    worker.signal()
    worker.wait_log("worker draining")
    worker.signal()  # the operator insists: do not wait for the render
    worker.wait_log("job released")
    worker.resume()
    assert exit_code(worker.proc, procs) == 0, worker.log()[-3000:]
    row = job_row(data, job_id)
    assert row["status"] == "pending" and row["attempts"] == 0 and row["lease_owner"] is None
    assert "job completed" not in worker.log()


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
