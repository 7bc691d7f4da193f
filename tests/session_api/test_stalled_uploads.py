"""Clients that stall mid-upload are dropped, their temp dirs removed; connections are capped.

Against a real `atlas serve` (uvicorn, real sockets). The idle timeout is short here, and every
wait is a hang guard on an event (the server closing the socket), not a race with the clock.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import requests

from tests.processes import Procs, atlas_env, wait_until

from .live_server import new_key, read_all, serve

BOUNDARY = "atlasboundary"
HANG_GUARD_S = 120.0


def stall(port: int, key: str) -> socket.socket:
    """Send the headers and the start of a 1 MB upload, then send nothing more."""
    head = (
        "POST /v1/generate HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        "Content-Length: 1000000\r\n\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S)
    sock.sendall(head + b"RIFF" + b"\0" * 4000)
    return sock


def leftovers(data: Path) -> list[Path]:
    return sorted((data / "tmp").glob("atlas-upload-*"))


def test_fifty_stalled_uploads_are_dropped_and_cleaned_up(procs: Procs, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = atlas_env(data, ATLAS_UPLOAD_IDLE_TIMEOUT_S="2", ATLAS_MAX_CONNECTIONS="200")
    key = new_key(env)
    base, port, _ = serve(procs, env)
    socks = [stall(port, key) for _ in range(50)]
    try:
        assert requests.get(f"{base}/v1/health", timeout=30).status_code == 200
        answers = [read_all(s) for s in socks]  # returns once the server closes the socket
    finally:
        for s in socks:
            s.close()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error":"request_timeout"' in answer
    assert leftovers(data) == []
    assert requests.get(f"{base}/v1/health", timeout=30).status_code == 200


def test_connections_beyond_the_cap_are_refused_until_stalls_are_dropped(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = atlas_env(data, ATLAS_UPLOAD_IDLE_TIMEOUT_S="3", ATLAS_MAX_CONNECTIONS="10")
    key = new_key(env)
    base, port, _ = serve(procs, env)
    socks = [stall(port, key) for _ in range(20)]
    try:

        def refused() -> bool:
            return requests.get(f"{base}/v1/health", timeout=30).status_code == 503

        wait_until(refused, limit_s=HANG_GUARD_S, step_s=0.05)
        answers = [read_all(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    statuses = sorted(a.split(b" ", 2)[1].decode() for a in answers)
    assert set(statuses) <= {"408", "503"} and "503" in statuses, statuses
    wait_until(
        lambda: requests.get(f"{base}/v1/health", timeout=30).status_code == 200,
        limit_s=HANG_GUARD_S,
    )
    assert leftovers(data) == []


def test_a_killed_servers_upload_dir_is_swept_at_the_next_start(
    procs: Procs, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = atlas_env(data, ATLAS_UPLOAD_IDLE_TIMEOUT_S="600")
    key = new_key(env)
    _, port, server = serve(procs, env)
    sock = stall(port, key)
    try:
        wait_until(lambda: any(d.glob("part-*") for d in leftovers(data)), limit_s=HANG_GUARD_S)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=HANG_GUARD_S)
    finally:
        sock.close()
    assert len(leftovers(data)) == 1  # what a crash leaves behind
    serve(procs, env)
    assert leftovers(data) == []
