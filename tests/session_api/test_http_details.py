"""Spec and HTTP details: max_duration_seconds takes a JSON integer or ASCII digits only, and
HEAD works wherever GET does (queue_position: test_queue_position.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from session_api.config import Settings
from session_api.schemas import whole_seconds
from tests.fake_clock import FakeClock

from .api_support import Api, auth
from .test_api_errors import assert_error


@pytest.fixture
async def api_rt(
    rt_settings: Callable[..., Settings], open_api: Callable[..., Any], clock: FakeClock
) -> AsyncIterator[Api]:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        yield api_


# --- max_duration_seconds ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["٣٠", "1_000", " 60 ", "60.0", "+60", "６０", "-60", ""])
def test_only_ascii_digit_strings_are_seconds(value: str) -> None:
    assert whole_seconds(value) is None or value == ""
    assert whole_seconds(60) == 60 and whole_seconds("60") == 60
    assert whole_seconds(True) is None and whole_seconds(60.0) is None


@pytest.mark.parametrize("value", ["٣٠٠", "1_000", " 60 ", "60.0", True, 60.5, [60]])
async def test_create_refuses_durations_that_are_not_integers(api_rt: Api, value: object) -> None:
    key = await api_rt.new_key()
    body = {"face_url": "https://faces.example.com/f.jpg", "max_duration_seconds": value}
    response = await api_rt.client.post("/v1/realtime/session", headers=auth(key.key), json=body)
    assert_error(response, 400, "invalid_input")


@pytest.mark.parametrize("value", ["٣٠٠", "1_000", " 60 "])
async def test_form_fields_take_ascii_digits_only(
    api_rt: Api, face_bytes: bytes, value: str
) -> None:
    key = await api_rt.new_key()
    files = {"face": ("face.jpg", face_bytes, "image/jpeg")}
    refused = await api_rt.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        files=files,
        data={"max_duration_seconds": value, "mode": "passthrough"},
    )
    assert_error(refused, 400, "invalid_input")
    created = await api_rt.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        files=files,
        data={"max_duration_seconds": "300", "mode": "passthrough"},
    )
    assert created.status_code == 200 and created.json()["max_duration_seconds"] == 300


# --- HEAD --------------------------------------------------------------------------------------
async def test_head_answers_wherever_get_does(api_rt: Api) -> None:
    key = await api_rt.new_key()
    documented = api_rt.app.openapi()["paths"]
    paths = [
        path.replace("{job_id}", "nope").replace("{session_id}", "ses_nope")
        for path, operations in documented.items()
        if "get" in operations
    ]
    assert {"/", "/v1/jobs", "/v1/me", "/v1/status", "/v1/jobs/nope/result"} <= set(paths)
    # and those left out of the schema
    paths += ["/v1/ready", "/openapi.json", "/docs", "/docs/init.js", "/docs/assets/swagger-ui.css"]
    for path in paths:
        get = await api_rt.client.get(path, headers=auth(key.key))
        head = await api_rt.client.head(path, headers=auth(key.key))
        assert head.status_code == get.status_code, path
        assert head.content == b"", path
        assert head.headers.get("content-length") == get.headers.get("content-length"), path
        assert head.headers.get("content-type") == get.headers.get("content-type"), path
    # a POST-only path still refuses HEAD
    refused = await api_rt.client.head("/v1/generate", headers=auth(key.key))
    assert refused.status_code == 405
