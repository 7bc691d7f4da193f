"""face_url: fetched over HTTPS from a real local server, with SSRF refusals (literal addresses,
DNS answers and redirects) and the 10 MB / format limits."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

from session_api.config import Settings
from session_api.errors import InvalidFaceUrl
from session_api.faces import FaceFetcher
from tests.fake_clock import FakeClock
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import Api, auth
from .test_api_errors import assert_error


class ImageHost:
    """An HTTPS server on loopback: path -> (status, headers, body)."""

    def __init__(self, tmp: Path) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits.append(self.path)
                status, headers, body = host.routes.get(self.path, (404, {}, b""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        ca = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://localhost:{self.server.server_address[1]}"
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host(tmp_path: Path, face_bytes: bytes) -> Iterator[ImageHost]:
    h = ImageHost(tmp_path)
    h.routes["/face.jpg"] = (200, {"Content-Type": "image/jpeg"}, face_bytes)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
async def api_f(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    clock: FakeClock,
    host: ImageHost,
) -> AsyncIterator[Api]:
    settings = rt_settings(
        realtime_face_allow_networks=["127.0.0.1/32"],
        realtime_face_ca_file=str(host.ca_file),
        realtime_face_max_bytes=1_000_000,
    )
    async with open_api(settings, clock=clock, background=False) as api_:
        yield api_


async def test_face_url_is_fetched_stored_and_swapped(
    api_f: Api, host: ImageHost, livekit: FakeLiveKit, face_bytes: bytes
) -> None:
    key = await api_f.new_key()
    response = await api_f.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        json={"face_url": f"{host.base}/face.jpg", "mode": "passthrough"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    [dispatch] = livekit.calls_of("CreateDispatch")
    face = json.loads(dispatch.request.metadata)["face"]
    stored = api_f.services.settings.data_dir / "storage" / face["storage_key"]
    assert stored.read_bytes() == face_bytes

    host.routes["/moved"] = (302, {"Location": "/face.jpg"}, b"")
    swap = await api_f.client.patch(
        f"/v1/realtime/session/{body['session_id']}",
        headers=auth(key.key),
        json={"face_url": f"{host.base}/moved"},
    )
    assert swap.status_code == 200, swap.text
    assert json.loads(livekit.rooms[body["room"]].metadata)["face"]["version"] == 2
    assert host.hits == ["/face.jpg", "/moved", "/face.jpg"]


@pytest.mark.parametrize(
    "target",
    [
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/face.jpg",
        "https://127.0.0.2/face.jpg",  # loopback, but not the allow-listed 127.0.0.1
        "https://[::1]/face.jpg",
        "https://[fe80::1]/face.jpg",
    ],
)
async def test_redirect_to_an_internal_address_is_refused(
    api_f: Api, host: ImageHost, livekit: FakeLiveKit, target: str
) -> None:
    key = await api_f.new_key()
    host.routes["/r"] = (302, {"Location": target}, b"")
    response = await api_f.client.post(
        "/v1/realtime/session", headers=auth(key.key), json={"face_url": f"{host.base}/r"}
    )
    assert_error(response, 400, "invalid_face_url")
    assert host.hits == ["/r"]
    assert livekit.calls == []  # nothing was created


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/face.jpg",
        "https://localhost/face.jpg",
        "https://10.1.2.3/face.jpg",
        "https://172.16.0.1/face.jpg",
        "https://192.168.1.10/face.jpg",
        "https://169.254.169.254/latest/meta-data/iam",
        "https://100.100.100.200/latest",
        "https://[::1]/face.jpg",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:127.0.0.1]/face.jpg",
        "https://user:pw@example.com/face.jpg",
    ],
)
async def test_internal_face_urls_are_refused_without_a_request(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    face_bytes: bytes,
    url: str,
) -> None:
    async with open_api(rt_settings(), background=False) as api_:
        key = await api_.new_key()
        created = await api_.client.post(
            "/v1/realtime/session", headers=auth(key.key), json={"face_url": url}
        )
        assert_error(created, 400, "invalid_face_url")
        sid = (
            await api_.client.post(
                "/v1/realtime/session",
                headers=auth(key.key),
                files={"face": ("f.jpg", face_bytes, "image/jpeg")},
            )
        ).json()["session_id"]
        swapped = await api_.client.patch(
            f"/v1/realtime/session/{sid}", headers=auth(key.key), json={"face_url": url}
        )
        assert_error(swapped, 400, "invalid_face_url")
        assert livekit.calls_of("UpdateRoomMetadata") == []


async def test_hosts_resolving_to_internal_addresses_are_refused(tmp_path: Path) -> None:
    answers = {
        "internal.example": ["10.1.2.3"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "127.0.0.1"],
        "v6.example": ["fd12::1"],
    }

    async def resolver(name: str, port: int) -> list[str]:
        return answers[name]

    fetcher = FaceFetcher(max_bytes=1000, resolver=resolver)
    try:
        for name in answers:
            with pytest.raises(InvalidFaceUrl, match="refused address"):
                await fetcher.fetch(f"https://{name}/face.jpg", tmp_path / "f")
    finally:
        await fetcher.aclose()
    assert not (tmp_path / "f").exists()


async def test_face_url_limits(api_f: Api, host: ImageHost) -> None:
    key = await api_f.new_key()
    host.routes["/big.jpg"] = (200, {}, b"\xff\xd8\xff" + b"\0" * 1_000_000)
    host.routes["/text"] = (200, {}, b"<html>not an image</html>")
    host.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    cases = {
        "/big.jpg": (413, "payload_too_large"),
        "/text": (415, "unsupported_media_type"),
        "/missing.jpg": (400, "invalid_face_url"),
        "/loop": (400, "invalid_face_url"),
    }
    for path, (status, code) in cases.items():
        response = await api_f.client.post(
            "/v1/realtime/session", headers=auth(key.key), json={"face_url": host.base + path}
        )
        assert_error(response, status, code)
    assert host.hits.count("/loop") == 4  # the first request and three redirects, no more
