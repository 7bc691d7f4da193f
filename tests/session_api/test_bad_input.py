"""Hostile query strings answer their documented 4xx, never a 500 or a reset connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from session_api.storage import LocalStorage

from .api_support import Api, auth
from .test_api_errors import assert_error


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings(), background=False) as api:
        yield api


@pytest.mark.parametrize("sig", ["%C3%A9" * 32, "%E2%9C%93", "%FF%FE", "%00"])
async def test_non_ascii_signature_is_403(api: Api, tmp_path: Path, sig: str) -> None:
    storage = api.services.storage
    assert isinstance(storage, LocalStorage)
    src = tmp_path / "o.mp4"
    src.write_bytes(b"\0" * 10)
    await storage.put_file("jobs/j/output.mp4", src, content_type="video/mp4")
    good = (await storage.presign("jobs/j/output.mp4", expires_in=60)).removeprefix("http://test")
    forged = good.split("&sig=")[0] + "&sig=" + sig
    assert_error(await api.client.get(forged), 403, "forbidden")
    assert (await api.client.get(good)).status_code == 200


@pytest.mark.parametrize("offset", [2**63, 10**30, 1_000_000_001, -1])
async def test_out_of_range_offset_is_422(api: Api, offset: int) -> None:
    key = await api.new_key()
    response = await api.client.get(f"/v1/jobs?offset={offset}", headers=auth(key.key))
    assert_error(response, 422, "validation_error")


async def test_large_but_valid_offset_lists_nothing(api: Api) -> None:
    key = await api.new_key()
    response = await api.client.get("/v1/jobs?offset=1000000000", headers=auth(key.key))
    assert response.status_code == 200
    assert response.json()["jobs"] == [] and response.json()["offset"] == 1_000_000_000
