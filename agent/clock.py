"""Injectable time: the event loop's clock in production, a fake one in tests."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        """Return once `event` is set or `seconds` have passed."""
        ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        if event.is_set() or seconds <= 0:
            return
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass
