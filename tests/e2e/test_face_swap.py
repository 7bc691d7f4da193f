"""Scenario 3: a face swap mid-speech. PATCH with a new face while the client speaks: the
received frames show the new face within 1 s (its landmark geometry: the new photo is tilted),
the video track's SID is unchanged, and no gap between received frames exceeds 200 ms."""

from __future__ import annotations

import asyncio
import contextlib
import time

import cv2
import numpy as np

from renderer.landmarks import FaceLandmarker
from tests.e2e import media
from tests.e2e.stack import FACE, Stack

JOIN_LIMIT_S = 90.0
NEW_FACE_S = 1.0  # the thresholds
MAX_GAP_S = 0.2
TILT_DEG = 20.0  # the new face: the same photo, rotated
TILT_SEEN_DEG = 10.0


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


async def test_face_swap_mid_speech_keeps_the_track_and_the_frames_flowing(stack: Stack) -> None:
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
        # mid-speech: once a second of frames has arrived since the speech started
        speech_from = time.monotonic()
        await asyncio.wait_for(viewer.frames_since(speech_from, media.FPS), JOIN_LIMIT_S)
        asked = time.monotonic()
        swapped = await stack.swap_face(session["session_id"], tilted_face())
        answered = time.monotonic()
        assert swapped.status_code == 200, swapped.text
        await player
        # the worker applied it (its log says why not, if it did not), and the frames after
        # that reached the viewer: a hang guard, not a latency bound
        try:
            await stack.worker_saw("face swapped", session["session_id"])
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{swap_log(stack, session['session_id'])}") from None
        await asyncio.wait_for(viewer.frames_since(time.monotonic(), media.FPS), JOIN_LIMIT_S)
        track_sids = list(viewer.video_track_sids)
    finally:
        if player is not None and not player.done():
            player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await player
        await viewer.leave()
        await stack.delete_session(session["session_id"])

    assert len(track_sids) == 1, f"video tracks: {track_sids}"  # one track, never republished
    window = [f for f in viewer.video if asked - 1.0 <= f.at]
    gap = media.max_gap_s(window, asked - 1.0, answered + 3.0)
    landmarker = FaceLandmarker(max_faces=1)
    try:
        mouths = media.mouths(window, landmarker)
    finally:
        landmarker.close()
    before = np.median([m.tilt_deg for m in mouths if m.at < asked])
    new = [m.at for m in mouths if m.at > asked and abs(m.tilt_deg - before) > TILT_SEEN_DEG]
    seen = [(round(m.at - answered, 2), round(m.tilt_deg, 1)) for m in mouths if m.at > asked]
    assert new, (
        f"the new face never showed in {len(window)} frames (tilt {before:.1f} before; after"
        f" the PATCH, s and tilt: {seen})"
    )
    shown = new[0] - answered
    before_gap = media.max_gap_s(viewer.video, speech_from, asked)
    print(
        f"\nface swap: new face {shown * 1000:.0f} ms after PATCH answered; max gap {gap:.3f} s"
        f" (before the swap: {before_gap:.3f} s)"
    )
    assert shown <= NEW_FACE_S, f"the new face showed {shown:.2f} s after the PATCH"
    # Arrival gaps include the machine's own stalls: the bound is 200 ms or the worst gap of the
    # same stream just before the swap, plus a frame, whichever is larger (the old swap stalled
    # 250-370 ms on an idle machine; the unit test in tests/agent pins the cause without a clock).
    limit = max(MAX_GAP_S, before_gap + 0.04)
    assert gap <= limit, f"a {gap * 1000:.0f} ms gap (before the swap: {before_gap * 1000:.0f})"
