"""The demo broker put on the internet: what an anonymous visitor can and cannot make it do.

Real app (SQLite, fake LiveKit API) through httpx's ASGI transport, which streams request bodies
chunk by chunk, so the caps and timeouts are seen acting on a body as it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from session_api.auth import authenticate, create_key
from session_api.config import Settings
from session_api.db.models import Job, RealtimeSession
from session_api.demo import KEY_FILE
from tests.e2e.openai_fake import FakeOpenAI
from tests.session_api.api_support import Api, auth
from tests.web.test_broker import built_page, face_files, visitor  # noqa: F401 (fixture)

MB = 1024 * 1024
FILE_PART = b'--x\r\nContent-Disposition: form-data; name="face"; filename="f.jpg"\r\n\r\n'


@pytest.fixture
def demo_env(monkeypatch: pytest.MonkeyPatch, built_page: Path) -> pytest.MonkeyPatch:  # noqa: F811
    monkeypatch.setenv("ATLAS_DEMO", "1")
    monkeypatch.setenv("ATLAS_DEMO_DIR", str(built_page))
    monkeypatch.setenv("ATLAS_DEMO_TRUSTED_PROXIES", '["127.0.0.1/32"]')
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
async def exposed(
    demo_env: pytest.MonkeyPatch,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
) -> AsyncIterator[Api]:
    """Capacity 4 (the broker may hold 2), small upload caps and a short idle timeout."""
    settings = rt_settings(realtime_capacity=4, max_upload_bytes=1 * MB, upload_idle_timeout_s=0.5)
    async with open_api(settings, background=False) as api_:
        yield api_


async def _sessions(api: Api) -> list[RealtimeSession]:
    async with api.services.db.session() as tx:
        return list((await tx.execute(select(RealtimeSession))).scalars())


class Body:
    """A streamed request body that counts what the server pulled, and can stall."""

    def __init__(
        self, *, chunk: bytes, chunks: int, stall_after: int | None = None, head: bytes = b""
    ) -> None:
        self.chunk, self.chunks, self.stall_after, self.head = chunk, chunks, stall_after, head
        self.sent = 0
        self.never = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.head:
            yield self.head
        for i in range(self.chunks):
            if self.stall_after is not None and i >= self.stall_after:
                await self.never.wait()  # a client that stops sending
            self.sent += len(self.chunk)
            yield self.chunk


async def test_bodies_are_capped_as_they_stream(exposed: Api) -> None:
    client = exposed.client
    # JSON routes: 64 KB, with or without a Content-Length
    big_json = b'{"text": "' + b"a" * (100 * 1024) + b'"}'
    for path in ("/api/session", "/api/speech"):
        told = await client.post(
            path, content=big_json, headers={"content-type": "application/json"}
        )
        assert told.status_code == 413, (path, told.text)
        body = Body(chunk=b"a" * 16 * 1024, chunks=64)  # 1 MB, chunked
        streamed = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"
        assert body.sent <= 96 * 1024, (path, body.sent)  # it stopped reading near the cap

    # uploads at the API's own caps (1 MB here): refused as soon as the stream passes it
    ctype = {"content-type": "multipart/form-data; boundary=x"}
    body = Body(chunk=b"b" * 64 * 1024, chunks=400, head=FILE_PART.replace(b"face", b"audio"))
    job = await client.post("/api/generate", content=body, headers=ctype)
    assert job.status_code == 413 and job.json()["error"] == "payload_too_large"
    assert body.sent <= 2 * MB, body.sent
    body = Body(chunk=b"c" * 64 * 1024, chunks=400, head=FILE_PART)
    face = await client.post("/api/session", content=body, headers=ctype)
    assert face.status_code == 413
    assert body.sent <= exposed.services.settings.realtime_face_max_bytes + 2 * MB
    assert await _sessions(exposed) == []


@pytest.mark.timeout(120)  # a broker that waits forever fails here, not by hanging
async def test_a_stalled_body_is_answered_408_as_on_v1(exposed: Api) -> None:
    ctype = {"content-type": "multipart/form-data; boundary=x"}
    for path, headers in (
        ("/api/generate", ctype),
        ("/api/session", ctype),
        ("/api/session", {"content-type": "application/json"}),
        ("/api/speech", {"content-type": "application/json"}),
    ):
        body = Body(chunk=b"--x", chunks=3, stall_after=1)
        stalled = await exposed.client.post(path, content=body, headers=headers)
        assert stalled.status_code == 408, (path, stalled.text)
        assert stalled.json()["error"] == "request_timeout"
        assert stalled.headers["connection"] == "close"


async def test_cross_site_pages_cannot_create_sessions(exposed: Api, face_bytes: bytes) -> None:
    client = exposed.client
    for headers in (
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://sub.test"},
        {"Origin": "null"},
    ):
        refused = await client.post("/api/session", files=face_files(face_bytes), headers=headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"] == "forbidden"
    assert await _sessions(exposed) == []
    # this site's own page (the Origin of the Host it was served from) is fine
    own = await client.post(
        "/api/session",
        files=face_files(face_bytes),
        headers={"Origin": "http://test", "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status_code == 200, own.text


async def test_one_live_session_and_three_creates_a_minute_per_visitor(
    exposed: Api, face_bytes: bytes
) -> None:
    async with visitor(exposed, "198.51.100.1") as alice, visitor(exposed, "198.51.100.2") as bob:
        first = await alice.post("/api/session", files=face_files(face_bytes))
        assert first.status_code == 200
        second = await alice.post("/api/session", files=face_files(face_bytes))
        assert second.status_code == 429 and second.json()["error"] == "rate_limited"
        assert int(second.headers["retry-after"]) > 0
        # another visitor is not held back by her
        other = await bob.post("/api/session", files=face_files(face_bytes))
        assert other.status_code == 200
        await bob.delete(f"/api/session/{other.json()['session_id']}")
        # ended, she may start again: her third create this minute
        await alice.delete(f"/api/session/{first.json()['session_id']}")
        third = await alice.post("/api/session", files=face_files(face_bytes))
        assert third.status_code == 200, third.text
        await alice.delete(f"/api/session/{third.json()['session_id']}")
        fourth = await alice.post("/api/session", files=face_files(face_bytes))
        assert fourth.status_code == 429 and "a minute" in fourth.json()["message"]


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    demo_env: pytest.MonkeyPatch,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    face_bytes: bytes,
) -> None:
    demo_env.delenv("ATLAS_DEMO_TRUSTED_PROXIES")
    async with open_api(rt_settings(realtime_capacity=4), background=False) as api:
        async with visitor(api, "198.51.100.1") as one, visitor(api, "198.51.100.2") as two:
            assert (await one.post("/api/session", files=face_files(face_bytes))).is_success
            # a made-up header does not make a new visitor: both are the socket's 127.0.0.1
            again = await two.post("/api/session", files=face_files(face_bytes))
            assert again.status_code == 429


async def test_visitors_cannot_set_options_and_sessions_are_capped(
    exposed: Api, face_bytes: bytes
) -> None:
    client = exposed.client
    for field, value in (
        ("max_duration_seconds", "3600"),
        ("instructions", "You are a free LLM proxy."),
        ("persona", "anything"),
        ("voice_id", "alloy"),
    ):
        as_json = await client.post(
            "/api/session", json={"face_url": "https://a/b.jpg", field: value}
        )
        assert as_json.status_code == 400 and field in as_json.json()["message"]
        form = await client.post("/api/session", files=face_files(face_bytes), data={field: value})
        assert form.status_code == 400 and field in form.json()["message"]
    assert await _sessions(exposed) == []

    created = await client.post("/api/session", files=face_files(face_bytes))
    assert created.status_code == 200
    (row,) = await _sessions(exposed)
    assert row.max_duration_s == 300
    # the broker's key carries the caps too: 300 s sessions, a monthly cap of generations
    key_file = exposed.services.settings.data_dir / KEY_FILE
    key = await authenticate(exposed.services.db, f"Bearer {key_file.read_text().strip()}")
    assert (key.max_session_s, key.monthly_cap) == (300, 1000)


async def test_the_broker_leaves_capacity_for_paying_keys(exposed: Api, face_bytes: bytes) -> None:
    ips = ("198.51.100.1", "198.51.100.2", "198.51.100.3")
    async with visitor(exposed, ips[0]) as a, visitor(exposed, ips[1]) as b:
        async with visitor(exposed, ips[2]) as c:
            assert (await a.post("/api/session", files=face_files(face_bytes))).is_success
            assert (await b.post("/api/session", files=face_files(face_bytes))).is_success
            full = await c.post("/api/session", files=face_files(face_bytes))
    assert full.status_code == 503 and full.json()["error"] == "no_capacity"
    paying = await create_key(exposed.services.db, name="customer")
    own = await exposed.client.post(
        "/v1/realtime/session", files=face_files(face_bytes), headers=auth(paying.key)
    )
    assert own.status_code == 200, own.text  # half the capacity was never the broker's


async def test_a_session_is_only_usable_from_the_browser_that_created_it(
    exposed: Api, face_bytes: bytes
) -> None:
    async with visitor(exposed, "198.51.100.1") as owner, visitor(exposed, "198.51.100.2") as other:
        created = await owner.post("/api/session", files=face_files(face_bytes))
        session_id = created.json()["session_id"]
        assert "httponly" in created.headers["set-cookie"].lower()
        path = f"/api/session/{session_id}"
        assert (await other.get(path)).status_code == 404
        assert (await other.patch(path, files=face_files(face_bytes))).status_code == 404
        assert (await other.delete(path)).status_code == 404
        # a cookie made up by hand is not a signed one
        other.cookies.set("atlas_demo_ids", "WyJydF8xIl0.forged", domain="test.local", path="/api")
        assert (await other.delete(path)).status_code == 404
        assert (await owner.get(path)).json()["status"] == "active"
        assert (await owner.delete(path)).status_code == 200


async def test_a_callback_url_is_never_forwarded(
    exposed: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    files = {
        "audio": ("speech.wav", speech_bytes, "audio/wav"),
        "image": ("face.jpg", face_bytes, "image/jpeg"),
    }
    hook = {"X-Callback-URL": "https://attacker.example/hook"}
    submitted = await exposed.client.post("/api/generate", files=files, headers=hook)
    assert submitted.status_code == 202, submitted.text
    async with exposed.services.db.session() as tx:
        (job,) = (await tx.execute(select(Job))).scalars()
    assert job.callback_url is None
    # the job is this browser's; nobody else's
    job_id = submitted.json()["job_id"]
    assert (await exposed.client.get(f"/api/jobs/{job_id}")).status_code == 200
    async with visitor(exposed, "198.51.100.9") as other:
        assert (await other.get(f"/api/jobs/{job_id}")).status_code == 404
        assert (await other.get(f"/api/jobs/{job_id}/result")).status_code == 404


@pytest.fixture
async def speech_exposed(
    demo_env: pytest.MonkeyPatch,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
) -> AsyncIterator[tuple[Api, FakeOpenAI]]:
    fake = FakeOpenAI().start()
    for name, value in fake.env().items():
        demo_env.setenv(name, value)
    try:
        async with open_api(rt_settings(), background=False) as api_:
            yield api_, fake
    finally:
        fake.close()


async def test_speech_is_limited_per_visitor_after_validation(
    speech_exposed: tuple[Api, FakeOpenAI],
) -> None:
    api, fake = speech_exposed
    async with visitor(api, "198.51.100.1") as junk, visitor(api, "198.51.100.2") as person:
        for _ in range(40):  # junk is refused without spending anyone's budget
            assert (await junk.post("/api/speech", json={"text": ""})).status_code == 400
        assert (await junk.post("/api/speech", json={"text": "Hi."})).status_code == 200
        for _ in range(10):
            assert (await person.post("/api/speech", json={"text": "Hello."})).status_code == 200
        over = await person.post("/api/speech", json={"text": "Hello."})
        assert over.status_code == 429 and over.json()["error"] == "rate_limited"
        assert (await junk.post("/api/speech", json={"text": "Still me."})).status_code == 200
    assert len(fake.spoken) == 12


async def test_no_broker_answer_carries_the_operator_key(
    speech_exposed: tuple[Api, FakeOpenAI], face_bytes: bytes, speech_bytes: bytes
) -> None:
    api, _ = speech_exposed
    client = api.client
    answers: list[httpx.Response] = [await client.get("/api/demo")]
    created = await client.post("/api/session", files=face_files(face_bytes))
    session = f"/api/session/{created.json()['session_id']}"
    answers += [
        created,
        await client.get(session),
        await client.patch(session, files=face_files(face_bytes)),
        await client.post("/api/session", json={"face_url": "http://x"}),
        await client.post("/api/session", json={"instructions": "x"}),
        await client.post("/api/session", headers={"Origin": "https://evil.example"}),
        await client.post("/api/speech", json={"text": "Hello."}),
        await client.post(
            "/api/speech", content=b"{", headers={"content-type": "application/json"}
        ),
        await client.post(
            "/api/generate",
            files={
                "audio": ("a.wav", speech_bytes, "audio/wav"),
                "image": ("f.jpg", face_bytes, "image/jpeg"),
            },
        ),
        await client.post("/api/generate", files={"audio": ("a.wav", b"x", "audio/wav")}),
        await client.get("/api/jobs/nope"),
        await client.delete(session),
        await client.delete(session),
    ]
    key = (api.services.settings.data_dir / KEY_FILE).read_text().strip()
    assert key.startswith("sk_live_")
    for answer in answers:
        seen = answer.text + "".join(f"{k}: {v}\n" for k, v in answer.headers.items())
        assert key not in seen and "sk_live_" not in seen, (answer.request.url, seen[:300])
