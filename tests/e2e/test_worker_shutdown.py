"""Scenario 8: the worker goes away mid-session. SIGTERM drains: the session ends cleanly (the
room is deleted and the summary logged). SIGKILL: the API's reaper closes the session (the
worker's participant is gone). No room outlives its session. Each case has its own API and
worker, so killing them touches no other scenario."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import media
from tests.e2e.stack import Stack, kill_tree, poll, start_stack
from tests.livekit_server import LiveKitServer

JOIN_LIMIT_S = 90.0
END_LIMIT_S = 90.0  # hang guard: a killed worker's participant times out on the server first
DRAIN_S = "2"  # `atlas agent start --drain-timeout`: then the running session is shut down


@pytest.fixture
def own_stack(tmp_path: Path, livekit_server: LiveKitServer) -> Iterator[Stack]:
    stack = start_stack(tmp_path, livekit_server, workers=0)
    try:
        yield stack
    finally:
        stack.stop()


async def live_session(stack: Stack) -> tuple[dict[str, str], media.Viewer]:
    created = await stack.create_session(mode="passthrough")
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = media.Viewer(keep_pixels=False)
    await viewer.join(session["livekit_url"], session["token"])
    await asyncio.wait_for(viewer.first_video.wait(), JOIN_LIMIT_S)
    return session, viewer


async def ended_and_room_gone(stack: Stack, session: dict[str, str]) -> dict[str, Any]:
    got = await stack.wait_status(session["session_id"], {"ended"}, limit_s=END_LIMIT_S)

    async def gone() -> bool:
        return not await stack.room_exists(session["room"])

    await poll(gone, limit_s=END_LIMIT_S, what="the room deleted")
    return got


async def test_sigterm_drains_and_ends_the_session_cleanly(own_stack: Stack) -> None:
    worker = own_stack.start_worker("--drain-timeout", DRAIN_S)
    session, viewer = await live_session(own_stack)
    try:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(viewer.disconnected.wait(), END_LIMIT_S)
        got = await ended_and_room_gone(own_stack, session)
    finally:
        await viewer.leave()
    assert got["duration_seconds"] > 0
    summary = await own_stack.session_summary(session["session_id"])
    assert summary["reason"] == "shutdown"
    await asyncio.to_thread(worker.wait, END_LIMIT_S)  # and the worker exits


async def test_sigkill_leaves_the_session_to_the_reaper(own_stack: Stack) -> None:
    worker = own_stack.start_worker()
    session, viewer = await live_session(own_stack)
    try:
        kill_tree(worker.pid)
        got = await ended_and_room_gone(own_stack, session)
    finally:
        await viewer.leave()
    assert got["duration_seconds"] > 0
    assert "session summary" not in own_stack.log(worker)  # nobody ended it but the API
