"""A client that disconnects mid-body is one INFO line in the log, never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.types import Message

from session_api.config import Settings

from .api_support import auth

BOUNDARY = "atlasboundary"


@pytest.mark.parametrize("path", ["/v1/generate", "/v1/realtime/session"])
async def test_a_disconnect_mid_body_logs_one_info_line(
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    settings = make_settings(
        livekit_url="http://127.0.0.1:9", livekit_api_key="k", livekit_api_secret="s" * 32
    )
    async with open_api(settings) as api:
        key = await api.new_key()
        head = (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; '
                'filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            ).encode()
            + b"RIFF"
            + b"\0" * 1000
        )
        chunks: list[Message] = [
            {"type": "http.request", "body": head, "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> Message:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        headers = [
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", b"1000000"),
            *[(k.lower().encode(), v.encode()) for k, v in auth(key.key).items()],
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
            "state": {},
        }
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            await api.app(scope, receive, send)
    gone = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
