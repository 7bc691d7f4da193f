"""A real `livekit-server --dev` on loopback for tests: free ports, a generated key and secret.

The binary comes from scripts/livekit.sh (built once per machine from its Go module), or from
ATLAS_LIVEKIT_SERVER, which `scripts/services.sh run` sets. In CI (CI=true) a server that cannot
be built or started fails the run; elsewhere the tests that need one skip with the reason.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


@dataclass
class WebhookRelay:
    """Where the server's webhooks go: this relay, on loopback, passes each one on, body and
    signature untouched, to every `atlas serve` registered with it. The server's webhook URL is
    fixed when it starts, and the stacks that share it come and go; each API ignores the rooms
    that are not its own."""

    targets: set[str] = field(default_factory=set)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookRelay:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {
                    "Authorization": self.headers.get("Authorization", ""),
                    "Content-Type": self.headers.get("Content-Type", "application/webhook+json"),
                }
                for target in sorted(relay.targets):
                    relay.forward(target, body, headers)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @staticmethod
    def forward(target: str, body: bytes, headers: dict[str, str]) -> None:
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30):
                pass
        except OSError:
            pass  # that API is gone or busy: its reaper is the backstop, as in production

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass(frozen=True, kw_only=True)
class LiveKitServer:
    """Connection facts of one running server, in LiveKit's standard variable names."""

    url: str
    http_url: str
    api_key: str
    api_secret: str
    log_path: Path
    webhooks: WebhookRelay  # add an API's /v1/livekit/webhook to its targets

    def env(self) -> dict[str, str]:
        return {
            "LIVEKIT_URL": self.url,
            "LIVEKIT_API_KEY": self.api_key,
            "LIVEKIT_API_SECRET": self.api_secret,
        }

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _config_body(port: int, tcp_port: int, udp_port: int, *, key: str, webhook_url: str) -> str:
    return "\n".join(
        [
            f"port: {port}",
            "webhook:",
            f"  api_key: {key}",
            "  urls:",
            f"    - {webhook_url}",
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
    relay = WebhookRelay().start()
    config = _config_body(port, tcp_port, udp_port, key=key, webhook_url=relay.url)
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
                config,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    http_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, http_url, log_path)
    except BaseException:
        stop(proc)
        relay.close()
        raise
    server = LiveKitServer(
        url=f"ws://127.0.0.1:{port}",
        http_url=http_url,
        api_key=key,
        api_secret=secret,
        log_path=log_path,
        webhooks=relay,
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
