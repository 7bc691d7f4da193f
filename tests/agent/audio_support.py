"""Test audio for the worker's tests: real rtc.AudioFrames and tone bursts with known onsets."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from livekit import rtc


def audio_frames(pcm: np.ndarray, rate: int, chunk_ms: int = 10) -> Iterator[rtc.AudioFrame]:
    """Real rtc.AudioFrames of `chunk_ms` each (the last one shorter)."""
    step = rate * chunk_ms // 1000
    for start in range(0, pcm.size, step):
        part = np.ascontiguousarray(pcm[start : start + step])
        yield rtc.AudioFrame(part.tobytes(), rate, 1, part.size)


def tone_bursts(
    rate: int, *, seconds: float, on_s: float, off_s: float, freq: float = 220.0
) -> np.ndarray:
    """Voiced-like bursts (a harmonic tone) separated by silence: sharp, known onsets."""
    t = np.arange(int(rate * seconds)) / rate
    voiced = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 8))
    gate = (t % (on_s + off_s)) < on_s
    return (voiced * gate * 7000).astype(np.int16)
