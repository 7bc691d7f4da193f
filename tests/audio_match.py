"""Does an MP4 carry the input's audio, in time? Decode both and cross-correlate them.

A silent track, another clip, or a track shifted by a video frame (40 ms) all fail.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

RATE = 16_000  # both sides are compared at this rate, mono
MAX_SHIFT_S = 0.005  # AAC round-trips in place; a one-frame (40 ms) shift is far outside this
MIN_CORRELATION = 0.9  # normalised, at the best lag; speech through AAC at 96 kb/s is ~0.99
SEARCH_S = 0.25  # lags searched either way


def decode_mono(path: Path | str, rate: int = RATE) -> np.ndarray:
    """The first audio stream as mono float32 at `rate`, each frame placed at its timestamp.

    Placing by timestamp (not by concatenation) keeps a delayed or early track visibly so;
    samples before time 0 (an encoder's priming) are dropped.
    """
    pieces: list[tuple[int, np.ndarray]] = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            start = None if frame.pts is None else round(float(frame.pts * frame.time_base) * rate)
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1).astype(np.float32)
                pieces.append((start if start is not None else -1, samples))
                start = None
        for out in resampler.resample(None):
            pieces.append((-1, out.to_ndarray().reshape(-1).astype(np.float32)))
    return _place(pieces)


def _place(pieces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    cursor, placed = 0, []
    for start, samples in pieces:
        at = cursor if start < 0 else start
        placed.append((at, samples))
        cursor = at + samples.size
    end = max((at + s.size for at, s in placed), default=0)
    out = np.zeros(max(0, end), dtype=np.float32)
    for at, samples in placed:
        if at < 0:
            samples, at = samples[-at:], 0
        out[at : at + samples.size] = samples
    return out


def best_lag(reference: np.ndarray, candidate: np.ndarray, rate: int = RATE) -> tuple[int, float]:
    """(lag in samples, normalised correlation) maximising the match; lag > 0: candidate late."""
    n = min(reference.size, candidate.size)
    ref, cand = reference[:n].astype(np.float64), candidate[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = np.fft.rfft(cand, size) * np.conj(np.fft.rfft(ref, size))
    corr = np.fft.irfft(spectrum, size)
    span = int(SEARCH_S * rate)
    lags = np.concatenate([np.arange(0, span + 1), np.arange(-span, 0)])
    values = np.concatenate([corr[: span + 1], corr[-span:]])
    i = int(np.argmax(values))
    lag = int(lags[i])
    a = ref[max(0, -lag) : n - max(0, lag)]
    b = cand[max(0, lag) : n - max(0, -lag)]
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return lag, (float(np.dot(a, b)) / denom if denom > 0 else 0.0)


def assert_same_audio(mp4: Path | str, source: Path | str) -> None:
    """The MP4's audio is `source`'s, neither silent nor shifted."""
    reference = decode_mono(source)
    got = decode_mono(mp4)
    assert got.size >= reference.size - 0.05 * RATE, (got.size, reference.size)
    lag, corr = best_lag(reference, got)
    assert corr >= MIN_CORRELATION, f"audio does not match its input (correlation {corr:.3f})"
    assert abs(lag) <= MAX_SHIFT_S * RATE, f"audio shifted by {lag / RATE * 1000:.1f} ms"
