"""Wav2Lip's mel features, exactly: whole-clip (reference) and per frame (streaming).

The public Wav2Lip contract, from 16 kHz mono audio:
- pre-emphasis y[n] = x[n] - 0.97 x[n-1] (x[-1] = 0 at the start of the clip);
- STFT with n_fft 800, hop 200, a periodic Hann window of 800, centred frames (the signal is
  reflect-padded by 400 samples at both ends), magnitudes;
- 80 Slaney mel bands from 55 to 7600 Hz (area-normalised triangles);
- 20 log10(max(1e-5, m)) - 20 dB, mapped from [-100, 0] dB to [-4, 4] and clipped;
- video frame i (at `fps`) takes the 16 columns starting at int(i * 80 / fps); near the end of a
  clip the window is moved back so it ends at the last column (as Wav2Lip's inference does).

Column j of a clip is centred on sample 200 j, so frame i's window needs audio up to sample
200 * int(i * 80 / fps) + 3400: 0.2125 s from the frame's start at most.

A "clip" here is one speech segment of the stream (everything between two flush() calls).
`frame_mel` computes one frame's window from the samples around it alone, and gives the same
numbers as slicing `melspectrogram` of the whole segment.
"""

from __future__ import annotations

import functools

import numpy as np

MEL_RATE = 16000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS = 4.0
MEL_STEP = 16  # columns per video frame's window
MEL_COLUMNS_PER_S = MEL_RATE / HOP  # 80
HALF = N_FFT // 2
# Samples a frame's window may need past the column under the frame's start (16 kHz).
WINDOW_REACH = (MEL_STEP - 1) * HOP + HALF  # 3400
SILENCE = -MAX_ABS  # the value every band takes on digital silence


def mel_start(frame: int, fps: int) -> int:
    """First mel column of video frame `frame` (the contract's int(i * 80 / fps))."""
    return int(frame * MEL_COLUMNS_PER_S / fps)


def mel_columns(samples: int) -> int:
    """Columns of a centred STFT over `samples` 16 kHz samples."""
    return 1 + samples // HOP


def window_start(frame: int, fps: int, columns: int | None) -> int:
    """Frame's first column, moved back near a clip's end when its length is known."""
    start = mel_start(frame, fps)
    if columns is not None and start + MEL_STEP > columns:
        start = max(columns - MEL_STEP, 0)
    return start


@functools.cache
def mel_basis() -> np.ndarray:
    """(80, 401) Slaney-scale, area-normalised triangular filters (librosa's default)."""
    freqs = np.linspace(0.0, MEL_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    basis: np.ndarray = weights.astype(np.float32)
    basis.flags.writeable = False
    return basis


@functools.cache
def _hann() -> np.ndarray:
    n = np.arange(N_FFT)
    window: np.ndarray = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_FFT)).astype(np.float64)
    window.flags.writeable = False
    return window


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, 1e-10) / 1000.0) / logstep
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, 1000.0 * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def _normalise(magnitudes: np.ndarray) -> np.ndarray:
    """(401, T) STFT magnitudes -> (80, T) normalised log-mel."""
    mel = mel_basis().astype(np.float64) @ magnitudes
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20.0 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    scaled = (2 * MAX_ABS) * ((db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS
    out: np.ndarray = np.clip(scaled, -MAX_ABS, MAX_ABS).astype(np.float32)
    return out


def _emphasise(x: np.ndarray, previous: float = 0.0) -> np.ndarray:
    out = np.empty(x.size, np.float64)
    if x.size:
        out[0] = x[0] - PREEMPHASIS * previous
        out[1:] = x[1:] - PREEMPHASIS * x[:-1]
    return out


def _reflect(positions: np.ndarray, length: int) -> np.ndarray:
    """numpy's 'reflect' padding as an index map (edge sample not repeated), any distance."""
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    out: np.ndarray = np.where(folded >= length, period - folded, folded)
    return out


def _columns(
    emphasised: np.ndarray, origin: int, first: int, count: int, end: int | None
) -> np.ndarray:
    """STFT magnitudes of columns first..first+count-1 of a clip.

    `emphasised` holds pre-emphasised clip samples from clip position `origin`; `end` is the
    clip's length when the window may reach it (reflect padding there), else None.
    """
    offsets = np.arange(N_FFT) - HALF
    positions = (np.arange(first, first + count) * HOP)[:, None] + offsets[None, :]
    positions = _reflect(positions, end) if end is not None else np.abs(positions)
    # The start of the clip reflects too (np.abs does that for positions > -length).
    index = positions - origin
    if index.min() < 0 or index.max() >= emphasised.size:
        raise ValueError("the audio window does not cover this frame's mel columns")
    frames = emphasised[index] * _hann()[None, :]
    return np.abs(np.fft.rfft(frames, axis=1)).T


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(80, T) normalised log-mel of a whole 16 kHz clip (T = 1 + len // 200)."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    if wav.size == 0:
        return np.zeros((N_MELS, 0), np.float32)
    count = mel_columns(wav.size)
    return _normalise(_columns(_emphasise(wav), 0, 0, count, wav.size))


def mel_window(mel: np.ndarray, frame: int, fps: int) -> np.ndarray:
    """Frame's (80, 16) window of a whole clip's mel, padded with silence if the clip is short."""
    columns = mel.shape[1]
    start = window_start(frame, fps, columns)
    window = mel[:, start : start + MEL_STEP]
    if window.shape[1] < MEL_STEP:
        pad = np.full((N_MELS, MEL_STEP - window.shape[1]), SILENCE, np.float32)
        window = np.concatenate([window, pad], axis=1)
    return np.ascontiguousarray(window, dtype=np.float32)


def frame_mel(
    samples: np.ndarray, *, origin: int, frame: int, fps: int, end: int | None
) -> np.ndarray:
    """One frame's (80, 16) window from the 16 kHz samples around it.

    `samples` are clip samples from clip position `origin` on (0 = the clip's first sample);
    they must cover the window's reach (see WINDOW_REACH), plus one sample before it for the
    pre-emphasis unless the window starts at the clip's start. `end` is the clip's length if
    the clip has ended within `samples`, else None.
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    columns = mel_columns(end) if end is not None else None
    start = window_start(frame, fps, columns)
    count = MEL_STEP if columns is None else min(MEL_STEP, columns - start)
    if origin == 0:
        emphasised, first_position = _emphasise(samples), 0
    else:  # the first sample only serves as x[n-1] for the second
        emphasised, first_position = _emphasise(samples[1:], samples[0]), origin + 1
    if end is not None and end - origin < samples.size:
        emphasised = emphasised[: end - first_position]
    mel = _normalise(_columns(emphasised, first_position, start, count, end))
    if count < MEL_STEP:
        mel = np.concatenate([mel, np.full((N_MELS, MEL_STEP - count), SILENCE, np.float32)], 1)
    return mel
