"""Rate limits shared through real Redis by two app instances."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from .api_support import auth


async def test_two_instances_admit_exactly_30_of_40(
    make_settings: Callable[..., Any], open_api: Callable[..., Any], redis_url: str
) -> None:
    settings = make_settings(redis_url=redis_url)
    async with (
        open_api(settings, background=False) as one,
        open_api(settings, background=False) as two,
    ):
        key = await one.new_key(rpm=30)

        async def call(i: int) -> int:
            api = one if i % 2 else two
            response = await api.client.get("/v1/me", headers=auth(key.key))
            if response.status_code == 429:
                body = response.json()
                assert body["error"] == "rate_limit_exceeded"
                assert int(response.headers["Retry-After"]) == body["retry_after_seconds"] >= 1
            return response.status_code

        statuses = Counter(await asyncio.gather(*(call(i) for i in range(40))))
    assert statuses == {200: 30, 429: 10}
