"""A real `livekit-server --dev` on loopback for tests: free ports, a generated key and secret.
`start_livekit_cluster` starts several such nodes in LiveKit's multi-node mode: one Redis, one
key pair, and one webhook URL (a relay that balances like a load balancer).

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
import urllib.error
import urllib.parse
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
    signature untouched, to the `atlas serve` processes registered with it.

    By default every target gets every webhook: the server's webhook URL is fixed when it
    starts, the stacks that share it come and go, and each API ignores the rooms that are not
    its own. With `balance`, the targets are replicas of one API behind a load balancer: each
    webhook goes to one of them, in turn, and to the next when one does not answer (a dead
    replica); if none answers, the server gets a 502 and sends it again later."""

    targets: set[str] = field(default_factory=set)
    balance: bool = False
    delivered: dict[str, int] = field(default_factory=dict)  # target -> webhooks it answered
    _turn: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
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
                status = relay.pass_on(body, headers)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def pass_on(self, body: bytes, headers: dict[str, str]) -> int:
        """The status to answer the server with, once the webhook is passed on."""
        if not self.balance:
            for target in sorted(self.targets):
                self.forward(target, body, headers)
            return 200
        for target in self._in_turn():
            status = self.forward(target, body, headers)
            if status is not None:
                with self._lock:
                    self.delivered[target] = self.delivered.get(target, 0) + 1
                return status
        return 502  # no replica answered: livekit-server retries

    def _in_turn(self) -> list[str]:
        with self._lock:
            targets = sorted(self.targets)
            self._turn += 1
            start = self._turn % len(targets) if targets else 0
        return targets[start:] + targets[:start]

    @staticmethod
    def forward(target: str, body: bytes, headers: dict[str, str]) -> int | None:
        """The target's HTTP status, or None when it did not answer at all."""
        request = urllib.request.Request(target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return None  # that API is gone or busy: its reaper is the backstop, as in production

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


def _config_body(
    port: int,
    tcp_port: int,
    udp_port: int,
    *,
    key: str,
    webhook_url: str,
    redis: tuple[str, int] | None = None,
) -> str:
    """The server's YAML; with `redis` (address, db) the node joins that Redis's cluster."""
    shared = ["redis:", f"  address: {redis[0]}", f"  db: {redis[1]}"] if redis else []
    return "\n".join(
        [
            f"port: {port}",
            *shared,
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
    """One node on its own (no Redis), its webhooks to every registered API."""
    key, secret = _new_keys()
    relay = WebhookRelay().start()
    try:
        return _start_node(workdir / "livekit-server.log", key=key, secret=secret, relay=relay)
    except BaseException:
        relay.close()
        raise


def start_livekit_cluster(
    workdir: Path, *, redis_url: str, nodes: int = 2
) -> tuple[list[LiveKitServer], list[subprocess.Popen[bytes]]]:
    """`nodes` servers in multi-node mode: one Redis (`redis://host:port/db`, a db the cluster
    has to itself), one key pair, and one webhook URL, a relay that hands each webhook to one
    registered API replica (a load balancer). A room lives on one node; a participant may
    connect to any, and the API may call any."""
    parts = urllib.parse.urlsplit(redis_url)
    redis = (parts.netloc, int(parts.path.strip("/") or 0))
    key, secret = _new_keys()
    relay = WebhookRelay(balance=True).start()
    started: list[tuple[LiveKitServer, subprocess.Popen[bytes]]] = []
    try:
        for n in range(nodes):
            log_path = workdir / f"livekit-node-{n}.log"
            node = _start_node(log_path, key=key, secret=secret, relay=relay, redis=redis)
            started.append(node)
    except BaseException:
        for _, proc in started:
            stop(proc)
        relay.close()
        raise
    return [server for server, _ in started], [proc for _, proc in started]


def _new_keys() -> tuple[str, str]:
    return f"test_{secrets.token_hex(4)}", secrets.token_urlsafe(32)


def _start_node(
    log_path: Path,
    *,
    key: str,
    secret: str,
    relay: WebhookRelay,
    redis: tuple[str, int] | None = None,
) -> tuple[LiveKitServer, subprocess.Popen[bytes]]:
    binary = server_binary()
    port, tcp_port, udp_port = free_port(), free_port(), free_port()
    config = _config_body(port, tcp_port, udp_port, key=key, webhook_url=relay.url, redis=redis)
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
