"""AvatarRunner + AVSynchronizer with real AudioSource/VideoSource: what a subscriber receives.

The published tracks are read back with real rtc.AudioStream / rtc.VideoStream (local tracks
work without a server). Audio is tone bursts with silence between them, so both streams have
sharp, known onsets: the audio onset is where the sound starts, the video onset is the first
frame whose mouth differs from the photo at rest. This runs in real time (the AudioSource
plays out at 1x), 60 s of speech.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import QueueAudioOutput

from agent.runner import create_avatar_runner
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.agent.audio_support import audio_frames, tone_bursts
from tests.agent.fakes import FakeRoom

SPEECH_S = float(os.environ.get("ATLAS_TEST_SYNC_SECONDS", "60"))
ON_S, OFF_S = 0.4, 0.6


STALL_S = 0.25  # a gap between frames arriving this long means the machine stalled


def stalls(times: list[float]) -> list[float]:
    """When each stall ended: arrivals that came STALL_S or more after the one before."""
    return [t for prev, t in zip(times, times[1:], strict=False) if t - prev >= STALL_S]


def longest_stall_free(onset_times: np.ndarray, stall_ends: list[float]) -> np.ndarray:
    """The indices of the longest run of onsets with no stall between them (at least 20, or
    all of them: drift is judged over most of the speech either way)."""
    cuts = sorted(stall_ends)
    group = np.searchsorted(cuts, onset_times)  # onsets between the same two stalls
    best = max(set(group.tolist()), key=lambda g: int((group == g).sum()))
    run = np.flatnonzero(group == best)
    return run if run.size >= 20 else np.arange(onset_times.size)


def onsets(times: list[float], active: list[bool], *, min_gap_s: float) -> list[float]:
    """Times where `active` turns on after at least `min_gap_s` of inactivity."""
    out: list[float] = []
    last_active = -1e9
    for t, on in zip(times, active, strict=True):
        if on:
            if t - last_active >= min_gap_s:
                out.append(t)
            last_active = t
    return out


@pytest.mark.slow
async def test_sixty_seconds_of_speech_stay_paired_within_one_frame(
    face: FaceAsset, options: RendererOptions
) -> None:
    room = FakeRoom()
    gen = LipSyncVideoGenerator(face=face, options=options)
    width, height = gen.video_size
    audio_out = QueueAudioOutput(sample_rate=options.sample_rate)
    runner = create_avatar_runner(
        room,  # type: ignore[arg-type]
        audio_recv=audio_out,
        generator=gen,
    )
    await runner.start()
    # tracks are published with the first (idle) frame, before any speech
    published = asyncio.Event()
    room.on("local_track_published", lambda *_: published.set())
    while len(room.local_participant.published) < 2:
        published.clear()
        await published.wait()
    kinds = {type(p.track) for p in room.local_participant.published}
    assert kinds == {rtc.LocalAudioTrack, rtc.LocalVideoTrack}
    audio_track = next(
        p.track
        for p in room.local_participant.published
        if isinstance(p.track, rtc.LocalAudioTrack)
    )
    video_track = next(
        p.track
        for p in room.local_participant.published
        if isinstance(p.track, rtc.LocalVideoTrack)
    )
    loop = asyncio.get_running_loop()
    audio_times: list[float] = []
    audio_on: list[bool] = []
    video_times: list[float] = []
    video_on: list[bool] = []
    # the mouth's box (lip corners, upper lip top, chin side of the lower lip), with a margin
    lips = face.landmarks[[61, 291, 0, 17]]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + 3
    rest: list[np.ndarray] = []  # the first frame received: idle, mouth at rest

    async def read_audio() -> None:
        stream = rtc.AudioStream.from_track(
            track=audio_track, sample_rate=options.sample_rate, num_channels=1
        )
        try:
            async for event in stream:
                pcm = np.frombuffer(event.frame.data, np.int16).astype(np.float32)
                audio_times.append(loop.time())
                audio_on.append(float(np.sqrt(np.mean(pcm**2))) > 500)
        finally:
            await stream.aclose()

    async def read_video() -> None:
        stream = rtc.VideoStream(video_track, format=rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                img = np.frombuffer(event.frame.data, np.uint8).reshape(height, width, 3)
                mouth = img[y0:y1, x0:x1].astype(np.int16)
                if not rest:
                    rest.append(mouth)
                video_times.append(loop.time())
                video_on.append(float(np.abs(mouth - rest[0]).mean()) > 4.0)
        finally:
            await stream.aclose()

    readers = [asyncio.create_task(read_audio()), asyncio.create_task(read_video())]
    try:
        await asyncio.sleep(0.5)  # idle first
        pcm = tone_bursts(options.sample_rate, seconds=SPEECH_S, on_s=ON_S, off_s=OFF_S)
        seg = int((ON_S + OFF_S) * options.sample_rate)
        # one segment per burst, pushed at TTS speed; like AgentSession, the next segment
        # starts once the previous one has played out (AvatarRunner's playback_finished)
        for start in range(0, pcm.size, seg):
            for frame in audio_frames(pcm[start : start + seg], options.sample_rate):
                await audio_out.capture_frame(frame)
            audio_out.flush()
            await audio_out.wait_for_playout()
        await asyncio.sleep(0.5)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await runner.aclose()
        await gen.aclose()

    bursts = round(SPEECH_S / (ON_S + OFF_S))
    a = onsets(audio_times, audio_on, min_gap_s=0.3)
    v = onsets(video_times, video_on, min_gap_s=0.3)
    # A stall of the machine can split a burst in two on arrival (in both streams alike), so
    # each audio onset is paired with the nearest video onset rather than by position.
    assert len(a) >= bursts and len(v) >= bursts, (len(a), len(v))
    offsets = np.array([min(v, key=lambda t: abs(t - at)) - at for at in a])
    frame_s = 1 / options.fps
    print(
        f"A/V offsets: median {np.median(offsets) * 1000:.1f} ms, "
        f"min {offsets.min() * 1000:.1f}, max {offsets.max() * 1000:.1f}"
    )
    # Offsets are read on arrival, so a busy machine can make a single frame late: judge the
    # pairing by the median, which one late frame cannot move, and ask 90% of the onsets (not
    # all) to be within the frame. A real pairing error shifts every onset, and fails both.
    assert abs(float(np.median(offsets))) <= frame_s + 0.010, offsets  # + the 10 ms audio chunk
    within = np.abs(offsets) <= frame_s + 0.010
    assert within.mean() >= 0.9, offsets
    # and no drift: the last bursts are as aligned as the first ones (medians of ten). A stall
    # of the machine (CI saw one of 630 ms) makes the synchroniser catch up and can move the
    # pairing by a frame or two in one step, inside the band checked above: that is not drift,
    # so drift is read over the longest stretch of onsets with no stall in it.
    stretch = longest_stall_free(np.array(a), stalls(audio_times) + stalls(video_times))
    drift = np.median(offsets[stretch][-10:]) - np.median(offsets[stretch][:10])
    assert abs(drift) <= frame_s + 0.005, (drift, offsets, stretch)
    assert gen.stats.segments == bursts
