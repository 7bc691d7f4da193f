"""Scenario 2: a second audio track. The client keeps its microphone on (playing one voice)
and publishes a TTS track (another voice), as the spec's `publishAudio` does. The avatar
speaks the TTS track and never echoes the microphone while the TTS track is published; once
it is unpublished, the microphone is spoken again (agent/README.md, "Which track the avatar
speaks": the rule looks only at the tracks published now)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import numpy as np
from livekit import rtc

from tests.e2e import media
from tests.e2e.stack import Stack

JOIN_LIMIT_S = 90.0
MARGIN_S = 1.0  # arrival slack at phase boundaries (the measured latency is ~0.3-0.5 s)
FOUND = 0.6  # cross-correlation peak: "this is that audio" (unrelated speech: ~0.3)
ABSENT = 0.45


class Loop:
    """Plays `pcm` on `source` again and again; `played` counts the whole plays."""

    def __init__(self, source: rtc.AudioSource, pcm: np.ndarray) -> None:
        self.source, self.pcm = source, pcm
        self.played = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            await media.play(self.source, self.pcm, media.RATE)
            self.played += 1
            self.changed.set()

    async def wait_plays(self, count: int) -> None:
        while self.played < count:
            self.changed.clear()
            await self.changed.wait()


def heard_between(viewer: media.Viewer, start: float, end: float) -> np.ndarray:
    return media.received_audio([(t, c) for t, c in viewer.audio if start <= t <= end])


async def test_the_avatar_speaks_the_tts_track_while_it_is_published_then_the_microphone(
    stack: Stack,
) -> None:
    speech, rate = media.load_speech()
    user = media.resample(speech[: 4 * rate], rate, media.RATE).astype(np.int16)
    tts = media.resample(speech[::-1][: 4 * rate], rate, media.RATE).astype(np.int16)
    created = await stack.create_session(mode="passthrough")
    assert created.status_code == 200, created.text
    session = created.json()
    viewer = media.Viewer(keep_pixels=False)
    await viewer.join(session["livekit_url"], session["token"])
    mic_task: asyncio.Task[None] | None = None
    try:
        mic, _ = await viewer.publish_audio("mic", media.MIC)
        await asyncio.wait_for(viewer.first_video.wait(), JOIN_LIMIT_S)
        # the TTS track arrives; from then on the microphone talks all along (it starts only
        # now: mic speech from before, legitimately spoken and still queued on a busy
        # machine, would blur what "echo" means)
        tts_source, publication = await viewer.publish_audio("tts", rtc.TrackSource.SOURCE_UNKNOWN)
        await asyncio.wait_for(publication.wait_for_subscription(), JOIN_LIMIT_S)
        mic_loop = Loop(mic, user)
        mic_task = asyncio.create_task(mic_loop.run())
        sent = await media.play(
            tts_source, np.concatenate([media.silence(0.5), tts, media.silence(0.5)]), media.RATE
        )
        await viewer.room.local_participant.unpublish_track(publication.sid)
        after_from = time.monotonic()
        # no TTS track now: the microphone is spoken again (two whole plays of it)
        await asyncio.wait_for(mic_loop.wait_plays(mic_loop.played + 2), 60)
        after_to = time.monotonic()
    finally:
        if mic_task is not None:
            mic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mic_task
        await viewer.leave()
        await stack.delete_session(session["session_id"])

    # from 1 s in (the microphone's speech queued before the switch has played out by then)
    # to the TTS track's end as sent: the microphone spoken after the unpublish reaches the
    # viewer later than that, by the pipeline's latency
    end = sent.start + len(sent.pcm) / media.RATE
    during = heard_between(viewer, sent.start + MARGIN_S, end)
    tts_peak = media.speech_found_in(tts, during, media.RATE)
    mic_peak = media.speech_found_in(user, during, media.RATE)
    after = heard_between(viewer, after_from + 2 * MARGIN_S, after_to)
    print(f"\nduring TTS: tts peak {tts_peak:.2f}, mic peak {mic_peak:.2f}")
    assert tts_peak >= FOUND, "the avatar did not speak the TTS track"
    assert mic_peak < ABSENT, "the avatar echoed the microphone"
    assert after.size > media.RATE  # the avatar's audio kept flowing
    mic_after = media.speech_found_in(user, after, media.RATE)
    print(f"after the TTS track: mic peak {mic_after:.2f}")
    assert mic_after >= FOUND, "the microphone was not spoken once the TTS track was gone"
