"""Scenarios 4, 5 and 7: how a session ends, seen from the client, the API and LiveKit.

4. DELETE: the room is deleted (RoomService.ListRooms) by the time DELETE answers, and the
   avatar leaves; GET shows `ended` with the duration and `estimated_cost`.
5. max_duration: the session ends at the cap (within 2 s), the client is disconnected, and the
   room is gone.
7. failure: a job the worker cannot start (conversation mode, no provider keys): the room is
   deleted, GET shows `failed` with an error code, nothing is billed, and the client learns it
   from the avatar's `atlas.error` attribute and an `atlas.session` data packet.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

from tests.e2e import media
from tests.e2e.stack import Stack, poll

JOIN_LIMIT_S = 90.0  # hang guards
END_LIMIT_S = 30.0
CAP_TOLERANCE_S = 2.0  # the threshold


async def joined_viewer(session: dict[str, str]) -> media.Viewer:
    viewer = media.Viewer(keep_pixels=False)
    await viewer.join(session["livekit_url"], session["token"])
    await asyncio.wait_for(viewer.first_video.wait(), JOIN_LIMIT_S)
    return viewer


async def test_delete_ends_the_session_and_deletes_the_room(stack: Stack) -> None:
    created = await stack.create_session(mode="passthrough")
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = await joined_viewer(session)
    try:
        assert viewer.agent() is not None
        ended = await stack.delete_session(session["session_id"])
        assert ended.status_code == 200, ended.text
        # the API deletes the room before it answers: stricter than the "within 2 s",
        # and no clock to race
        assert not await stack.room_exists(session["room"]), "the room outlived the DELETE"
        await asyncio.wait_for(viewer.disconnected.wait(), END_LIMIT_S)  # the avatar left too
    finally:
        await viewer.leave()
    body = ended.json()
    assert body["status"] == "ended" and body["duration_seconds"] > 0
    got = await stack.get_session(session["session_id"])
    assert got["status"] == "ended" and got["ended_at"] is not None
    assert got["duration_seconds"] == body["duration_seconds"]
    assert got["estimated_cost"] == body["estimated_cost"] and got["estimated_cost"].startswith("$")


async def test_max_duration_ends_the_session_at_the_cap(stack: Stack) -> None:
    cap = 10  # the API's minimum
    created = await stack.create_session(mode="passthrough", max_duration_seconds=str(cap))
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = await joined_viewer(session)
    try:
        await asyncio.wait_for(viewer.disconnected.wait(), cap + END_LIMIT_S)
        disconnected_at = time.time()
    finally:
        await viewer.leave()
    got = await stack.wait_status(session["session_id"], {"ended"}, limit_s=END_LIMIT_S)
    started = datetime.fromisoformat(got["started_at"].replace("Z", "+00:00")).timestamp()
    assert abs(disconnected_at - (started + cap)) <= CAP_TOLERANCE_S
    assert abs(got["duration_seconds"] - cap) <= CAP_TOLERANCE_S
    assert not await stack.room_exists(session["room"])


async def test_a_job_the_worker_cannot_start_fails_without_a_bill(stack: Stack) -> None:
    # the shared worker has no STT/LLM/TTS keys: conversation mode cannot start
    created = await stack.create_session(mode="conversation")
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = media.Viewer(keep_pixels=False)
    await viewer.join(session["livekit_url"], session["token"])
    try:

        async def told() -> bool:
            return any(topic == "atlas.session" for topic, _ in viewer.data)

        await poll(told, limit_s=END_LIMIT_S, what="the atlas.session packet")
        attributes = {}
        agent = viewer.agent()
        if agent is not None:
            attributes = dict(agent.attributes)
        await asyncio.wait_for(viewer.disconnected.wait(), END_LIMIT_S)
    finally:
        await viewer.leave()
    packet = json.loads(next(data for topic, data in viewer.data if topic == "atlas.session"))
    assert packet["type"] == "session_failed" and packet["code"] == "missing_provider_keys"
    if attributes:  # the packet and the attribute arrive together; both say the same
        assert attributes.get("atlas.error") == "missing_provider_keys"
    got = await stack.wait_status(session["session_id"], {"failed"}, limit_s=END_LIMIT_S)
    assert got["error_code"] == "missing_provider_keys"
    assert got["duration_seconds"] == 0.0 and got["estimated_cost"] == "$0.00"
    assert not await stack.room_exists(session["room"])
    # and it no longer holds a slot: the session cannot be ended again
    assert (await stack.delete_session(session["session_id"])).status_code in (404, 409)
