"""An HTTPS server on loopback that answers one byte a second: each read arrives well inside
any per-read timeout, the whole answer never does."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import trustme

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
    + b"\xff" * 100_000
)


class DripServer:
    def __init__(self, tmp: Path, *, interval_s: float = 1.0, hang_up_after: int = 8) -> None:
        self.interval_s = interval_s
        self.hang_up_after = hang_up_after  # bytes: a fetch with no deadline ends, late, too
        ca = trustme.CA()
        self.ca_file = tmp / "drip-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._context)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base = f"https://localhost:{self.port}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            with self._context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)  # the request (headers and a small body arrive together)
                for byte in ANSWER[: self.hang_up_after]:
                    if self._stop.wait(self.interval_s):
                        return
                    tls.sendall(bytes([byte]))
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
