"""The tests' one fake clock: time moves only when a test advances it, or when code waits.

One object fits each clock the code takes:
- session_api's `Clock` (called, it returns an aware UTC datetime): pass the clock itself;
- epoch seconds (`UrlSigner`): pass `clock.time`;
- `agent.clock.Clock`: `now()` in seconds from 0, and `await wait(event, seconds)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 4, 1, 1, 30, 0, tzinfo=UTC)


class FakeClock:
    """By default time moves only on advance(); with `advance_on_wait=True`, a wait() jumps
    straight to its timeout, so code that paces itself runs as fast as it can."""

    def __init__(self, *, start: datetime = START, advance_on_wait: bool = False) -> None:
        self.start = start
        self.elapsed = 0.0
        self.advance_on_wait = advance_on_wait
        self._tick = asyncio.Event()

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def time(self) -> float:
        return self.start.timestamp() + self.elapsed

    def now(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> _Settle:
        """Move time on now; `await clock.advance(s)` also lets the tasks it woke run."""
        self.elapsed += seconds
        self._tick.set()
        return _Settle()

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        if self.advance_on_wait:
            if not event.is_set() and seconds > 0:
                self.elapsed += seconds
            await asyncio.sleep(0)
            return
        deadline = self.elapsed + seconds
        while not event.is_set() and self.elapsed < deadline:
            self._tick.clear()
            waiters = [
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(self._tick.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()


class _Settle:
    """Awaiting it yields to the event loop a few times, so woken tasks run."""

    def __await__(self) -> Generator[Any, None, None]:
        for _ in range(5):
            yield from asyncio.sleep(0).__await__()
