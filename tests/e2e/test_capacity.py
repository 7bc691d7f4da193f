"""Scenario 11: capacity. Above ATLAS_REALTIME_CAPACITY a create answers 503 `no_capacity`.
Four passthrough sessions run at once on this machine; the fps received and the late frames
(gaps longer than two frame intervals) are printed: a report, not a pass mark, since they
measure the machine (bench/realtime_e2e.py writes them to BENCHMARKS.md).

LiveKit drops a job it offers while no worker can take it (none registered, or each reads
as full), so the API dispatches again; the second test makes that happen on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from livekit import api

from session_api.livekit import room_name
from tests.e2e import media
from tests.e2e.stack import Stack, poll, speak_in_every_session, start_stack
from tests.livekit_server import LiveKitServer

CAPACITY = 4
JOIN_LIMIT_S = 180.0  # hang guard: four avatars starting at once on two cores


@pytest.fixture
def capacity_stack(tmp_path: Path, livekit_server: LiveKitServer) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path,
        livekit_server,
        api_env={"ATLAS_REALTIME_CAPACITY": str(CAPACITY)},
        ATLAS_AGENT_MAX_STREAMS=str(CAPACITY),
    )
    try:
        yield stack
    finally:
        stack.stop()


def late_frames(frames: list[media.VideoFrame]) -> int:
    gaps = np.diff([f.at for f in frames])
    return int(np.sum(gaps > 2 / media.FPS))


async def test_capacity_is_enforced_and_four_sessions_run_at_once(
    capacity_stack: Stack,
) -> None:
    stack = capacity_stack
    created = [await stack.create_session(mode="passthrough") for _ in range(CAPACITY)]
    assert [c.status_code for c in created] == [200] * CAPACITY, [c.text for c in created]
    over = await stack.create_session(mode="passthrough")
    assert over.status_code == 503 and over.json()["error"] == "no_capacity", over.text
    assert over.headers.get("retry-after")

    sessions = [c.json() for c in created]
    spoken = await speak_in_every_session(stack, sessions, join_limit_s=JOIN_LIMIT_S)
    report = []
    for viewer, out in spoken:
        frames = [f for f in viewer.video if f.at >= out.start]
        assert len(frames) > media.FPS, "a session's video stalled"
        report.append(f"{media.fps_of(frames):.1f} fps, {late_frames(frames)} late")
    print(f"\ncapacity: {CAPACITY} sessions: " + "; ".join(report))


async def test_a_dispatch_no_worker_took_is_made_again(
    tmp_path: Path, livekit_server: LiveKitServer
) -> None:
    """A create made while no worker is there to take its job: LiveKit drops the job, the API
    dispatches again, and the worker that registers meanwhile joins: 200, one avatar."""
    stack = start_stack(
        tmp_path,
        livekit_server,
        workers=0,
        api_env={
            "ATLAS_REALTIME_JOIN_TIMEOUT_S": "300",  # past the worker's start: a hang guard
            "ATLAS_REALTIME_REDISPATCH_AFTER_S": "1",
        },
    )
    try:
        create = asyncio.create_task(stack.create_session(mode="passthrough", timeout_s=300))
        redispatched = "no worker took the dispatch; dispatching again"
        await poll(
            lambda: _logged(stack, redispatched), limit_s=120, what="the API dispatching again"
        )
        await asyncio.to_thread(stack.start_worker)
        created = await create
        assert created.status_code == 200, created.text
        room = room_name(created.json()["session_id"])
        assert await _agents_in(livekit_server, room) == 1
    finally:
        stack.stop()


async def _logged(stack: Stack, text: str) -> bool:
    return text in stack.log(stack.api_proc)


async def _agents_in(livekit: LiveKitServer, room: str) -> int:
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
    return sum(p.kind == api.ParticipantInfo.Kind.AGENT for p in listed.participants)
