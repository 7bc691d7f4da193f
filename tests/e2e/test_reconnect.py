"""Scenario 6: reconnect. The client drops and rejoins within the empty timeout: the same
avatar, the same tracks, and the video resumes. Past the empty timeout the session ends, and
the bill excludes the empty time."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from tests.e2e import media
from tests.e2e.conftest import EMPTY_TIMEOUT_S
from tests.e2e.stack import Stack

JOIN_LIMIT_S = 90.0
END_LIMIT_S = 60.0
BILL_SLACK_S = 1.5  # the client's leave seen by the worker, the reaper's sweep, rounding


async def test_rejoin_within_the_empty_timeout_then_leave_for_good(stack: Stack) -> None:
    created = await stack.create_session(mode="passthrough")
    assert created.status_code == 200, created.text
    session = created.json()

    first = media.Viewer(keep_pixels=False)
    await first.join(session["livekit_url"], session["token"])
    await asyncio.wait_for(first.first_video.wait(), JOIN_LIMIT_S)
    agent = first.agent()
    assert agent is not None
    tracks = sorted(first.video_track_sids + first.audio_track_sids)
    await first.leave()

    second = media.Viewer(keep_pixels=False)
    await second.join(session["livekit_url"], session["token"])
    try:
        await asyncio.wait_for(second.first_video.wait(), JOIN_LIMIT_S)
        again = second.agent()
        assert again is not None and again.identity == agent.identity  # the same avatar
        assert sorted(second.video_track_sids + second.audio_track_sids) == tracks
        # the video resumes: a second of it after the rejoin
        await asyncio.wait_for(second.frames_since(0.0, media.FPS), JOIN_LIMIT_S)
    finally:
        left_at = time.time()
        await second.leave()
        left_by = time.time()

    got = await stack.wait_status(
        session["session_id"], {"ended"}, limit_s=EMPTY_TIMEOUT_S + END_LIMIT_S
    )
    ended = datetime.fromisoformat(got["ended_at"].replace("Z", "+00:00")).timestamp()
    started = datetime.fromisoformat(got["started_at"].replace("Z", "+00:00")).timestamp()
    assert time.time() >= left_at + EMPTY_TIMEOUT_S - BILL_SLACK_S  # it waited out the timeout
    # The bill stops where the worker saw the client go (a loaded machine may see it seconds
    # after the leave), never at the end of the empty wait; ended_at is to the second.
    seen = stack.worker_logged_at("client left", session["session_id"])
    assert seen is not None and seen >= left_at - 1
    assert seen - 1 - BILL_SLACK_S <= ended <= seen + BILL_SLACK_S, f"billed to {ended - seen:+.1f}"
    assert ended < left_by + EMPTY_TIMEOUT_S / 2, f"billed until {ended - left_at:+.1f} s"
    assert got["duration_seconds"] <= seen - started + BILL_SLACK_S
    assert not await stack.room_exists(session["room"])
