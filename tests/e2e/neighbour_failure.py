"""One of two speaking sessions in one worker fails mid-speech, on cue (tests/e2e/faulty_worker.py):
shared by the e2e test (what must happen to each session) and bench/realtime_e2e.py (the largest
gap in the other session's stream across the failure).

    stack, worker = start_faulty_stack(tmp, livekit, cue)
    async with neighbour_failure(stack, cue) as failure:
        failure.good, failure.bad, failure.viewers[0].video, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e import media
from tests.e2e.stack import Stack, start_stack
from tests.livekit_server import LiveKitServer

JOIN_LIMIT_S = 180.0  # hang guards only: avatars starting on a busy 2-core machine
Session = dict[str, Any]


@dataclass
class NeighbourFailure:
    good: Session
    bad: Session  # the one that fails
    viewers: list[media.Viewer]  # good's, bad's: still in their rooms
    speech_from: float
    cued: float
    failed_at: float  # the API first reported the bad session over
    ended: Session  # the bad session as the API reported it then

    def gap_beside(self) -> float:
        """The largest gap in the good session's received frames from the cue on."""
        return media.max_gap_s(self.viewers[0].video, self.cued, time.monotonic())

    def gap_before(self) -> float:
        """The same, from the speech's start to the cue: the machine's own stalls."""
        return media.max_gap_s(self.viewers[0].video, self.speech_from, self.cued)


def start_faulty_stack(
    tmp: Path, livekit: LiveKitServer, cue: Path
) -> tuple[Stack, subprocess.Popen[bytes]]:
    """An API and one worker of two streams that fails a session when its id is written to
    `cue`."""
    stack = start_stack(
        tmp,
        livekit,
        workers=0,
        ATLAS_AGENT_MAX_STREAMS="2",
        ATLAS_RENDERER_SIZE="256",  # the scenario is about sessions, not pixels
    )
    try:
        worker = stack.start_worker(
            command=[sys.executable, "-m", "tests.e2e.faulty_worker"],
            ATLAS_TEST_FAIL_CUE=str(cue),
        )
    except BaseException:
        stack.stop()
        raise
    return stack, worker


@contextlib.asynccontextmanager
async def neighbour_failure(
    stack: Stack,
    cue: Path,
    *,
    while_both_stream: Callable[[Session, Session], Awaitable[None]] | None = None,
) -> AsyncIterator[NeighbourFailure]:
    """Two passthrough sessions, both clients speaking; once a second of the good session's
    speech frames has arrived, the bad one fails. Yields when the API has reported the bad
    one over and two seconds of the good one's frames arrived after that."""
    viewers = [media.Viewer(keep_pixels=False) for _ in range(2)]
    players: list[asyncio.Task[media.Sent]] = []
    good: Session | None = None
    try:
        created = [await stack.create_session(mode="passthrough") for _ in viewers]
        assert [c.status_code for c in created] == [200, 200], [c.text for c in created]
        good, bad = (c.json() for c in created)
        for viewer, session in zip(viewers, (good, bad), strict=True):
            await viewer.join(session["livekit_url"], session["token"])
        mics = [(await v.publish_audio())[0] for v in viewers]
        await asyncio.wait_for(
            asyncio.gather(*(v.first_video.wait() for v in viewers)), JOIN_LIMIT_S
        )
        if while_both_stream is not None:
            await while_both_stream(good, bad)
        speech, rate = media.load_speech()
        speech_from = time.monotonic()
        players = [asyncio.create_task(media.play(m, speech, rate)) for m in mics]
        await asyncio.wait_for(viewers[0].frames_since(speech_from, media.FPS), JOIN_LIMIT_S)
        cued = time.monotonic()
        await asyncio.to_thread(cue.write_text, bad["session_id"])
        ended = await stack.wait_status(bad["session_id"], {"ended", "failed"}, limit_s=60)
        failed_at = time.monotonic()
        await asyncio.wait_for(viewers[0].frames_since(failed_at, 2 * media.FPS), JOIN_LIMIT_S)
        yield NeighbourFailure(good, bad, viewers, speech_from, cued, failed_at, ended)
    finally:
        for player in players:
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await player
        for viewer in viewers:
            await viewer.leave()
        if good is not None:
            await stack.delete_session(good["session_id"])
