"""One total deadline for an outbound fetch (face URLs, webhooks, anything the API fetches).

httpx's timeouts bound each connect, read and write, not the whole exchange: a server that
drips one byte a second never trips a 10 s read timeout. Every fetch therefore runs under
`deadline(seconds)`, which raises FetchTimedOut once the whole fetch (redirects and body
included) has taken that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FetchTimedOut(Exception):
    """The whole fetch took longer than its deadline."""


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Cancel the enclosed fetch after `seconds` in all; raises FetchTimedOut then."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as exc:
        raise FetchTimedOut(f"gave up after {seconds:g} s") from exc
