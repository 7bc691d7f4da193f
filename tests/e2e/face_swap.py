"""A face swap mid-speech through the real stack, shared by the e2e test (what the viewer must
see) and bench/realtime_e2e.py (how long it took and the largest gap across it): a client
speaks, the face is PATCHed once a second of speech frames has arrived, and the viewer keeps
every frame it received."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from renderer.landmarks import FaceLandmarker
from renderer.options import RendererOptions
from tests.e2e import media
from tests.e2e.stack import FACE, Stack

JOIN_LIMIT_S = 90.0  # hang guards, not latency bounds
TILT_DEG = 20.0  # the new face: the same photo, rotated
TILT_SEEN_DEG = 10.0  # half the rotation: nearer the new face's tilt than the old one's
# a crossfade's blended frames may read as either face: twice its length in frames
SETTLE_FRAMES = 2 * math.ceil(RendererOptions().crossfade_s * media.FPS)


@dataclass
class Swap:
    frames: list[media.VideoFrame]  # from a second before the PATCH
    asked: float  # the PATCH sent
    answered: float  # its 200 received
    track_sids: list[str]


@dataclass
class Tilts:
    before: float  # the median eye-line angle before the PATCH
    after: list[tuple[float, float]]  # (arrival, angle) of each frame after it with a face

    def is_new(self, tilt: float) -> bool:
        return abs(tilt - self.before) > TILT_SEEN_DEG

    def first_new(self) -> float | None:
        return next((at for at, tilt in self.after if self.is_new(tilt)), None)

    def old_after_new(self) -> list[float]:
        """Arrivals of frames showing the old face once the crossfade to the new one is over
        (counted in frames, so a stall does not stretch it)."""
        first = next((i for i, (_, tilt) in enumerate(self.after) if self.is_new(tilt)), None)
        if first is None:
            return []
        return [at for at, tilt in self.after[first + SETTLE_FRAMES :] if not self.is_new(tilt)]


def swap_log(stack: Stack, session_id: str) -> str:
    """The workers' log records about this session's face."""
    lines = [
        line
        for proc in stack.workers
        for line in stack.log(proc).splitlines()
        if session_id in line and "face" in line
    ]
    return "\n".join(lines[-20:])


def tilted_face() -> bytes:
    image = cv2.imread(str(FACE))
    assert image is not None
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), TILT_DEG, 1.0)
    rotated = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    ok, jpeg = cv2.imencode(".jpg", rotated)
    assert ok
    return jpeg.tobytes()


async def swap_mid_speech(stack: Stack) -> Swap:
    created = await stack.create_session(mode="passthrough")
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = media.Viewer()
    await viewer.join(session["livekit_url"], session["token"])
    speech, rate = media.load_speech()
    player: asyncio.Task[media.Sent] | None = None
    try:
        mic, _ = await viewer.publish_audio()
        await asyncio.wait_for(viewer.first_video.wait(), JOIN_LIMIT_S)
        player = asyncio.create_task(media.play(mic, speech, rate))
        await asyncio.sleep(0)
        speech_from = time.monotonic()
        await asyncio.wait_for(viewer.frames_since(speech_from, media.FPS), JOIN_LIMIT_S)
        asked = time.monotonic()
        swapped = await stack.swap_face(session["session_id"], tilted_face())
        answered = time.monotonic()
        assert swapped.status_code == 200, swapped.text
        await player
        # the worker applied it (its log says why not, if it did not), and a second of frames
        # after that reached the viewer
        try:
            await stack.worker_saw("face swapped", session["session_id"])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{swap_log(stack, session['session_id'])}") from None
        await asyncio.wait_for(viewer.frames_since(time.monotonic(), media.FPS), JOIN_LIMIT_S)
    finally:
        if player is not None and not player.done():
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
        await viewer.leave()
        await stack.delete_session(session["session_id"])
    frames = [f for f in viewer.video if asked - 1.0 <= f.at]
    return Swap(frames, asked, answered, list(viewer.video_track_sids))


def tilts(swap: Swap) -> Tilts:
    landmarker = FaceLandmarker(max_faces=1)
    try:
        mouths = media.mouths(swap.frames, landmarker)
    finally:
        landmarker.close()
    before = float(np.median([m.tilt_deg for m in mouths if m.at < swap.asked]))
    return Tilts(before, [(m.at, m.tilt_deg) for m in mouths if m.at > swap.asked])


def gap_across(swap: Swap) -> float:
    """The largest gap between received frames from a second before the PATCH to 3 s after."""
    return media.max_gap_s(swap.frames, swap.asked - 1.0, swap.answered + 3.0)
