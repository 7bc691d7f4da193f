"""Nested or oversized JSON is a 4xx in the one error shape on every JSON route, never a 500."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from session_api.config import Settings
from session_api.json_limits import nesting_depth
from tests.fake_clock import FakeClock

from .api_support import Api, auth
from .test_api_errors import assert_error

DEEP_OBJECTS = b'{"a":' * 10_000
DEEP_ARRAYS = b"[" * 5_000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api_rt(
    rt_settings: Callable[..., Settings], open_api: Callable[..., Any], clock: FakeClock
) -> AsyncIterator[Api]:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        yield api_


@pytest.mark.parametrize("body", [DEEP_OBJECTS, DEEP_ARRAYS, b'{"a":' * 40 + b"1" + b"}" * 40])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/realtime/session"),
        ("PATCH", "/v1/realtime/session/ses_missing"),
        ("POST", "/v1/realtime/session/ses_missing"),
    ],
)
async def test_deep_nesting_is_a_422(
    api_rt: Api, caplog: pytest.LogCaptureFixture, body: bytes, method: str, path: str
) -> None:
    key = await api_rt.new_key()
    with caplog.at_level(logging.INFO):
        response = await api_rt.client.request(
            method, path, content=body, headers={**auth(key.key), **JSON}
        )
    assert_error(response, 422, "validation_error")
    assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"


async def test_oversized_json_is_a_413(api_rt: Api) -> None:
    key = await api_rt.new_key()
    body = b'{"instructions": "' + b"x" * 70_000 + b'"}'
    response = await api_rt.client.post(
        "/v1/realtime/session", content=body, headers={**auth(key.key), **JSON}
    )
    assert_error(response, 413, "payload_too_large")


async def test_a_deeply_nested_livekit_webhook_is_refused_not_a_500(api_rt: Api) -> None:
    response = await api_rt.client.post(
        "/v1/livekit/webhook",
        content=DEEP_OBJECTS,
        headers={"Authorization": "not-a-token", "Content-Type": "application/webhook+json"},
    )
    assert_error(response, 401, "unauthorized")


def test_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth(b'{"a": "[[[{{{\\"[", "b": [1, [2]]}') == 3
    assert nesting_depth(DEEP_OBJECTS) == 10_000
    assert nesting_depth(b'"unterminated \\') == 0
