"""Per-key sliding-window rate limits with the `limits` library: in memory, or shared in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from session_api.errors import RateLimitExceeded, TemporarilyUnavailable


@dataclass(frozen=True, slots=True)
class WindowState:
    limit: int
    remaining: int
    resets_in_s: int


class RateLimiter:
    """Moving (true sliding) window: exactly `rpm` hits in any 60 s, per key."""

    def __init__(self, *, redis_url: str | None = None, namespace: str = "atlas") -> None:
        self._storage: Storage
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            self._storage = RedisStorage(
                uri, implementation="redispy", wrap_exceptions=True, key_prefix=namespace
            )
        else:
            self._storage = MemoryStorage(wrap_exceptions=True)
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def hit(self, key_id: int, rpm: int) -> WindowState:
        """Count one request; RateLimitExceeded (with Retry-After) when over the limit."""
        allowed, state = await self.hit_scoped("key", str(key_id), rpm)
        if not allowed:
            raise RateLimitExceeded(rpm=rpm, retry_after_s=state.resets_in_s)
        return state

    async def hit_scoped(self, scope: str, ident: str, per_minute: int) -> tuple[bool, WindowState]:
        """Count one hit on (scope, ident); returns whether it was allowed, and the window."""
        item = RateLimitItemPerMinute(per_minute)
        try:
            allowed = await self._limiter.hit(item, scope, ident)
            stats = await self._limiter.get_window_stats(item, scope, ident)
        except StorageError as exc:
            raise TemporarilyUnavailable("Rate limiter is temporarily unavailable.") from exc
        resets_in = max(1, math.ceil(stats.reset_time - time.time()))
        return allowed, WindowState(
            limit=per_minute, remaining=stats.remaining, resets_in_s=resets_in
        )

    async def aclose(self) -> None:
        if isinstance(self._storage, MemoryStorage):
            # stop the library's expiry sweep first: one still running when the keys are reset
            # dies with a KeyError that nobody retrieves
            sweep = self._storage.timer
            if sweep is not None and not sweep.done():
                sweep.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweep
            await self._storage.reset()
        else:
            bridge = getattr(self._storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            if client is not None:
                await client.aclose()
