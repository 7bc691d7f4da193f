"""LipSyncVideoGenerator driven with real rtc.AudioFrames, as AvatarRunner drives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from agent.video_generator import AvatarAudioFrame, AvatarVideoFrame, LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.agent.audio_support import audio_frames
from tests.fake_clock import FakeClock

Item = rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd


async def take_video(it: AsyncIterator[Item], count: int) -> list[Item]:
    """Items up to and including the `count`-th video frame (and what trails it)."""
    items: list[Item] = []
    seen = 0
    while seen < count:
        item = await anext(it)
        items.append(item)
        seen += isinstance(item, rtc.VideoFrame)
    return items


async def take_until_segment_ends(
    it: AsyncIterator[Item], segments: int, *, limit: int = 2000
) -> list[Item]:
    """Items up to the `segments`-th AudioSegmentEnd; fails rather than waits forever."""
    items: list[Item] = []
    while sum(isinstance(i, AudioSegmentEnd) for i in items) < segments:
        assert len(items) < limit, f"no AudioSegmentEnd in {limit} items"
        items.append(await anext(it))
    return items


async def push(gen: LipSyncVideoGenerator, pcm: np.ndarray, rate: int, *, end: bool) -> None:
    for frame in audio_frames(pcm, rate):
        await gen.push_audio(frame)
    if end:
        await gen.push_audio(AudioSegmentEnd())


def videos(items: list[Any]) -> list[AvatarVideoFrame]:
    return [i for i in items if isinstance(i, AvatarVideoFrame)]


def test_is_a_livekit_video_generator(generator: LipSyncVideoGenerator) -> None:
    assert isinstance(generator, VideoGenerator)


async def test_speech_frames_carry_exact_audio_and_segments_end_once(
    generator: LipSyncVideoGenerator, speech24k: np.ndarray, options: RendererOptions
) -> None:
    rate, spf = options.sample_rate, options.samples_per_frame
    first, second = speech24k[: rate * 2 + 77], speech24k[rate * 3 : rate * 4]
    await push(generator, first, rate, end=True)
    await push(generator, second, rate, end=True)
    items = await take_until_segment_ends(generator.__aiter__(), 2)

    frames = videos(items)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.timestamp_s for f in frames] == [i / options.fps for i in range(len(frames))]
    assert all(f.width == options.size and f.height == options.size for f in frames)

    # every speech video frame is followed by exactly its audio slice
    segments: list[list[np.ndarray]] = [[]]
    for prev, item in zip(items, items[1:], strict=False):
        if isinstance(item, AvatarAudioFrame):
            assert isinstance(prev, AvatarVideoFrame) and prev.speech
            assert item.index == prev.index and item.samples_per_channel == spf
            segments[-1].append(np.frombuffer(item.data, np.int16))
        elif isinstance(item, AudioSegmentEnd):
            assert isinstance(prev, AvatarAudioFrame), "AudioSegmentEnd follows the last slice"
            segments.append([])
    assert segments[-1] == []
    for pcm, slices in zip((first, second), segments[:2], strict=True):
        out = np.concatenate(slices)
        assert out.size == -(-pcm.size // spf) * spf
        assert np.array_equal(out[: pcm.size], pcm)
        assert not out[pcm.size :].any()
    assert generator.stats.segments == 2


async def test_idle_frames_flow_without_input_on_the_frame_clock(
    face: FaceAsset, clock: FakeClock
) -> None:
    options = RendererOptions(size=128, idle_motion=True)
    gen = LipSyncVideoGenerator(face=face, options=options, clock=clock)
    it = gen.__aiter__()
    times = []
    try:
        items = []
        for _ in range(60):
            items += await take_video(it, 1)
            times.append(clock.now())
    finally:
        await gen.aclose()
    # never ahead of the frame clock (idle frames must not pile up in the sync queue)
    assert np.allclose(np.diff(times), 1 / options.fps)
    assert all(isinstance(i, AvatarVideoFrame) and not i.speech for i in items)
    assert [f.index for f in videos(items)] == list(range(60))
    # blinking and breathing: the idle picture is alive, not a frozen copy
    first = videos(items)[0].image
    assert any(not np.array_equal(first, f.image) for f in videos(items))


async def test_clear_buffer_stops_speech_within_the_stated_latency(
    generator: LipSyncVideoGenerator, speech24k: np.ndarray, options: RendererOptions
) -> None:
    rate = options.sample_rate
    await push(generator, speech24k[: rate * 3], rate, end=True)
    it = generator.__aiter__()
    before = videos(await take_video(it, 25))
    assert all(f.speech for f in before)
    assert max(f.mouth_openness for f in before) > 0.2

    await generator.clear_buffer()
    after_items = await take_video(it, 20)
    after = videos(after_items)
    assert not any(isinstance(i, rtc.AudioFrame | AudioSegmentEnd) for i in after_items)
    assert not any(f.speech for f in after)
    ramp = round(generator.clear_latency_s * options.fps)
    assert all(f.mouth_openness == 0.0 for f in after[ramp:])
    assert [f.index for f in before + after] == list(range(45))

    # the next segment plays normally: nothing is wedged by the interruption
    await push(generator, speech24k[rate : rate * 2], rate, end=True)
    items = await take_until_segment_ends(it, 1)
    assert sum(isinstance(i, AvatarAudioFrame) for i in items) == options.fps
    assert generator.stats.interruptions == 1


async def test_speech_runs_ahead_of_the_clock_and_idle_waits_for_it(
    generator: LipSyncVideoGenerator,
    speech24k: np.ndarray,
    options: RendererOptions,
    clock: FakeClock,
) -> None:
    rate = options.sample_rate
    await push(generator, speech24k[:rate], rate, end=True)
    it = generator.__aiter__()
    start = clock.now()
    speech = await take_until_segment_ends(it, 1)
    assert clock.now() == start, "speech frames are yielded as fast as they are taken"
    await take_video(it, 1)
    # the first idle frame waits for its place after the 25 speech frames
    assert clock.now() - start == pytest.approx(len(videos(speech)) / options.fps)


async def test_an_open_segment_waits_briefly_for_late_audio_then_idles(
    face: FaceAsset, speech24k: np.ndarray, options: RendererOptions, clock: FakeClock
) -> None:
    gen = LipSyncVideoGenerator(face=face, options=options, speech_wait_s=0.0, clock=clock)
    try:
        rate = options.sample_rate
        await push(gen, speech24k[: rate // 2], rate, end=False)  # the segment stays open
        items = await take_video(gen.__aiter__(), 20)
    finally:
        await gen.aclose()
    frames = videos(items)
    speech = [f.speech for f in frames]
    # 0.5 s of audio minus the lookahead gives 12 frames; then idle frames, no stall
    assert speech[:12] == [True] * 12 and not any(speech[12:])
    assert gen.stats.starved_frames == 8


async def test_face_swap_mid_speech_has_no_gap_and_no_duplicate(
    generator: LipSyncVideoGenerator,
    speech24k: np.ndarray,
    options: RendererOptions,
    mirrored_face_bytes: bytes,
) -> None:
    rate = options.sample_rate
    await push(generator, speech24k[: rate * 2], rate, end=True)
    it = generator.__aiter__()
    items = await take_video(it, 10)
    swap = asyncio.create_task(generator.set_face(mirrored_face_bytes))
    while not swap.done():
        items += await take_video(it, 1)
    await swap
    if not any(isinstance(i, AudioSegmentEnd) for i in items):  # a slow swap may outlast speech
        items += await take_until_segment_ends(it, 1)
    items += await take_video(it, 15)  # idle after the crossfade: the new photo at rest
    frames = videos(items)
    assert [f.index for f in frames] == list(range(len(frames)))
    audio = [i for i in items if isinstance(i, AvatarAudioFrame)]
    assert len(audio) == options.fps * 2
    new_face = FaceAsset.prepare(mirrored_face_bytes, options=options)
    last = frames[-1].image
    assert np.array_equal(last, new_face.image)
    assert not np.array_equal(frames[0].image, new_face.image)


async def test_frames_keep_coming_while_a_new_face_is_prepared(
    generator: LipSyncVideoGenerator, options: RendererOptions, mirrored_face_bytes: bytes
) -> None:
    """The backend's per-face work must not hold the render thread: with it parked on an
    event, the generator still yields frames, and the swap lands once it is let go."""
    backend = generator._renderer._backend  # the real backend, its prepare() parked
    entered, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    real_prepare = backend.prepare

    def parked_prepare(face: FaceAsset) -> Any:
        loop.call_soon_threadsafe(entered.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=120)
        return real_prepare(face)

    backend.prepare = parked_prepare  # type: ignore[method-assign]
    it = generator.__aiter__()
    await take_video(it, 1)
    swap = asyncio.create_task(generator.set_face(mirrored_face_bytes))
    await asyncio.wait_for(entered.wait(), timeout=120)
    # a hang guard only: with prepare() on the render thread no frame would ever come
    during = videos(await asyncio.wait_for(take_video(it, 10), timeout=120))
    assert len(during) == 10 and not swap.done()
    release.set()
    await asyncio.wait_for(swap, timeout=120)
    frames = videos(await take_video(it, 15))  # past the crossfade: the new photo at rest
    new_face = FaceAsset.prepare(mirrored_face_bytes, options=options)
    last = frames[-1].image
    assert np.array_equal(last, new_face.image)


async def test_audio_taken_late_inside_a_segment_counts_as_an_underrun(
    generator: LipSyncVideoGenerator,
    speech24k: np.ndarray,
    options: RendererOptions,
    clock: FakeClock,
) -> None:
    """The consumer (AvatarRunner) takes each frame's audio when it has room for it; audio
    that leaves later than the audio before it has played out left the listener in silence."""
    rate, interval = options.sample_rate, 1.0 / options.fps
    await push(generator, speech24k[:rate], rate, end=True)
    await push(generator, speech24k[:rate], rate, end=True)
    it = generator.__aiter__()

    async def next_audio() -> AvatarAudioFrame:
        while not isinstance(item := await anext(it), AvatarAudioFrame):
            pass
        return item

    await next_audio()  # 40 ms of audio out at t=0
    clock.advance(0.5 * interval)  # taken while the first still plays: no gap
    await next_audio()
    assert generator.stats.audio_underruns == 0
    clock.advance(2.5 * interval)  # the two ran out at 2 intervals; this one leaves at 3
    await next_audio()
    assert generator.stats.audio_underruns == 1
    assert generator.stats.audio_underrun_ms == pytest.approx(1000 * interval)
    await take_until_segment_ends(it, 1)
    clock.advance(10.0)  # the silence between two segments is no underrun
    await next_audio()
    assert generator.stats.audio_underruns == 1


async def test_frames_leave_as_i420_without_a_copy(generator: LipSyncVideoGenerator) -> None:
    """The encoder's format is made on the render thread, and rtc gets the array itself."""
    it = generator.__aiter__()
    frame = videos(await take_video(it, 1))[0]
    assert frame.type == rtc.VideoBufferType.I420
    height, width = frame.image.shape[:2]
    assert isinstance(frame.data, memoryview) and frame.data.nbytes == height * width * 3 // 2
    back = np.frombuffer(frame.convert(rtc.VideoBufferType.RGB24).data, np.uint8)
    error = np.abs(back.reshape(frame.image.shape).astype(int) - frame.image.astype(int))
    assert float(error.mean()) < 3.0  # the same picture, to chroma subsampling


@pytest.mark.parametrize("found_by", ["a frame", "a clear"])
async def test_audio_the_renderer_rejects_ends_the_session_as_a_failure(
    face: FaceAsset, options: RendererOptions, clock: FakeClock, found_by: str
) -> None:
    """A chunk waits in the inbox until the render thread takes it: whoever finds it bad
    (the next frame, or a clear behind it) ends the session through the failure listener,
    and nothing is raised into the caller."""
    gen = LipSyncVideoGenerator(face=face, options=options, clock=clock)
    heard: list[BaseException] = []
    gen.on_failure(heard.append)
    it = gen.__aiter__()
    await take_video(it, 1)
    await gen.push_audio(rtc.AudioFrame(bytes(320), 0, 1, 160))  # a sample rate of 0
    assert heard == []  # not taken yet: pushing costs no hop to the render thread
    if found_by == "a clear":
        await gen.clear_buffer()
    else:
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(take_video(it, 5), 30)
    assert len(heard) == 1 and isinstance(heard[0], ValueError)
    assert gen.failure is heard[0]
    await gen.aclose()


async def test_a_render_error_stops_the_stream_and_is_reported(
    face: FaceAsset, options: RendererOptions, clock: FakeClock
) -> None:
    """A renderer that raises mid-stream: the iterator ends (AvatarRunner stops forwarding)
    and the failure listener hears it once; nothing is raised into livekit-agents' task."""
    gen = LipSyncVideoGenerator(face=face, options=options, clock=clock)
    heard: list[BaseException] = []
    gen.on_failure(heard.append)
    it = gen.__aiter__()
    await take_video(it, 3)
    boom = RuntimeError("renderer exploded")

    def exploding_step(allow_idle: bool) -> Any:
        raise boom

    gen._step = exploding_step  # type: ignore[method-assign]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(it), 30)
    assert heard == [boom] and gen.failure is boom
    late: list[BaseException] = []
    gen.on_failure(late.append)  # a listener added after the failure still hears it
    assert late == [boom]
    await gen.push_audio(AudioSegmentEnd())  # closed: ignored, no error
    await gen.aclose()


async def test_speech_start_is_timed_from_rest_only(
    generator: LipSyncVideoGenerator,
    speech24k: np.ndarray,
    options: RendererOptions,
    clock: FakeClock,
) -> None:
    """From a segment's first audio (the avatar at rest) to its first speech frame out: the
    agent's share of a reply's latency. A segment queued behind another is not timed: its
    wait is the first one's speech, not latency."""
    rate = options.sample_rate
    it = generator.__aiter__()
    await take_video(it, 3)  # at rest
    await push(generator, speech24k[:rate], rate, end=True)
    await clock.advance(0.07)
    await take_video(it, 3)  # speaking
    await push(generator, speech24k[rate : 2 * rate], rate, end=True)  # queued behind it
    await take_until_segment_ends(it, 2)
    assert generator.stats.speech_start_ms == [pytest.approx(70.0)]

    await take_video(it, 5)  # at rest again
    await push(generator, speech24k[:rate], rate, end=True)
    await clock.advance(0.03)
    await take_until_segment_ends(it, 1)
    assert generator.stats.speech_start_ms == [pytest.approx(70.0), pytest.approx(30.0)]
    assert generator.stats.speech_start_p50_ms == pytest.approx(50.0)
