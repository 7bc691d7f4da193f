"""Verified keys are cached briefly: hot polls skip the key read, and revocation bites within 2 s.

The revocation goes straight to the database, as `atlas keys revoke` in another process does, so
nothing in this process hears of it: only the cache's expiry (an injected clock) can end it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from session_api.auth import KEY_CACHE_TTL_S, KeyCache, revoke_key
from tests.fake_clock import FakeClock

from .api_support import Api, auth


@pytest.fixture
async def api(
    make_settings: Callable[..., Any], open_api: Callable[..., Any]
) -> AsyncIterator[Api]:
    async with open_api(make_settings()) as api:
        yield api


@pytest.fixture
def tick(api: Api) -> FakeClock:
    clock = FakeClock()
    api.services.key_cache = KeyCache(clock=clock.now)
    return clock


def test_revocation_bites_within_two_seconds() -> None:
    assert 0 < KEY_CACHE_TTL_S <= 2.0


async def test_a_revoked_key_stops_working_when_its_cache_entry_expires(
    api: Api, tick: FakeClock
) -> None:
    key = await api.new_key()
    assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    assert await revoke_key(api.services.db, key.key_prefix) == 1

    # Within the TTL the cached verification still answers (this is what spares the read)...
    tick.advance(KEY_CACHE_TTL_S * 0.9)
    assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    # ...and from the TTL on, the database is read again and the revocation is seen.
    tick.advance(KEY_CACHE_TTL_S * 0.1)
    response = await api.client.get("/v1/me", headers=auth(key.key))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_cached_polls_do_not_read_the_key_row(api: Api, tick: FakeClock) -> None:
    key = await api.new_key()
    reads = 0
    real_read = api.services.db.read

    async def counting_read(work: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(work)

    api.services.db.read = counting_read  # type: ignore[method-assign]
    for _ in range(5):
        assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    assert reads == 1
    tick.advance(KEY_CACHE_TTL_S)
    assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200
    assert reads == 2


async def test_unknown_keys_are_never_cached(api: Api, tick: FakeClock) -> None:
    for _ in range(2):
        response = await api.client.get("/v1/me", headers=auth("sk_live_unknown"))
        assert response.status_code == 403
    key = await api.new_key()  # a key created meanwhile works at once
    assert (await api.client.get("/v1/me", headers=auth(key.key))).status_code == 200


def test_the_cache_is_bounded() -> None:
    clock = FakeClock()
    cache = KeyCache(max_entries=2, clock=clock.now)
    sentinel: Any = object()
    for digest in ("a", "b", "c"):
        cache.put(digest, sentinel)
    assert cache.get("a") is None
    assert cache.get("b") is sentinel and cache.get("c") is sentinel
