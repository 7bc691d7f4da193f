"""One way to run background tasks in agent/: an owner that logs failures and cancels on close.

Like livekit-agents' `utils.log_exceptions` and `utils.aio.cancel_and_wait`: a task that fails
is logged the moment it ends, with its name and traceback (never only at garbage collection),
and `aclose()` cancels whatever is still running and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from livekit.agents import utils

logger = logging.getLogger("agent")

T = TypeVar("T")


class TaskOwner:
    """The background tasks of one object (`owner` names it in the logs)."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._owner} is closed: cannot start {name}")
        task = asyncio.create_task(coro, name=f"{self._owner}.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error(
                "background task failed",
                exc_info=exc,
                extra={"task": task.get_name()},
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them all to end."""
        self._closed = True
        await utils.aio.cancel_and_wait(*self._tasks)
