"""Every documented error case answers with its exact status and code, in the one shape."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from session_api.auth import revoke_key

from .api_support import Api, auth, no_face_png, upload


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings(max_upload_bytes=2_000_000)) as api:
        yield api


async def test_public_endpoints_need_no_key(api: Api) -> None:
    index = (await api.client.get("/")).json()
    assert index["name"] == "Atlas API" and index["version"] == "8.0"
    assert "POST /v1/generate" in index["endpoints"]
    health = await api.client.get("/v1/health")
    assert health.json() == {
        "status": "all systems go",
        "services": {"avatar_generation": "online"},
    }


@pytest.mark.parametrize("path", ["/v1/me", "/v1/status", "/v1/jobs", "/v1/jobs/abc"])
async def test_missing_authorization_is_401(api: Api, path: str) -> None:
    body = assert_error(await api.client.get(path), 401, "unauthorized")
    assert body["message"].startswith("Missing Authorization header")


@pytest.mark.parametrize("header", ["Token abc", "Bearer", "Bearer a b", "sk_live_x"])
async def test_malformed_authorization_is_401(api: Api, header: str) -> None:
    response = await api.client.get("/v1/me", headers={"Authorization": header})
    body = assert_error(response, 401, "unauthorized")
    assert body["message"].startswith("Invalid Authorization format")


async def test_unknown_and_revoked_keys_are_403(api: Api) -> None:
    assert_error(await api.client.get("/v1/me", headers=auth("sk_live_nope")), 403, "forbidden")
    key = await api.new_key()
    assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    assert await revoke_key(api.services.db, key.key_prefix) == 1
    assert_error(await api.client.get("/v1/me", headers=auth(key.key)), 403, "forbidden")


async def test_unknown_endpoint_404_and_wrong_method_405(api: Api) -> None:
    assert_error(await api.client.get("/v2/nothing"), 404, "not_found")
    assert_error(await api.client.delete("/v1/health"), 405, "method_not_allowed")
    key = await api.new_key()
    assert_error(await api.client.get("/v1/jobs/deadbeef", headers=auth(key.key)), 404, "not_found")


async def test_list_limit_over_100_is_422(api: Api) -> None:
    key = await api.new_key()
    response = await api.client.get("/v1/jobs?limit=101", headers=auth(key.key))
    assert_error(response, 422, "validation_error")
    ok = await api.client.get("/v1/jobs?limit=100&offset=0", headers=auth(key.key))
    assert ok.json() == {"jobs": [], "count": 0, "limit": 100, "offset": 0}


async def test_missing_field_is_422(api: Api, speech_bytes: bytes) -> None:
    key = await api.new_key()
    files = {"audio": ("speech.wav", speech_bytes, "audio/wav")}
    response = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    body = assert_error(response, 422, "validation_error")
    assert "image" in body["message"]


async def test_not_multipart_is_415(api: Api) -> None:
    key = await api.new_key()
    response = await api.client.post("/v1/generate", headers=auth(key.key), json={"audio": "x"})
    assert_error(response, 415, "unsupported_media_type")


async def test_formats_are_sniffed_not_trusted(
    api: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    key = await api.new_key()
    text = b"this is not audio at all, whatever the name says"
    files = upload(text, face_bytes)
    files["audio"] = ("speech.mp3", text, "audio/mpeg")
    response = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    assert_error(response, 415, "unsupported_media_type")
    files = upload(speech_bytes, b"GIF89a" + b"\0" * 100)
    response = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    assert_error(response, 415, "unsupported_media_type")
    # Right content under wrong names and types is accepted.
    files = {
        "audio": ("a.png", speech_bytes, "image/png"),
        "image": ("b.wav", face_bytes, "audio/wav"),
    }
    response = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    assert response.status_code == 202, response.text


async def test_empty_undecodable_and_faceless_media_are_400(
    api: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    key = await api.new_key()
    cases = [
        upload(b"", face_bytes),
        upload(speech_bytes, b""),
        upload(
            b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x13\x37" * 500, face_bytes
        ),  # mp3 tag, no frames
        upload(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", face_bytes),
        upload(speech_bytes, face_bytes[:200]),  # truncated JPEG
        upload(speech_bytes, no_face_png()),
    ]
    for files in cases:
        response = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
        assert_error(response, 400, "invalid_input")
    response = await api.client.post(
        "/v1/generate", headers=auth(key.key), files=upload(speech_bytes, no_face_png())
    )
    assert "no face" in response.json()["message"]


async def test_over_50mb_combined_is_413(api: Api, face_bytes: bytes) -> None:
    # The fixture app's cap is 2 MB; 50 MB is the default (checked in test_settings).
    key = await api.new_key()
    big = b"RIFF" + b"\0" * 1_200_000
    response = await api.client.post("/v1/generate", headers=auth(key.key), files=upload(big, big))
    assert_error(response, 413, "payload_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the stream is counted
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--xyz--\r\n"

    response = await api.client.post(
        "/v1/generate",
        headers={**auth(key.key), "Content-Type": "multipart/form-data; boundary=xyz"},
        content=chunked(),
    )
    assert_error(response, 413, "payload_too_large")


async def test_callback_url_must_be_https_and_public(
    api: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    key = await api.new_key()
    for url in [
        "http://example.com/hook",
        "https://localhost/hook",
        "https://127.0.0.1/hook",
        "https://10.0.0.8/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://" + "a" * 2050 + ".com/",
    ]:
        response = await api.client.post(
            "/v1/generate",
            headers={**auth(key.key), "X-Callback-URL": url},
            files=upload(speech_bytes, face_bytes),
        )
        assert_error(response, 400, "invalid_callback_url")


async def test_rate_limit_429_with_retry_after(api: Api) -> None:
    key = await api.new_key(rpm=3)
    for _ in range(3):
        assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    response = await api.client.get("/v1/me", headers=auth(key.key))
    body = assert_error(response, 429, "rate_limit_exceeded")
    assert body["message"] == "Slow down! You've hit the limit of 3 requests per minute."
    assert 1 <= body["retry_after_seconds"] <= 60
    assert response.headers["Retry-After"] == str(body["retry_after_seconds"])
    # Another key has its own window.
    other = await api.new_key()
    assert (await api.client.get("/v1/me", headers=auth(other.key))).status_code == 200


async def test_me_reports_the_window(api: Api) -> None:
    key = await api.new_key(name="My API Key", rpm=30)
    await api.client.get("/v1/status", headers=auth(key.key))
    me = (await api.client.get("/v1/me", headers=auth(key.key))).json()
    assert me["authenticated"] is True
    assert me["key_prefix"] == key.key_prefix and key.key.startswith(me["key_prefix"])
    assert me["name"] == "My API Key"
    assert me["rate_limit"]["requests_per_minute"] == 30
    assert me["rate_limit"]["remaining"] == 28
    assert me["rate_limit"]["resets_in"].endswith("s")


async def test_monthly_cap_429(api: Api, speech_bytes: bytes, face_bytes: bytes) -> None:
    key = await api.new_key(monthly_cap=1)
    files = upload(speech_bytes, face_bytes)
    first = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    assert first.status_code == 202
    second = await api.client.post("/v1/generate", headers=auth(key.key), files=files)
    assert_error(second, 429, "monthly_cap_exceeded")
    me = (await api.client.get("/v1/me", headers=auth(key.key))).json()
    assert me["requests_used"] == 1 and me["monthly_cap"] == {"limit": 1, "used": 1}


async def test_result_not_ready_409_then_failed_no_output_404(
    api: Api, speech_bytes: bytes, face_bytes: bytes
) -> None:
    key = await api.new_key()
    files = upload(speech_bytes, face_bytes)
    job_id = (await api.client.post("/v1/generate", headers=auth(key.key), files=files)).json()[
        "job_id"
    ]
    response = await api.client.get(f"/v1/jobs/{job_id}/result", headers=auth(key.key))
    body = assert_error(response, 409, "not_ready")
    assert "Poll GET /v1/jobs/{id}" in body["message"]
    queue = api.services.queue
    claimed = await queue.claim("w1")
    assert claimed is not None and claimed.id == job_id
    response = await api.client.get(f"/v1/jobs/{job_id}/result", headers=auth(key.key))
    assert_error(response, 409, "not_ready")
    assert await queue.fail(job_id, "w1", retry=False) == "failed"
    response = await api.client.get(f"/v1/jobs/{job_id}/result", headers=auth(key.key))
    assert_error(response, 404, "no_output")
    job = (await api.client.get(f"/v1/jobs/{job_id}", headers=auth(key.key))).json()
    assert job["status"] == "failed"
    assert job["error"] == "Processing failed. Please try again."
    assert job["error_code"] == "generation_failed"
    assert "url" not in job and "has_result" not in job["output"]


async def test_auth_unavailable_503(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> None:
    # A database nobody listens on: the key cannot be checked.
    settings = make_settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    async with open_api(settings, migrate=False, background=False) as api:
        response = await api.client.get("/v1/me", headers=auth("sk_live_whatever"))
        assert_error(response, 503, "auth_unavailable")
        assert (await api.client.get("/v1/health")).status_code == 200


async def test_queue_unavailable_503_when_the_database_is_locked(
    make_settings: Callable[..., Any],
    open_api: Callable[..., Any],
    speech_bytes: bytes,
    face_bytes: bytes,
) -> None:
    settings = make_settings(db_busy_timeout_s=0.2)
    async with open_api(settings, background=False) as api:
        key = await api.new_key()
        db_path = settings.resolved_database_url.split("///", 1)[1]
        locker = sqlite3.connect(db_path, isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock (WAL: reads go on)
            response = await api.client.post(
                "/v1/generate", headers=auth(key.key), files=upload(speech_bytes, face_bytes)
            )
            assert_error(response, 503, "queue_unavailable")
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        response = await api.client.post(
            "/v1/generate", headers=auth(key.key), files=upload(speech_bytes, face_bytes)
        )
        assert response.status_code == 202


async def test_storage_unavailable_503(
    make_settings: Callable[..., Any],
    open_api: Callable[..., Any],
    tmp_path: Any,
    speech_bytes: bytes,
    face_bytes: bytes,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the storage directory should be")
    settings = make_settings(storage_url=f"file://{blocker}")
    async with open_api(settings, background=False) as api:
        key = await api.new_key()
        response = await api.client.post(
            "/v1/generate", headers=auth(key.key), files=upload(speech_bytes, face_bytes)
        )
        assert_error(response, 503, "storage_unavailable")


async def test_temporarily_unavailable_503_when_redis_is_down(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0")
    async with open_api(settings, background=False) as api:
        key = await api.new_key()
        response = await api.client.get("/v1/me", headers=auth(key.key))
        assert_error(response, 503, "temporarily_unavailable")
