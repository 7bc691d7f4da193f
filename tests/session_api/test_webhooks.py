"""Webhooks to a real local HTTPS receiver (self-signed CA trusted by the test)."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import select

from session_api.auth import create_key
from session_api.db.migrate import upgrade
from session_api.db.models import WebhookDelivery
from session_api.db.session import Database
from session_api.jobs.queue import JobQueue, NewJob
from session_api.webhooks import WebhookSender, completed_body, failed_body
from tests.fake_clock import FakeClock

SPEC_EXAMPLE_TIME = datetime(2026, 3, 31, 16, 47, 7, tzinfo=UTC)  # the spec's payload times


def verify_atlas_webhook(body: bytes, signature: str, timestamp: str, secret: str) -> bool:
    """The spec's verification snippet, verbatim."""
    expected = hmac.new(
        secret.encode(),
        f"{timestamp}.{body.decode()}".encode(),
        hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(expected, signature)


class Receiver:
    def __init__(self, ca: trustme.CA, tmp: Path) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.responses: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                status, headers = receiver.responses.pop(0) if receiver.responses else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        cert = ca.issue_cert("localhost", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.ca_file = tmp / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(trustme.CA(), tmp_path)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(url=f"sqlite+aiosqlite:///{tmp_path / 'hooks.db'}")
    await upgrade(database)
    try:
        yield database
    finally:
        await database.aclose()


async def finished_job(
    db: Database, clock: FakeClock, callback: str, *, fail: bool = False
) -> tuple[str, str]:
    """A job run through the queue to the end; returns (job_id, webhook secret)."""
    key = await create_key(db, name="hooks")
    queue = JobQueue(db=db, clock=clock, failed_webhook=failed_body)
    new = NewJob(
        key_id=key.id,
        audio_key="a",
        image_key="i",
        audio_size=1,
        image_size=1,
        callback_url=callback,
    )
    await queue.submit("a1b2c3d4e5f6", new, monthly_cap=None)
    assert await queue.claim("w") is not None
    clock.advance(45)
    if fail:
        assert await queue.fail("a1b2c3d4e5f6", "w", retry=False) == "failed"
    else:
        url = "https://storage.example.com/jobs/a1b2c3d4e5f6/output.mp4?sig=x"
        assert await queue.complete(
            "a1b2c3d4e5f6",
            "w",
            output_key="o",
            output_size=1,
            duration=1.0,
            result_ttl_s=86400,
            webhook=lambda job: completed_body(
                job, url=url, expires_in=86400, public_url="https://api.example.com"
            ),
        )
    return "a1b2c3d4e5f6", key.webhook_secret


def sender(db: Database, clock: FakeClock, receiver: Receiver, **kwargs: Any) -> WebhookSender:
    return WebhookSender(
        db=db,
        clock=clock,
        allow_networks=kwargs.pop("allow_networks", ["127.0.0.0/8"]),
        ca_file=str(receiver.ca_file),
        **kwargs,
    )


async def deliveries(db: Database) -> list[WebhookDelivery]:
    async with db.session() as session:
        return list((await session.execute(select(WebhookDelivery))).scalars())


async def test_completed_payload_and_signature(db: Database, receiver: Receiver) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    url = f"https://localhost:{receiver.port}/webhook/atlas"
    job_id, secret = await finished_job(db, clock, url)
    s = sender(db, clock, receiver)
    try:
        assert await s.deliver_due() == 1
    finally:
        await s.aclose()
    [(path, headers, body)] = receiver.requests
    assert path == "/webhook/atlas"
    assert headers["X-Atlas-Timestamp"] == str(int(clock().timestamp()))
    assert verify_atlas_webhook(
        body, headers["X-Atlas-Signature"], headers["X-Atlas-Timestamp"], secret
    )
    assert not verify_atlas_webhook(
        body + b" ", headers["X-Atlas-Signature"], headers["X-Atlas-Timestamp"], secret
    )
    assert json.loads(body) == {
        "event": "job.completed",
        "job_id": job_id,
        "type": "video",
        "status": "completed",
        "url": "https://storage.example.com/jobs/a1b2c3d4e5f6/output.mp4?sig=x",
        "expires_in": 86400,
        "result_url": f"https://api.example.com/v1/jobs/{job_id}/result",
        "created_at": "2026-03-31T16:47:07+00:00",
        "completed_at": "2026-03-31T16:47:52+00:00",
    }
    [row] = await deliveries(db)
    assert row.status == "delivered" and row.attempts == 1


async def test_failed_payload(db: Database, receiver: Receiver) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    job_id, _ = await finished_job(db, clock, f"https://localhost:{receiver.port}/h", fail=True)
    s = sender(db, clock, receiver)
    try:
        await s.deliver_due()
    finally:
        await s.aclose()
    assert json.loads(receiver.requests[0][2]) == {
        "event": "job.failed",
        "job_id": job_id,
        "type": "video",
        "status": "failed",
        "error_code": "generation_failed",
        "created_at": "2026-03-31T16:47:07+00:00",
        "completed_at": "2026-03-31T16:47:52+00:00",
    }


async def test_retries_after_5_30_120_seconds_then_gives_up(
    db: Database, receiver: Receiver
) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    await finished_job(db, clock, f"https://localhost:{receiver.port}/h")
    receiver.responses = [(500, {})] * 4
    s = sender(db, clock, receiver)
    try:
        attempts_at = []
        for _ in range(200):  # 1 s steps over 200 s of injected time
            if await s.deliver_due():
                attempts_at.append(clock())
            clock.advance(1)
    finally:
        await s.aclose()
    start = attempts_at[0]
    assert [(t - start).total_seconds() for t in attempts_at] == [0, 5, 35, 155]
    [row] = await deliveries(db)
    assert row.status == "failed" and row.attempts == 4 and row.last_error == "HTTP 500"


async def test_pending_delivery_survives_a_restart(
    db: Database, receiver: Receiver, tmp_path: Path
) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    await finished_job(db, clock, f"https://localhost:{receiver.port}/h")
    receiver.responses = [(503, {})]
    first = sender(db, clock, receiver)
    await first.deliver_due()
    await first.aclose()
    await db.aclose()  # the process goes away
    reopened = Database(url=db.url)
    try:
        clock.advance(5)
        second = sender(reopened, clock, receiver)
        try:
            assert await second.deliver_due() == 1
        finally:
            await second.aclose()
        [row] = await deliveries(reopened)
        assert row.status == "delivered" and row.attempts == 2
    finally:
        await reopened.aclose()


async def test_ssrf_refusals(db: Database, receiver: Receiver) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)

    async def resolver(host: str, port: int) -> list[str]:
        return {"internal.example": ["10.1.2.3"], "mixed.example": ["93.184.216.34", "127.0.0.1"]}[
            host
        ]

    # Without the allowlist, localhost (resolved by the real resolver) is refused.
    strict = WebhookSender(db=db, clock=clock, ca_file=str(receiver.ca_file))
    fake_dns = WebhookSender(db=db, clock=clock, resolver=resolver)
    try:
        for s, url in [
            (strict, f"https://localhost:{receiver.port}/h"),
            (fake_dns, "https://internal.example/h"),
            (fake_dns, "https://mixed.example/h"),
            (strict, "https://169.254.169.254/latest/meta-data"),
        ]:
            outcome = await s.attempt(url, "{}", "secret")
            assert not outcome.delivered and outcome.permanent, url
    finally:
        await strict.aclose()
        await fake_dns.aclose()
    assert receiver.requests == []


async def test_redirect_to_a_refused_address_is_not_followed(
    db: Database, receiver: Receiver
) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    await finished_job(db, clock, f"https://localhost:{receiver.port}/h")
    receiver.responses = [(307, {"Location": "https://169.254.169.254/latest/meta-data"})]
    s = sender(db, clock, receiver)
    try:
        await s.deliver_due()
    finally:
        await s.aclose()
    assert len(receiver.requests) == 1
    [row] = await deliveries(db)
    assert row.status == "failed" and "internal address" in (row.last_error or "")


async def test_redirect_to_an_allowed_address_is_followed(db: Database, receiver: Receiver) -> None:
    clock = FakeClock(start=SPEC_EXAMPLE_TIME)
    await finished_job(db, clock, f"https://localhost:{receiver.port}/h")
    receiver.responses = [(308, {"Location": "/moved"}), (204, {})]
    s = sender(db, clock, receiver)
    try:
        await s.deliver_due()
    finally:
        await s.aclose()
    assert [path for path, _, _ in receiver.requests] == ["/h", "/moved"]
    [row] = await deliveries(db)
    assert row.status == "delivered"
