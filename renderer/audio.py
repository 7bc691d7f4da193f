"""Streaming audio: any PCM in, mono float at the render rate out, and mouth shapes from it.

The mouth of frame i is computed from the audio window that starts LEAD_S after the frame's own
slice starts and is one frame long. So a frame can be rendered once LOOKAHEAD_S of audio past
its own slice has arrived: that is the renderer's whole algorithmic latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

# Mouths move slightly before the sound they make; this lead is also the lookahead.
LEAD_S = 0.010
LOOKAHEAD_S = LEAD_S
# Absolute silence gate and the loudness span that maps to a fully open mouth.
SILENCE_DB = -52.0
OPEN_SPAN_DB = 22.0
# The loudness reference follows the speaker's recent peaks (a causal AGC).
REFERENCE_INIT_DB = -18.0
REFERENCE_DECAY_DB_PER_S = 4.0


def to_mono_float(pcm: np.ndarray, num_channels: int) -> np.ndarray:
    """Interleaved int16 or float PCM -> mono float32 in [-1, 1]."""
    data = np.asarray(pcm)
    if data.dtype == np.int16:
        samples = data.astype(np.float32) / 32768.0
    elif np.issubdtype(data.dtype, np.floating):
        samples = data.astype(np.float32, copy=False)
    else:
        raise TypeError(f"PCM must be int16 or float, got {data.dtype}")
    if num_channels > 1:
        frames = samples.size // num_channels
        samples = samples[: frames * num_channels].reshape(frames, num_channels).mean(axis=1)
    return np.ascontiguousarray(samples.reshape(-1), dtype=np.float32)


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """The exact inverse of to_mono_float for int16 input (scale 32768, round, clip)."""
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Chunked resampling to one output rate; a rate change mid-stream flushes and restarts."""

    def __init__(self, out_rate: int) -> None:
        self._out_rate = out_rate
        self._in_rate: int | None = None
        self._stream: soxr.ResampleStream | None = None

    def push(self, samples: np.ndarray, in_rate: int) -> np.ndarray:
        tail = np.zeros(0, dtype=np.float32)
        if in_rate != self._in_rate:
            tail = self.flush()
            self._in_rate = in_rate
            self._stream = (
                None
                if in_rate == self._out_rate
                else soxr.ResampleStream(in_rate, self._out_rate, 1, dtype="float32", quality="HQ")
            )
        if self._stream is None:
            out = samples
        else:
            out = self._stream.resample_chunk(samples, last=False)
        return np.concatenate([tail, out]) if tail.size else np.asarray(out, dtype=np.float32)

    def flush(self) -> np.ndarray:
        """Return the resampler's delayed tail and reset it (end of a speech segment)."""
        stream, self._stream, self._in_rate = self._stream, None, None
        if stream is None:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(stream.resample_chunk(np.zeros(0, np.float32), last=True), np.float32)

    def reset(self) -> None:
        self._stream, self._in_rate = None, None


@dataclass(frozen=True, slots=True)
class MouthShape:
    """openness 0 (closed as in the photo) .. 1 (wide open); width -1 rounded .. +1 spread."""

    openness: float = 0.0
    width: float = 0.0


REST = MouthShape()


@dataclass(frozen=True, slots=True)
class AudioFeatures:
    level_db: float  # speech-band loudness, dBFS
    nasal: float  # 0..1, energy trapped below ~400 Hz (m, n, b's voice bar)
    rounding: float  # 0..1, low second formant (u, o) vs high (i, e)


class FeatureExtractor:
    """Spectral features of one analysis window (Hann, rfft) at a fixed sample rate."""

    def __init__(self, sample_rate: int, window: int) -> None:
        self.sample_rate = sample_rate
        self.window = window
        self._n_fft = 1 << (window - 1).bit_length()
        self._hann = np.hanning(window).astype(np.float32)
        freqs = np.fft.rfftfreq(self._n_fft, 1.0 / sample_rate)

        def band(lo: float, hi: float) -> np.ndarray:
            return (freqs >= lo) & (freqs < min(hi, sample_rate / 2))

        self._speech = band(150, 4000)
        self._all = band(80, 5000)
        self._low = band(80, 400)  # nasal murmur / voice bar
        self._mid = band(400, 1000)  # first formant of open vowels
        self._high = band(2500, 5000)
        self._back = band(500, 1800)  # second formant of back/rounded vowels
        self._front = band(1800, 3500)  # second/third formants of front/spread vowels
        # Calibrates window power to the mean square of a full-scale signal.
        self._norm = float(np.sum(self._hann**2) * self._n_fft / 2)

    def __call__(self, window: np.ndarray) -> AudioFeatures:
        spectrum = np.abs(np.fft.rfft(window * self._hann, self._n_fft)) ** 2
        total = float(spectrum[self._all].sum()) + 1e-12

        def share_db(mask: np.ndarray) -> float:
            return float(10.0 * np.log10(float(spectrum[mask].sum()) / total + 1e-12))

        low, mid, high = share_db(self._low), share_db(self._mid), share_db(self._high)
        # Lips shut (m, b, p's voicing): nearly all energy in the murmur, no F1, no hiss.
        nasal = (
            np.clip((low + 3.0) / 2.0, 0.0, 1.0)
            * np.clip((-mid - 12.0) / 4.0, 0.0, 1.0)
            * np.clip((-high - 17.0) / 5.0, 0.0, 1.0)
        )
        front = float(spectrum[self._front].sum()) + 1e-12
        back = float(spectrum[self._back].sum()) + 1e-12
        frontness = 10.0 * np.log10(front / back)
        speech = float(spectrum[self._speech].sum()) / self._norm
        return AudioFeatures(
            level_db=float(10.0 * np.log10(speech + 1e-12)),
            nasal=float(nasal),
            rounding=float(np.clip((-frontness - 2.0) / 14.0, 0.0, 1.0)),
        )


class MouthTracker:
    """Features -> smoothed mouth shapes, one per frame; causal, so chunking cannot change it."""

    def __init__(self, fps: int) -> None:
        self._dt = 1.0 / fps
        self._reference_db = REFERENCE_INIT_DB
        self._open = 0.0
        self._width = 0.0
        # one-pole coefficients per frame: quick to open, a little slower to close
        self._attack = 0.75
        self._release = 0.6
        self._width_rate = 0.45

    def speech(self, features: AudioFeatures) -> MouthShape:
        level = features.level_db
        self._reference_db = max(level, self._reference_db - REFERENCE_DECAY_DB_PER_S * self._dt)
        voiced = level >= SILENCE_DB
        target = 0.0
        if voiced:
            floor = self._reference_db - OPEN_SPAN_DB
            target = float(np.clip((level - floor) / OPEN_SPAN_DB, 0.0, 1.0))
        width_target = 0.6 - 1.6 * features.rounding if voiced else 0.0
        shape = self._step(target, float(np.clip(width_target, -1.0, 1.0)))
        # Lips meet for m/b/p at once, whatever the smoothing says.
        return MouthShape(openness=shape.openness * (1.0 - features.nasal), width=shape.width)

    def silence(self) -> MouthShape:
        return self._step(0.0, 0.0)

    def interrupt(self) -> None:
        """Used by clear(): the caller ramps the old shape out; the tracker starts from rest."""
        self._open = 0.0
        self._width = 0.0

    def _step(self, target: float, width_target: float) -> MouthShape:
        rate = self._attack if target > self._open else self._release
        self._open += rate * (target - self._open)
        if self._open < 0.02:
            self._open = 0.0
        self._width += self._width_rate * (width_target - self._width)
        if abs(self._width) < 0.02:
            self._width = 0.0
        return MouthShape(openness=self._open, width=self._width)
