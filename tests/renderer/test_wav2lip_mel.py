"""Wav2Lip's mel features and per-frame windows, against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer.backends.wav2lip.mel import (
    MEL_STEP,
    frame_mel,
    mel_basis,
    mel_columns,
    mel_start,
    mel_window,
    melspectrogram,
    window_start,
)
from tests.renderer.wav2lip_support import (
    reference_chunks,
    reference_mel_basis,
    reference_melspectrogram,
    speech_16k,
)

pytest.importorskip("scipy", reason="the independent mel reference uses scipy.signal")


def test_mel_basis_matches_the_slaney_definition() -> None:
    ours, ref = mel_basis(), reference_mel_basis()
    assert ours.shape == (80, 401)
    assert np.abs(ours - ref).max() < 1e-7
    # every band is a proper triangle inside 55..7600 Hz
    freqs = np.arange(401) * 20.0
    assert (ours.max(axis=1) > 0).all()
    assert freqs[ours.any(axis=0)].min() > 55 and freqs[ours.any(axis=0)].max() < 7600


def test_whole_clip_mel_matches_the_reference(speech: tuple[np.ndarray, int]) -> None:
    wav = speech_16k(speech, 2.0)
    ours, ref = melspectrogram(wav), reference_melspectrogram(wav)
    assert ours.shape == ref.shape == (80, 1 + wav.size // 200)
    assert np.abs(ours - ref).max() < 1e-4
    assert ours.min() >= -4 and ours.max() <= 4 and ours.std() > 0.5  # speech, not silence


def test_silence_is_minus_four_and_a_tone_lights_its_band() -> None:
    assert (melspectrogram(np.zeros(4000, np.float32)) == -4).all()
    t = np.arange(16000) / 16000
    mel = melspectrogram(0.5 * np.sin(2 * np.pi * 1000 * t))
    peak_band = int(np.argmax(mel[:, 20]))
    centres = (mel_basis() * np.arange(401)[None] * 20.0).sum(1) / mel_basis().sum(1)
    assert abs(centres[peak_band] - 1000) < 60


def test_frame_windows_follow_int_i_times_80_over_fps() -> None:
    assert [mel_start(i, 25) for i in range(6)] == [0, 3, 6, 9, 12, 16]
    assert mel_start(7, 30) == int(7 * 80 / 30)
    # near the end the window is moved back to end at the last column, like Wav2Lip
    assert window_start(40, 25, columns=130) == 114
    assert window_start(40, 25, columns=200) == 128


@settings(max_examples=40, deadline=None)
@given(
    length=st.integers(min_value=150, max_value=16000 * 3),
    fps=st.sampled_from([25, 30, 50]),
    seed=st.integers(0, 2**16),
)
def test_each_frames_window_equals_the_reference_chunk(length: int, fps: int, seed: int) -> None:
    """frame_mel from only the samples around a frame == Wav2Lip's chunk of the whole clip."""
    rng = np.random.default_rng(seed)
    wav = (rng.standard_normal(length) * rng.uniform(0.01, 0.5)).astype(np.float32)
    frames = -(-length * fps // 16000)
    reference = reference_chunks(reference_melspectrogram(wav), frames, fps)
    whole = melspectrogram(wav)
    columns = mel_columns(length)
    for i in range(frames):
        start = window_start(i, fps, columns)
        lo = max(0, start * 200 - 401)
        hi = min(length, (start + MEL_STEP - 1) * 200 + 400)
        end = length if hi == length else None
        window = frame_mel(wav[lo:hi], origin=lo, frame=i, fps=fps, end=end)
        assert window.shape == (80, 16)
        assert np.abs(window - reference[i]).max() < 1e-4, f"frame {i}"
        assert np.array_equal(window, mel_window(whole, i, fps))


def test_a_window_that_misses_its_samples_is_refused() -> None:
    wav = np.zeros(8000, np.float32)
    with pytest.raises(ValueError, match="does not cover"):
        frame_mel(wav[1000:2000], origin=1000, frame=5, fps=25, end=None)
