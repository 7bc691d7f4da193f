"""agent.tasks.TaskOwner: failures are logged when they happen; close cancels and waits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agent.tasks import TaskOwner


async def test_a_failing_task_is_logged_with_its_name_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner("widget")

    async def boom() -> None:
        raise ValueError("broken")

    task = owner.spawn(boom(), name="boom")
    with caplog.at_level(logging.ERROR, logger="agent"):
        await asyncio.wait({task})
        await asyncio.sleep(0)  # done callbacks run on the next loop step
    (record,) = [r for r in caplog.records if r.getMessage() == "background task failed"]
    assert record.task == "widget.boom"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert len(owner) == 0
    await owner.aclose()


async def test_close_cancels_what_still_runs_and_refuses_new_tasks() -> None:
    owner = TaskOwner("widget")
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    owner.spawn(forever(), name="forever")
    await started.wait()
    await owner.aclose()
    assert cancelled.is_set() and len(owner) == 0

    async def later() -> None:
        return None

    with pytest.raises(RuntimeError, match="closed"):
        owner.spawn(later(), name="later")
