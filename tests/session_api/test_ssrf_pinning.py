"""DNS rebinding: the connection goes to the address that was checked, never to a second lookup.

`rebind.test` answers its first lookup with 127.0.0.2 (allow-listed here, standing in for a
public address) and every later one with 127.0.0.1 (internal, refused). A fetcher that checked
the first answer and then let the HTTP client resolve the name again would connect to 127.0.0.1:
a listener there counts every connection it is offered. Only DNS is faked (the system resolver's
answers for that one name); the servers, TLS and the API are real.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from session_api.config import Settings

from .api_support import Api, auth

NAME = "rebind.test"
CHECKED, INTERNAL = "127.0.0.2", "127.0.0.1"


class FaceServer:
    """HTTPS on CHECKED:port serving the face, for the name NAME."""

    def __init__(self, tmp: Path, face: bytes) -> None:
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(face)))
                self.end_headers()
                self.wfile.write(face)

            def log_message(self, *args: Any) -> None:
                return None

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(NAME).configure_cert(context)
        self.server = ThreadingHTTPServer((CHECKED, 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tripwire:
    """A listener on INTERNAL:port that only counts the connections it accepts."""

    def __init__(self, port: int) -> None:
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((INTERNAL, port))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def servers(tmp_path: Path, face_bytes: bytes) -> Iterator[tuple[FaceServer, Tripwire]]:
    face = FaceServer(tmp_path, face_bytes)
    wire = Tripwire(face.port)
    try:
        yield face, wire
    finally:
        face.close()
        wire.close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The system resolver, except NAME: first CHECKED, then INTERNAL. Returns the answers."""
    real = socket.getaddrinfo
    answers: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != NAME:
            return real(host, port, *args, **kwargs)
        answers.append(CHECKED if not answers else INTERNAL)
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
async def api_r(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    servers: tuple[FaceServer, Tripwire],
) -> AsyncIterator[Api]:
    face, _ = servers
    settings = rt_settings(
        realtime_face_allow_networks=[f"{CHECKED}/32"],
        realtime_face_ca_file=str(face.ca_file),
        realtime_face_max_bytes=1_000_000,
    )
    async with open_api(settings, background=False) as api_:
        yield api_


async def test_face_url_connects_to_the_checked_address_not_a_rebound_one(
    api_r: Api, servers: tuple[FaceServer, Tripwire], rebinding_dns: list[str]
) -> None:
    face, wire = servers
    key = await api_r.new_key()
    response = await api_r.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        json={"face_url": f"https://{NAME}:{face.port}/face.jpg", "mode": "passthrough"},
    )
    assert response.status_code == 200, response.text
    assert rebinding_dns[0] == CHECKED  # the check saw the allowed address...
    assert face.hits == ["/face.jpg"]  # ...the request reached it, with TLS for NAME...
    assert wire.accepted == 0  # ...and nothing connected to what a second lookup would give
