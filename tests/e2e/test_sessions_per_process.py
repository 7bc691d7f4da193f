"""Many sessions in one worker process (issue: sessions cost what they render).

Against a real livekit-server with real `atlas serve` and `atlas agent start` processes:
- fault isolation: one session's renderer raises mid-speech; that session alone ends (reason
  "error", the client told, the room deleted, the bill stopped there) while the other keeps
  streaming (the largest gap in its stream is a benchmark: bench/realtime_e2e.py);
- one model per process: the worker's metrics show the landmarker and the backend loaded once
  for all its sessions, and Silero never (no conversation ran); no job process exists;
- admission: a burst of `max_streams` creates on a fresh worker all get 200 with no
  redispatch, and one more is refused (503) with no second avatar anywhere.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from livekit import api

from session_api.livekit import room_name
from tests.e2e import media
from tests.e2e.neighbour_failure import Session, neighbour_failure, start_faulty_stack
from tests.e2e.stack import Stack, poll, start_stack
from tests.livekit_server import LiveKitServer

JOIN_LIMIT_S = 180.0  # hang guards only: avatars starting on a busy 2-core machine
REDISPATCHED = "no worker took the dispatch; dispatching again"


async def agents_in(livekit: LiveKitServer, room: str) -> int:
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
    return sum(p.kind == api.ParticipantInfo.Kind.AGENT for p in listed.participants)


async def assert_one_plain_video_layer(livekit: LiveKitServer, room: str) -> None:
    """The avatar's video as the server holds it: one track, no simulcast (agent/runner.py)."""
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
    (avatar,) = [p for p in listed.participants if p.kind == api.ParticipantInfo.Kind.AGENT]
    videos = [t for t in avatar.tracks if t.type == api.TrackType.VIDEO]
    assert len(videos) == 1 and not videos[0].simulcast, videos
    assert len(videos[0].layers) <= 1, videos[0].layers


def failed_packets(viewer: media.Viewer) -> list[dict[str, str]]:
    return [json.loads(data) for topic, data in viewer.data if topic == "atlas.session"]


async def test_a_failing_session_ends_alone_and_the_other_keeps_streaming(
    tmp_path: Path, livekit_server: LiveKitServer
) -> None:
    cue = tmp_path / "fail-cue"
    stack, worker = start_faulty_stack(tmp_path, livekit_server, cue)

    async def one_process_serves_both(good: Session, bad: Session) -> None:
        await assert_one_plain_video_layer(livekit_server, room_name(good["session_id"]))
        samples = stack.metrics(worker)
        assert samples["atlas_agent_sessions_live"] == 2.0
        # one landmarker and one backend for both sessions; no Silero for passthrough
        assert samples["atlas_agent_models_loaded"] == 2.0
        assert psutil.Process(worker.pid).children(recursive=True) == [], "job processes"

    try:
        async with neighbour_failure(
            stack, cue, while_both_stream=one_process_serves_both
        ) as failure:
            bad_id = failure.bad["session_id"]
            summary = await stack.session_summary(bad_id)
            assert summary["reason"] == "error", summary
            await poll(lambda: _gone(stack, bad_id), limit_s=60, what="the failed session's room")
            assert [p["code"] for p in failed_packets(failure.viewers[1])] == ["internal_error"]
            # billed to the failure: not to the client's leaving, nor to max duration
            ended = failure.ended
            assert ended["duration_seconds"] <= failure.failed_at - failure.speech_from + 60, ended
            # the other session streamed on after the failure (neighbour_failure waited for
            # two seconds of its frames) and is still live
            assert (await stack.get_session(failure.good["session_id"]))["status"] == "active"
            # how long its largest gap was depends on this machine's load: bench/realtime_e2e.py
            # measures it against the 200 ms target
            print(
                f"\nisolation: the other stream's max gap {failure.gap_beside() * 1000:.0f} ms",
                f"(before {failure.gap_before() * 1000:.0f})",
            )
            samples = stack.metrics(worker)
            assert samples['atlas_agent_sessions_ended_total{reason="error"}'] == 1.0
            assert samples["atlas_agent_sessions_live"] == 1.0
    finally:
        stack.stop()


async def _gone(stack: Stack, session_id: str) -> bool:
    return not await stack.room_exists(room_name(session_id))


@pytest.mark.parametrize("streams", [2])
async def test_a_burst_fills_a_fresh_worker_and_no_more(
    tmp_path: Path, livekit_server: LiveKitServer, streams: int
) -> None:
    stack = start_stack(
        tmp_path,
        livekit_server,
        api_env={
            "ATLAS_REALTIME_CAPACITY": str(streams + 2),  # the worker, not the API, is full
            "ATLAS_REALTIME_JOIN_TIMEOUT_S": "20",
        },
        ATLAS_AGENT_MAX_STREAMS=str(streams),
        ATLAS_RENDERER_SIZE="256",
    )
    try:
        burst = await asyncio.gather(
            *(stack.create_session(mode="passthrough") for _ in range(streams))
        )
        assert [c.status_code for c in burst] == [200] * streams, [c.text for c in burst]
        assert REDISPATCHED not in stack.log(stack.api_proc), "a burst job was dropped"
        # one avatar each, looked at before the sessions' empty timeout (nobody joins them)
        for created in burst:
            assert await agents_in(stack.livekit, room_name(created.json()["session_id"])) == 1
        over = await stack.create_session(mode="passthrough")
        assert over.status_code == 503 and over.json()["error"] == "no_capacity", over.text
    finally:
        stack.stop()


async def test_a_late_job_and_a_redispatch_leave_exactly_one_avatar(
    tmp_path: Path, livekit_server: LiveKitServer
) -> None:
    """The worker answers the session's first job only after the API has looked for it and
    dispatched again: two jobs of one session run, and the room holds one avatar, streaming;
    the replaced job leaves without ending the session or deleting the room."""
    release = tmp_path / "release-first-job"
    stack = start_stack(
        tmp_path,
        livekit_server,
        workers=0,
        api_env={"ATLAS_REALTIME_REDISPATCH_AFTER_S": "1"},
        ATLAS_AGENT_MAX_STREAMS="2",
        ATLAS_RENDERER_SIZE="256",
    )
    viewer = media.Viewer(keep_pixels=False)
    try:
        worker = stack.start_worker(
            command=[sys.executable, "-m", "tests.e2e.faulty_worker"],
            ATLAS_TEST_HOLD_FIRST_JOB=str(release),
        )
        create = asyncio.create_task(stack.create_session(mode="passthrough", timeout_s=120))
        await poll(
            lambda: _logged(stack, stack.api_proc, REDISPATCHED),
            limit_s=60,
            what="the API dispatching again",
        )
        release.write_text("go")  # the first job is answered now, after the API's look
        created = await create
        assert created.status_code == 200, created.text
        session = created.json()
        sid = session["session_id"]

        def starts() -> int:
            return sum(
                '"session starting"' in line and sid in line
                for line in stack.log(worker).splitlines()
            )

        await poll(_async(lambda: starts() >= 2), limit_s=60, what="both jobs of the session")
        superseded = await stack.session_summary(sid)
        assert superseded["reason"] == "superseded", superseded

        async def one_avatar() -> bool:
            return await agents_in(stack.livekit, room_name(sid)) == 1

        await poll(one_avatar, limit_s=60, what="the replaced avatar leaving")
        assert await stack.room_exists(room_name(sid))
        assert (await stack.get_session(sid))["status"] == "active"
        await viewer.join(session["livekit_url"], session["token"])
        await asyncio.wait_for(viewer.first_video.wait(), JOIN_LIMIT_S)
        assert await agents_in(stack.livekit, room_name(sid)) == 1
    finally:
        await viewer.leave()
        stack.stop()


async def _logged(stack: Stack, proc: object, text: str) -> bool:
    return text in stack.log(proc)  # type: ignore[arg-type]


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return check()

    return probe
