"""session_api/services.py: TaskOwner keeps, cancels and reports its background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from atlas.logs import TextFormatter
from session_api.services import TaskOwner


async def test_a_dying_task_is_logged_with_its_name_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner()
    died = asyncio.Event()

    async def sweep() -> None:
        died.set()
        raise RuntimeError("sweep broke")

    caplog.set_level(logging.ERROR, logger="session_api")
    owner.start(sweep(), name="result-cleaner")
    await died.wait()
    for _ in range(3):  # the task finishes, then its done-callback runs
        await asyncio.sleep(0)
    [record] = [r for r in caplog.records if r.message == "background task died"]
    first, *rest = TextFormatter().format(record).splitlines()
    assert first.endswith("ERROR session_api background task died task=result-cleaner")
    assert rest[0] == "Traceback (most recent call last):"
    assert "in sweep" in "\n".join(rest)
    assert rest[-1] == "RuntimeError: sweep broke"
    await owner.aclose()


async def test_aclose_cancels_what_is_still_running_without_a_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = TaskOwner()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    owner.start(forever(), name="forever")
    await started.wait()
    await owner.aclose()
    assert cancelled.is_set()
    assert not [r for r in caplog.records if r.message == "background task died"]
