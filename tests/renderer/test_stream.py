"""The streaming contract: frames at fps, exact audio accounting, latency, clear, face swap."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from renderer import FaceAsset, RendererOptions, StreamRenderer
from renderer.audio import LOOKAHEAD_S
from tests.renderer.render_support import render_all


def _speech_at(rate: int, speech: tuple[np.ndarray, int]) -> np.ndarray:
    pcm, src = speech
    return pcm if src == rate else (soxr.resample(pcm, src, rate) * 1.0).astype(np.int16)


def test_streaming_equals_offline_whatever_the_chunking(
    face: FaceAsset, speech: tuple[np.ndarray, int], still_options: RendererOptions
) -> None:
    pcm, rate = speech
    pcm = pcm[: rate * 3]
    whole = render_all(face, pcm, rate, still_options)
    chunked = render_all(face, pcm, rate, still_options, chunk=317)
    assert len(whole) == len(chunked)
    worst = max(
        np.abs(a.image.astype(int) - b.image.astype(int)).max()
        for a, b in zip(whole, chunked, strict=True)
    )
    audio_a = np.concatenate([f.audio for f in whole if f.audio is not None]).astype(int)
    audio_b = np.concatenate([f.audio for f in chunked if f.audio is not None]).astype(int)
    # soxr's streaming output depends on chunk edges only by float rounding
    assert np.abs(audio_a - audio_b).max() <= 2
    assert worst <= 2, f"max pixel difference {worst}"


def test_audio_slices_add_up_to_the_input_sample_for_sample(
    face: FaceAsset, still_options: RendererOptions
) -> None:
    rate = still_options.sample_rate
    rng = np.random.default_rng(7)
    pcm = rng.integers(-20000, 20000, size=rate * 2 + 123, dtype=np.int16)
    frames = render_all(face, pcm, rate, still_options, chunk=1000)
    spf = still_options.samples_per_frame
    assert all(f.audio is not None and f.audio.size == spf for f in frames)
    out = np.concatenate([f.audio for f in frames if f.audio is not None])
    assert len(frames) == -(-pcm.size // spf)
    assert np.array_equal(out[: pcm.size], pcm)
    assert not out[pcm.size :].any(), "only the last frame is padded, with silence"


def test_resampled_input_is_accounted_for_exactly(
    face: FaceAsset, speech: tuple[np.ndarray, int], still_options: RendererOptions
) -> None:
    pcm, rate = speech  # 22050 Hz in, 24000 Hz out
    stereo = np.repeat(pcm[:, None], 2, axis=1).reshape(-1)
    renderer = StreamRenderer(face=face, options=still_options)
    for start in range(0, stereo.size, 2 * 1500):
        renderer.push_audio(stereo[start : start + 2 * 1500], sample_rate=rate, num_channels=2)
    renderer.flush()
    slices = []
    while (frame := renderer.pull()) is not None:
        assert frame.audio is not None
        slices.append(frame.audio)
    out = np.concatenate(slices).astype(np.float32) / 32768
    expected = soxr.resample(pcm.astype(np.float32) / 32768, rate, still_options.sample_rate)
    assert abs(out.size - -(-expected.size // 960) * 960) == 0
    n = expected.size
    assert np.abs(out[:n] - expected).max() < 2e-3
    assert np.abs(out[n:]).max() < 1e-3


def test_frames_are_paced_on_one_clock_and_segments_end_once(
    face: FaceAsset, still_options: RendererOptions
) -> None:
    rate = still_options.sample_rate
    renderer = StreamRenderer(face=face, options=still_options)
    tone = (np.sin(np.arange(rate // 2) * 2 * np.pi * 220 / rate) * 8000).astype(np.int16)
    frames = [renderer.next_frame() for _ in range(3)]  # idle before speech
    for _ in range(2):
        renderer.push_audio(tone, sample_rate=rate)
        renderer.flush()
    frames += [renderer.next_frame() for _ in range(30)]
    assert [f.index for f in frames] == list(range(33))
    assert [round(f.timestamp_s, 6) for f in frames] == [round(i / 25, 6) for i in range(33)]
    ends = [i for i, f in enumerate(frames) if f.segment_end]
    assert ends == [3 + 13 - 1, 3 + 26 - 1]  # 12.5 frames of tone -> 13, twice
    assert frames[2].audio is None and frames[3].audio is not None
    assert frames[-1].audio is None  # idle again after both segments


def test_idle_frames_flow_without_audio_and_move(face: FaceAsset) -> None:
    renderer = StreamRenderer(face=face, options=RendererOptions(seed=3))
    frames = [renderer.next_frame() for _ in range(150)]  # 6 s: at least one blink
    assert all(f.audio is None and f.mouth.openness == 0 for f in frames)
    diffs = [np.abs(f.image.astype(int) - face.image.astype(int)).mean() for f in frames]
    assert max(diffs) > 0.5, "idle motion (sway, breathing, blinks) is visible"
    steps = [
        np.abs(a.image.astype(int) - b.image.astype(int)).mean()
        for a, b in zip(frames, frames[1:], strict=False)
    ]
    assert max(steps) < 12, "idle motion is smooth, not jumpy"


def test_latency_is_the_documented_lookahead(
    face: FaceAsset, still_options: RendererOptions
) -> None:
    rate = still_options.sample_rate
    spf = still_options.samples_per_frame
    renderer = StreamRenderer(face=face, options=still_options)
    lookahead = round(renderer.lookahead_s * rate)
    assert renderer.lookahead_s == pytest.approx(LOOKAHEAD_S)
    onset = 5 * spf + spf // 2  # speech starts in the middle of frame 5
    signal = np.zeros(onset + 20 * spf, np.int16)
    t = np.arange(signal.size - onset)
    sawtooth = 2.0 * ((t * 150 / rate) % 1.0) - 1.0  # voice-like: harmonics up to the top
    signal[onset:] = (sawtooth * 9000).astype(np.int16)
    first_open_pushed = None
    frames = []
    for pushed in range(0, signal.size, 40):
        renderer.push_audio(signal[pushed : pushed + 40], sample_rate=rate)
        while (frame := renderer.pull()) is not None:
            frames.append(frame)
            if first_open_pushed is None and frame.mouth.openness > 0.1:
                first_open_pushed = pushed + 40
    assert first_open_pushed is not None
    first_open = next(f.index for f in frames if f.mouth.openness > 0.1)
    assert first_open == 5, "the frame whose slice holds the onset opens the mouth"
    # it came out as soon as its slice plus the lookahead had arrived, not later
    assert first_open_pushed - (6 * spf + lookahead) < 40
    waited_s = (first_open_pushed - onset) / rate
    assert waited_s <= (spf - spf // 2) / rate + renderer.lookahead_s + 40 / rate


def test_clear_closes_the_mouth_within_the_stated_latency(
    face: FaceAsset, speech: tuple[np.ndarray, int], still_options: RendererOptions
) -> None:
    rate = still_options.sample_rate
    pcm = _speech_at(rate, speech)
    renderer = StreamRenderer(face=face, options=still_options)
    renderer.push_audio(pcm, sample_rate=rate)
    opened = [renderer.next_frame() for _ in range(20)]
    assert max(f.mouth.openness for f in opened) > 0.5
    assert renderer.ready_frames() > 50
    renderer.clear()
    assert renderer.ready_frames() == 0 and renderer.queued_samples == 0
    latency_frames = round(renderer.clear_latency_s * still_options.fps)
    after = [renderer.next_frame() for _ in range(10)]
    assert all(f.audio is None for f in after), "no queued speech survives clear()"
    assert all(f.mouth.openness == 0 for f in after[latency_frames - 1 :])
    assert all(np.array_equal(f.image, face.image) for f in after[latency_frames - 1 :])


def test_face_swap_crossfades_monotonically_on_the_same_clock(
    face: FaceAsset, still_options: RendererOptions
) -> None:
    other = FaceAsset(image=255 - face.image, landmarks=face.landmarks, source_size=(1, 1))
    renderer = StreamRenderer(face=face, options=still_options)
    before = [renderer.next_frame() for _ in range(3)]
    renderer.set_face(other)
    during = [renderer.next_frame() for _ in range(12)]
    frames = before + during
    assert [f.index for f in frames] == list(range(15))
    assert all(f.image.shape == face.image.shape for f in frames)
    distance_to_new = [np.abs(f.image.astype(int) - other.image.astype(int)).mean() for f in frames]
    assert all(a > b for a, b in zip(distance_to_new[2:9], distance_to_new[3:10], strict=True)), (
        distance_to_new
    )
    fade_frames = round(still_options.crossfade_s * still_options.fps)
    assert distance_to_new[3 + fade_frames] == pytest.approx(0, abs=0.5)
    assert 3 < fade_frames + 3 < 15


def test_any_channel_count_and_dtype(face: FaceAsset, still_options: RendererOptions) -> None:
    renderer = StreamRenderer(face=face, options=still_options)
    stereo_float = np.zeros(2 * 16000, np.float32)
    renderer.push_audio(stereo_float, sample_rate=16000, num_channels=2)
    renderer.flush()
    frames = []
    while (frame := renderer.pull()) is not None:
        frames.append(frame)
    assert len(frames) == 25
    with pytest.raises(TypeError):
        renderer.push_audio(np.zeros(10, np.int32), sample_rate=16000)
