"""The demo's session broker and the /demo page, against the real app (SQLite, fake LiveKit API).

The broker must be the spec's backend-proxy pattern: the page sends no key, the broker adds its
own server-side key, and the API's answers (errors included) pass through unchanged.
"""

from __future__ import annotations

import io
import stat
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from session_api.auth import authenticate
from session_api.config import Settings
from session_api.demo import KEY_FILE
from tests.e2e.openai_fake import SECONDS_PER_CHAR, FakeOpenAI
from tests.fake_clock import FakeClock
from tests.session_api.api_support import Api


@pytest.fixture
def built_page(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Atlas demo</title>")
    (dist / "assets" / "app-1234.js").write_text("console.log('demo')")
    return dist


@pytest.fixture
async def broker_api(
    monkeypatch: pytest.MonkeyPatch,
    built_page: Path,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
) -> AsyncIterator[Api]:
    monkeypatch.setenv("ATLAS_DEMO", "1")
    monkeypatch.setenv("ATLAS_DEMO_DIR", str(built_page))
    # the test client connects from 127.0.0.1: as a trusted proxy, its X-Forwarded-For names
    # the visitor, so one test can play several visitors
    monkeypatch.setenv("ATLAS_DEMO_TRUSTED_PROXIES", '["127.0.0.1/32"]')
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # no text-to-speech unless a test adds it
        monkeypatch.delenv(name, raising=False)
    async with open_api(rt_settings(realtime_capacity=1), background=False) as api_:
        yield api_


def visitor(api: Api, ip: str) -> httpx.AsyncClient:
    """Another browser (its own cookies) of the visitor at `ip`, behind the trusted proxy."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app),
        base_url="http://test",
        headers={"X-Forwarded-For": ip},
    )


def face_files(face: bytes) -> dict[str, Any]:
    return {"face": ("face.jpg", face, "image/jpeg")}


async def test_page_and_assets_are_served(broker_api: Api) -> None:
    for path in ("/demo", "/demo/"):
        page = await broker_api.client.get(path, params={"kiosk": "1", "face": "grace"})
        assert page.status_code == 200
        assert "<title>Atlas demo</title>" in page.text
        assert page.headers["cache-control"] == "no-cache"  # a rebuilt page shows at once
    asset = await broker_api.client.get("/demo/assets/app-1234.js")
    assert asset.status_code == 200 and "demo" in asset.text
    # content-hashed names: kept for good, not fetched again on every visit
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    missing = await broker_api.client.get("/demo/assets/app-0000.js")
    assert missing.status_code == 404 and "immutable" not in missing.headers["cache-control"]


async def test_create_swap_status_and_end_with_no_key_from_the_page(
    broker_api: Api, livekit: Any, face_bytes: bytes
) -> None:
    client = broker_api.client
    created = await client.post(
        "/api/session", files=face_files(face_bytes), data={"mode": "passthrough"}
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["mode"] == "passthrough" and body["token"] and body["livekit_url"]
    # the camelCase names the React hook's README expects from a backend, beside the API's own
    assert (body["sessionId"], body["livekitUrl"]) == (body["session_id"], body["livekit_url"])
    session_id = body["session_id"]

    swapped = await client.patch(f"/api/session/{session_id}", files=face_files(face_bytes))
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["message"] == "Face updated successfully."

    status = await client.get(f"/api/session/{session_id}")
    assert status.json()["status"] == "active"

    ended = await client.delete(f"/api/session/{session_id}")
    assert ended.status_code == 200
    assert ended.json()["estimated_cost"].startswith("$")
    again = await client.delete(f"/api/realtime-session/{session_id}")
    assert again.status_code == 409 and again.json()["error"] == "already_ended"

    # the broker's key is a real key of this server, kept server-side (0600) and reused
    key_file = broker_api.services.settings.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = await authenticate(broker_api.services.db, f"Bearer {key_file.read_text().strip()}")
    assert key.name == "demo-broker"


async def test_json_bodies_and_errors_pass_through(broker_api: Api, face_bytes: bytes) -> None:
    client = broker_api.client
    bad = await client.post("/api/realtime-session", json={"face_url": "http://x/face.jpg"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_face_url"
    mode = await client.post("/api/session", json={"face_url": "https://a/b.jpg", "mode": "x"})
    assert mode.status_code == 400 and mode.json()["error"] == "invalid_mode"

    first = await client.post("/api/session", files=face_files(face_bytes))
    assert first.status_code == 200
    async with visitor(broker_api, "203.0.113.7") as other:
        full = await other.post("/api/session", files=face_files(face_bytes))
    assert full.status_code == 503
    assert full.json()["error"] == "no_capacity"
    assert full.json()["retry_after_seconds"] > 0
    assert int(full.headers["retry-after"]) > 0
    await client.delete(f"/api/session/{first.json()['session_id']}")


async def test_a_revoked_broker_key_is_replaced(broker_api: Api, face_bytes: bytes) -> None:
    from session_api.auth import KEY_CACHE_TTL_S, KeyCache, revoke_key

    clock = FakeClock()  # the API trusts a verified key for a moment; the test moves time past it
    broker_api.services.key_cache = KeyCache(clock=clock.now)
    client = broker_api.client
    first = await client.post("/api/session", files=face_files(face_bytes))
    await client.delete(f"/api/session/{first.json()['session_id']}")
    key_file = broker_api.services.settings.data_dir / KEY_FILE
    old = key_file.read_text().strip()
    assert await revoke_key(broker_api.services.db, old) == 1  # as `atlas keys revoke` does
    clock.advance(KEY_CACHE_TTL_S)
    second = await client.post("/api/session", files=face_files(face_bytes))
    assert second.status_code == 200, second.text
    assert key_file.read_text().strip() != old
    await client.delete(f"/api/session/{second.json()['session_id']}")


async def test_offline_job_through_the_broker(
    broker_api: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    client = broker_api.client
    files = {
        "audio": ("speech.wav", speech_bytes, "audio/wav"),
        "image": ("face.jpg", face_bytes, "image/jpeg"),
    }
    submitted = await client.post("/api/generate", files=files)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    polled = await client.get(f"/api/jobs/{job_id}")
    assert polled.status_code == 200 and polled.json()["status"] == "pending"
    early = await client.get(f"/api/jobs/{job_id}/result")
    assert early.status_code == 409 and early.json()["error"] == "not_ready"
    missing = await client.get("/api/jobs/..")
    assert missing.status_code == 404


async def test_info_says_whether_realtime_works(broker_api: Api) -> None:
    info = (await broker_api.client.get("/api/demo")).json()
    assert info == {"broker": True, "realtime": True, "speech": False, "missing": []}


async def test_broker_is_off_unless_enabled(
    monkeypatch: pytest.MonkeyPatch,
    built_page: Path,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    face_bytes: bytes,
) -> None:
    monkeypatch.delenv("ATLAS_DEMO", raising=False)
    monkeypatch.setenv("ATLAS_DEMO_DIR", str(built_page))
    async with open_api(rt_settings(), background=False) as api_:
        off = await api_.client.post("/api/session", files=face_files(face_bytes))
        assert off.status_code == 404
        assert off.json()["error"] == "not_found" and "ATLAS_DEMO=1" in off.json()["message"]
        assert (await api_.client.get("/api/demo")).json()["broker"] is False
        assert not (api_.services.settings.data_dir / KEY_FILE).exists()
        # the static page is harmless and still served
        assert (await api_.client.get("/demo")).status_code == 200


async def test_an_unbuilt_page_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
) -> None:
    monkeypatch.setenv("ATLAS_DEMO_DIR", str(tmp_path / "nothing-here"))
    async with open_api(make_settings(), background=False) as api_:
        page = await api_.client.get("/demo")
        assert page.status_code == 404
        assert page.json()["error"] == "not_found" and "make web" in page.json()["message"]


async def test_a_default_mode_fills_json_creates_that_name_none(
    monkeypatch: pytest.MonkeyPatch,
    built_page: Path,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    face_bytes: bytes,
) -> None:
    monkeypatch.setenv("ATLAS_DEMO", "1")
    monkeypatch.setenv("ATLAS_DEMO_DIR", str(built_page))
    monkeypatch.setenv("ATLAS_DEMO_DEFAULT_MODE", "passthrough")
    async with open_api(rt_settings(), background=False) as api_:
        client = api_.client
        # JSON with no mode: the default; a named mode or a multipart create: unchanged
        bad_url = await client.post("/api/realtime-session", json={"face_url": "http://x/f.jpg"})
        assert bad_url.json()["error"] == "invalid_face_url"
        named = await client.post("/api/session", json={"face_url": "https://a/b", "mode": "x"})
        assert named.json()["error"] == "invalid_mode"
        form = await client.post("/api/session", files=face_files(face_bytes))
        assert form.json()["mode"] == "conversation"
        await client.delete(f"/api/session/{form.json()['session_id']}")


async def test_speech_is_off_without_a_text_to_speech_service(broker_api: Api) -> None:
    off = await broker_api.client.post("/api/speech", json={"text": "Hello there."})
    assert off.status_code == 404 and "OPENAI_API_KEY" in off.json()["message"]


@pytest.fixture
async def speech_api(
    monkeypatch: pytest.MonkeyPatch,
    built_page: Path,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
) -> AsyncIterator[tuple[Api, FakeOpenAI]]:
    fake = FakeOpenAI().start()
    for name, value in {**fake.env(), "ATLAS_DEMO": "1", "ATLAS_DEMO_DIR": str(built_page)}.items():
        monkeypatch.setenv(name, value)
    try:
        async with open_api(rt_settings(), background=False) as api_:
            yield api_, fake
    finally:
        fake.close()


async def test_speech_turns_text_into_a_wav_through_the_openai_compatible_service(
    speech_api: tuple[Api, FakeOpenAI],
) -> None:
    api, fake = speech_api
    assert (await api.client.get("/api/demo")).json()["speech"] is True
    text = "The doors open at nine."
    spoken = await api.client.post("/api/speech", json={"text": text})
    assert spoken.status_code == 200 and spoken.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(spoken.content)) as wav:
        seconds = wav.getnframes() / wav.getframerate()
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
    assert seconds == pytest.approx(len(text) * SECONDS_PER_CHAR, abs=0.01)
    assert fake.spoken == [text]

    for bad in ({"text": ""}, {"text": "x" * 1001}, {"words": "hi"}, ["hi"]):
        refused = await api.client.post("/api/speech", json=bad)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_input", bad
    assert fake.spoken == [text]  # nothing refused reached the paid service
