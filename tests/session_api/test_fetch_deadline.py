"""Every outbound fetch has one total deadline: a server that drips one byte a second (each
read well inside httpx's per-read timeout) fails the fetch within the deadline plus 1 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from session_api.db.session import Database
from session_api.errors import InvalidFaceUrl
from session_api.faces import FaceFetcher
from session_api.webhooks import WebhookSender

from .drip_server import DripServer

DEADLINE_S = 3.0


@pytest.fixture
def drip(tmp_path: Path) -> Iterator[DripServer]:
    server = DripServer(tmp_path)
    try:
        yield server
    finally:
        server.close()


async def test_a_dripping_face_url_fails_within_the_deadline(
    drip: DripServer, tmp_path: Path
) -> None:
    fetcher = FaceFetcher(
        max_bytes=1_000_000,
        timeout_s=DEADLINE_S,
        allow_networks=["127.0.0.1/32"],
        ca_file=str(drip.ca_file),
    )
    started = time.monotonic()
    try:
        with pytest.raises(InvalidFaceUrl, match="longer than 3 s"):
            await fetcher.fetch(f"{drip.base}/face.jpg", tmp_path / "face")
    finally:
        await fetcher.aclose()
    assert time.monotonic() - started < DEADLINE_S + 1


async def test_a_dripping_webhook_receiver_fails_the_attempt_within_the_deadline(
    drip: DripServer, tmp_path: Path
) -> None:
    db = Database(url=f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}")
    sender = WebhookSender(
        db=db,
        timeout_s=DEADLINE_S,
        allow_networks=["127.0.0.1/32"],
        ca_file=str(drip.ca_file),
    )
    started = time.monotonic()
    try:
        outcome = await sender.attempt(f"{drip.base}/hook", '{"event":"job.completed"}', "s")
    finally:
        await sender.aclose()
        await db.aclose()
    assert time.monotonic() - started < DEADLINE_S + 1
    assert not outcome.delivered and not outcome.permanent  # retried later, like any failure
    assert outcome.detail == "timed out"
