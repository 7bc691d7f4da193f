"""Helpers for tests against a real `atlas serve` on loopback (real sockets, real uvicorn)."""

from __future__ import annotations

import socket
import subprocess

import requests

from tests.processes import ATLAS, Procs, free_port, wait_until


def new_key(env: dict[str, str], *, rpm: int = 10_000) -> str:
    done = subprocess.run(
        [*ATLAS, "keys", "create", "--name", "live", "--rpm", str(rpm)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()[0]


def serve(procs: Procs, env: dict[str, str]) -> tuple[str, int, subprocess.Popen[bytes]]:
    """Start `atlas serve --no-worker`; returns (base URL, port, process) once it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**env, "ATLAS_PUBLIC_URL": base}
    proc = procs.start(env, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"atlas serve exited:\n{procs.log(proc)}")
        try:
            return requests.get(f"{base}/v1/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(up, limit_s=120, step_s=0.2)
    return base, port, proc


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: hang guard)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
