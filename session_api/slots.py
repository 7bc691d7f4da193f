"""A first-come, first-served gate over a fixed number of slots, where a holder may take several.

asyncio.Semaphore counts holders; photo checks need to count memory, and a WebP decode takes
about twice a PNG's. A big request waits its turn at the head of the queue, so a stream of small
ones cannot starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Slots:
    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("total must be at least 1")
        self.total = total
        self._free = total
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    @contextlib.asynccontextmanager
    async def hold(self, wanted: int) -> AsyncIterator[int]:
        """Hold `wanted` slots (clamped to 1..total, which it yields) for the block's length."""
        count = min(max(wanted, 1), self.total)
        await self._acquire(count)
        try:
            yield count
        finally:
            self._release(count)

    async def _acquire(self, count: int) -> None:
        if not self._waiting and self._free >= count:
            self._free -= count
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, turn)
        self._waiting.append(entry)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(count)  # granted just as we were cancelled: hand it on
            else:
                with contextlib.suppress(ValueError):  # _grant may have dropped it already
                    self._waiting.remove(entry)
                self._grant()  # we may have been the head that blocked the others
            raise

    def _release(self, count: int) -> None:
        self._free += count
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self._waiting[0][0] <= self._free:
            count, turn = self._waiting.popleft()
            if turn.cancelled():  # its task has not run its except clause yet
                continue
            self._free -= count
            turn.set_result(None)
