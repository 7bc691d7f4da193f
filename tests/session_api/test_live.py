"""Real processes on loopback: `atlas serve`, `atlas worker`, the real renderer.

The first test is the spec's own Python `requests` example with only the base URL changed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import av
import pytest
import requests

from tests.audio_match import assert_same_audio
from tests.paths import FACE, SPEECH
from tests.paused_worker import PausedWorker
from tests.processes import ATLAS, Procs, free_port, wait_until

SPEECH_SECONDS = 7.72


def speech_duration() -> float:
    with av.open(str(SPEECH)) as container:
        return float(container.duration or 0) / 1_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def live_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "ATLAS_DATA_DIR": str(tmp_path / "data"),
        "ATLAS_POLL_INTERVAL_S": "0.1",
        "ATLAS_LEASE_S": "3",
        "ATLAS_HEARTBEAT_S": "0.5",
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    if request.param == "postgres":
        env["ATLAS_DATABASE_URL"] = request.getfixturevalue("pg_url")
    migrated = atlas(env, "migrate")
    assert "revision 0002" in migrated.stdout
    return env


def atlas(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ATLAS, *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )


def serve(procs: Procs, env: dict[str, str], *extra: str) -> str:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["ATLAS_PUBLIC_URL"] = base
    procs.start(env, "serve", "--host", "127.0.0.1", "--port", str(port), *extra)

    def up() -> bool:
        try:
            return requests.get(f"{base}/v1/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(up, limit_s=60, step_s=0.2)
    return base


def check_mp4(path: Path) -> None:
    with av.open(str(path)) as container:
        assert container.streams.video and container.streams.audio
        duration = float(container.duration or 0) / 1_000_000
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(duration - speech_duration()) < 0.25
    assert frames >= int(speech_duration() * 25) - 2
    assert_same_audio(path, SPEECH)  # the input's sound, in time


def test_spec_python_example_against_atlas_serve(
    live_env: dict[str, str], procs: Procs, tmp_path: Path
) -> None:
    key = atlas(live_env, "keys", "create", "--name", "spec").stdout.splitlines()[0]
    metrics_port = free_port()
    live_env["ATLAS_METRICS_PORT"] = str(metrics_port)
    base = serve(procs, live_env)
    os.chdir(tmp_path)
    (tmp_path / "speech.mp3").write_bytes(SPEECH.read_bytes())  # the spec's file name; WAV inside
    (tmp_path / "face.jpg").write_bytes(FACE.read_bytes())

    # ---- the spec's example, base URL changed ----
    API_KEY = key
    headers = {"Authorization": f"Bearer {API_KEY}"}
    # Step 1 — Submit
    job = requests.post(
        f"{base}/v1/generate",
        headers=headers,
        files={
            "audio": ("speech.mp3", open("speech.mp3", "rb"), "audio/mp3"),  # noqa: SIM115
            "image": ("face.jpg", open("face.jpg", "rb"), "image/jpeg"),  # noqa: SIM115
        },
    ).json()
    job_id = job["job_id"]
    print(f"Job submitted: {job_id}")
    # Step 2 — Poll until complete
    while True:
        status = requests.get(
            f"{base}/v1/jobs/{job_id}",
            headers=headers,
        ).json()
        if status["status"] == "completed":
            break
        elif status["status"] == "failed":
            raise Exception(f"Job failed: {status['error']}")
        time.sleep(2)
    # Step 3 — Get presigned URL + download
    result = requests.get(
        f"{base}/v1/jobs/{job_id}/result",
        headers=headers,
    ).json()
    # Download from presigned URL (no auth needed)
    video = requests.get(result["url"])
    with open("output.mp4", "wb") as f:
        f.write(video.content)
    print(f"Saved — {status['timing']['latency_ms'] / 1000:.1f}s")
    # ---- end of the spec's example ----

    assert job["status"] == "pending" and job["message"] == (
        f"Job accepted. Poll GET /v1/jobs/{job_id} for status."
    )
    assert result["content_type"] == "video/mp4" and result["expires_in"] > 86000
    assert video.headers["content-type"] == "video/mp4"
    check_mp4(tmp_path / "output.mp4")
    assert status["progress"] == 100 and status["queue_position"] == 0
    assert status["input"]["audio_size"] == SPEECH.stat().st_size
    assert status["input"]["image_size"] == FACE.stat().st_size
    assert status["output"]["has_result"] is True
    assert status["output"]["size_bytes"] == len(video.content)
    assert abs(status["output"]["duration"] - speech_duration()) < 0.25
    assert status["result_url"] == f"/v1/jobs/{job_id}/result"
    assert status["timing"]["latency_ms"] > 0 and status["timing"]["completed_at"].endswith("Z")
    listed = requests.get(f"{base}/v1/jobs", headers=headers).json()
    assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["count"] == 1

    # One key cannot see another key's job; a tampered link is refused.
    other = atlas(live_env, "keys", "create", "--name", "other").stdout.splitlines()[0]
    other_headers = {"Authorization": f"Bearer {other}"}
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/result"):
        response = requests.get(f"{base}{path}", headers=other_headers)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    tampered = result["url"].replace("sig=", "sig=0")
    response = requests.get(tampered)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert requests.get(f"{base}/metrics").status_code == 404  # not on the public port
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'atlas_jobs{status="completed"} 1.0' in metrics
    assert "atlas_job_duration_seconds_count" in metrics
    assert 'atlas_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{job_id}"' in (
        metrics
    )


def attempts_of(env: dict[str, str], job_id: str) -> int:
    url = env.get("ATLAS_DATABASE_URL")
    if url is None:
        with sqlite3.connect(Path(env["ATLAS_DATA_DIR"]) / "atlas.db") as conn:
            return int(
                conn.execute("SELECT attempts FROM jobs WHERE id=?", (job_id,)).fetchone()[0]
            )
    import asyncio

    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return int(await conn.fetchval("SELECT attempts FROM jobs WHERE id=$1", job_id))
        finally:
            await conn.close()

    return asyncio.run(read())


def test_sigkilled_worker_loses_no_job(
    live_env: dict[str, str], procs: Procs, tmp_path: Path
) -> None:
    key = atlas(
        live_env, "keys", "create", "--name", "kill", "--rpm", "100000"
    ).stdout.splitlines()[0]
    base = serve(procs, live_env, "--no-worker")
    headers = {"Authorization": f"Bearer {key}"}
    # Its render pauses at 10% (tests/paused_worker.py): killed mid-job on any machine.
    first = PausedWorker(procs, live_env)
    job_id = requests.post(
        f"{base}/v1/generate",
        headers=headers,
        files={"audio": SPEECH.read_bytes(), "image": FACE.read_bytes()},
    ).json()["job_id"]

    def job() -> dict[str, Any]:
        body: dict[str, Any] = requests.get(f"{base}/v1/jobs/{job_id}", headers=headers).json()
        return body

    assert 0 < first.wait_paused() < 1
    assert job()["status"] == "processing"
    first.proc.send_signal(signal.SIGKILL)  # mid-job: no cleanup, no goodbye
    first.proc.wait()
    assert job()["status"] == "processing"
    procs.start(live_env, "worker")
    done = wait_until(
        lambda: (body := job())["status"] in {"completed", "failed"} and body, limit_s=120
    )
    assert done["status"] == "completed", done
    assert attempts_of(live_env, job_id) == 2
    result = requests.get(f"{base}/v1/jobs/{job_id}/result", headers=headers).json()
    (tmp_path / "out.mp4").write_bytes(requests.get(result["url"]).content)
    check_mp4(tmp_path / "out.mp4")
