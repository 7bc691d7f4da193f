"""Lip-sync measurements on rendered frames (used by tests and benchmarks).

Each rendered frame goes back through the face landmarker: the inner-lip gap and the mouth
width, relative to the mouth width of the photo, are what a viewer sees. Comparing them with the
audio gives the A/V offset (lag of the cross-correlation peak) and its strength (r).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderer.landmarks import (
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    FaceLandmarker,
)


@dataclass(frozen=True, slots=True)
class MouthMeasure:
    gap: float  # inner-lip gap / reference mouth width
    width: float  # corner-to-corner width / reference mouth width
    jaw_open: float  # MediaPipe's jawOpen blendshape


def measure_mouths(
    frames: list[np.ndarray], landmarker: FaceLandmarker, *, reference_width: float
) -> list[MouthMeasure | None]:
    out: list[MouthMeasure | None] = []
    for image in frames:
        faces = landmarker.detect(image)
        if not faces:
            out.append(None)
            continue
        face = max(faces, key=lambda f: f.area)
        p = face.points
        out.append(
            MouthMeasure(
                gap=float(np.linalg.norm(p[INNER_LOWER_MID] - p[INNER_UPPER_MID]))
                / reference_width,
                width=float(np.linalg.norm(p[MOUTH_RIGHT] - p[MOUTH_LEFT])) / reference_width,
                jaw_open=face.blendshapes.get("jawOpen", 0.0),
            )
        )
    return out


def frame_envelope(audio: np.ndarray, samples_per_frame: int) -> np.ndarray:
    """RMS amplitude of each frame's slice (the speech envelope at frame rate)."""
    n = len(audio) // samples_per_frame
    frames = audio[: n * samples_per_frame].astype(np.float64).reshape(n, samples_per_frame)
    return np.asarray(np.sqrt(np.mean(frames**2, axis=1)), dtype=np.float64)


def best_lag(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (in samples of b relative to a) with the highest Pearson r, and that r.

    A positive lag means b happens after a.
    """
    best = (0, -2.0)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            x, y = a[: len(a) - lag], b[lag : len(a)]
        else:
            x, y = a[-lag:], b[: len(b) + lag]
        n = min(len(x), len(y))
        if n < 3:
            continue
        r = float(np.corrcoef(x[:n], y[:n])[0, 1])
        if r > best[1]:
            best = (lag, r)
    return best


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over the pixels where mask is true (all pixels without a mask)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        diff = diff[mask]
    mse = float(np.mean(diff**2)) if diff.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
