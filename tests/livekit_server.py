"""A real `livekit-server --dev` on loopback for tests: free ports, a generated key and secret.

The binary comes from scripts/livekit.sh (built once per machine from its Go module), or from
ATLAS_LIVEKIT_SERVER, which `scripts/services.sh run` sets. In CI (CI=true) a server that cannot
be built or started fails the run; elsewhere the tests that need one skip with the reason.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
START_LIMIT_S = 60.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Fail in CI (a missing server must never pass as skipped), skip elsewhere."""
    if in_ci():
        pytest.fail(f"livekit-server unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"livekit-server unavailable: {reason}")


def server_binary() -> str:
    configured = os.environ.get("ATLAS_LIVEKIT_SERVER")
    if configured and os.access(configured, os.X_OK):
        return configured
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "livekit.sh")], capture_output=True, text=True
    )
    if built.returncode != 0:
        unavailable(built.stderr.strip().splitlines()[-1] if built.stderr else "build failed")
    return built.stdout.strip()


@dataclass(frozen=True, kw_only=True)
class LiveKitServer:
    """Connection facts of one running server, in LiveKit's standard variable names."""

    url: str
    http_url: str
    api_key: str
    api_secret: str
    log_path: Path

    def env(self) -> dict[str, str]:
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _config_body(port: int, tcp_port: int, udp_port: int) -> str:
    return "\n".join(
        [
            f"port: {port}",
            "rtc:",
            f"  tcp_port: {tcp_port}",
            f"  udp_port: {udp_port}",
            "  use_external_ip: false",
            "logging:",
            "  level: info",
            "",
        ]
    )


def _wait_ready(proc: subprocess.Popen[bytes], http_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            unavailable(f"exited with {proc.returncode}: {tail}")
        try:
            with urllib.request.urlopen(http_url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    unavailable(f"not ready within {START_LIMIT_S:.0f} s")


def start_livekit_server(workdir: Path) -> tuple[LiveKitServer, subprocess.Popen[bytes]]:
    binary = server_binary()
    port, tcp_port, udp_port = free_port(), free_port(), free_port()
    key, secret = f"test_{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    log_path = workdir / "livekit-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "--dev",
                "--bind",
                "127.0.0.1",
                "--node-ip",
                "127.0.0.1",
                "--keys",
                f"{key}: {secret}",
                "--config-body",
                _config_body(port, tcp_port, udp_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    http_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, http_url, log_path)
    except BaseException:
        stop(proc)
        raise
    server = LiveKitServer(
        url=f"ws://127.0.0.1:{port}",
        http_url=http_url,
        api_key=key,
        api_secret=secret,
        log_path=log_path,
    )
    return server, proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
