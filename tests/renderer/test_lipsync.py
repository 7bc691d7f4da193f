"""Lip sync measured, not eyeballed: the landmarker reads the rendered mouths back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from renderer import FaceAsset, RendererOptions
from renderer.landmarks import (
    INNER_LOWER,
    INNER_UPPER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    OUTER_LOWER,
    OUTER_UPPER,
    FaceLandmarker,
)
from renderer.lipsync_metrics import best_lag, frame_envelope, measure_mouths, psnr
from renderer.stream import RenderedFrame
from tests.renderer.render_support import render_all

CLOSED_GAP = 0.04  # inner-lip gap below 4% of the mouth width reads as closed
IDLE_TAIL = 12


@dataclass
class Measured:
    frames: list[RenderedFrame]
    speech_frames: int
    gap: np.ndarray
    width: np.ndarray
    envelope: np.ndarray


@pytest.fixture(scope="module")
def measured(
    face: FaceAsset,
    speech: tuple[np.ndarray, int],
    still_options: RendererOptions,
    landmarker: FaceLandmarker,
) -> Measured:
    pcm, rate = speech
    frames = render_all(face, pcm, rate, still_options, chunk=4096, idle_after=IDLE_TAIL)
    reference = landmarker.detect(face.image)[0].points
    ref_width = float(np.linalg.norm(reference[MOUTH_RIGHT] - reference[MOUTH_LEFT]))
    mouths = measure_mouths([f.image for f in frames], landmarker, reference_width=ref_width)
    assert all(m is not None for m in mouths), "the face must stay detectable in every frame"
    speech_frames = sum(f.audio is not None for f in frames)
    audio = np.concatenate([f.audio for f in frames if f.audio is not None]) / 32768.0
    return Measured(
        frames=frames,
        speech_frames=speech_frames,
        gap=np.array([m.gap for m in mouths if m]),
        width=np.array([m.width for m in mouths if m]),
        envelope=frame_envelope(audio, still_options.samples_per_frame),
    )


def _frames_in(phoneme: dict[str, float | str], fps: int, count: int) -> list[int]:
    """Frames whose centre falls within the phoneme, widened by half a frame each side."""
    start, end = float(phoneme["start_s"]), float(phoneme["end_s"])
    half = 0.5 / fps
    return [i for i in range(count) if start - half <= (i + 0.5) / fps < end + half]


def test_mouth_follows_the_speech_envelope(measured: Measured) -> None:
    n = measured.speech_frames
    lag, r = best_lag(measured.envelope, measured.gap[:n], max_lag=6)
    assert abs(lag) <= 1, f"A/V offset {lag} frames"
    assert r >= 0.6, f"correlation {r:.2f} at lag {lag}"


def test_mouth_really_opens_during_speech(measured: Measured) -> None:
    n = measured.speech_frames
    assert np.percentile(measured.gap[:n], 90) > 0.15


def test_mouth_closes_within_three_frames_after_speech(measured: Measured) -> None:
    tail = measured.gap[measured.speech_frames + 3 :]
    assert len(tail) >= IDLE_TAIL - 3
    assert np.all(tail < CLOSED_GAP), tail


def test_pure_silence_never_opens_the_mouth(
    face: FaceAsset, still_options: RendererOptions, landmarker: FaceLandmarker
) -> None:
    silence = np.zeros(still_options.sample_rate * 2, np.int16)
    frames = render_all(face, silence, still_options.sample_rate, still_options, chunk=960)
    assert len(frames) == 50
    assert all(f.mouth.openness == 0.0 for f in frames)
    assert all(np.array_equal(f.image, face.image) for f in frames)


def test_bilabial_closures_close_the_lips(
    measured: Measured, phonemes: list[dict[str, float | str]], still_options: RendererOptions
) -> None:
    """For each p/b/m, the lips meet in at least one of its frames, in >= 80% of cases."""
    n = measured.speech_frames
    closures = [p for p in phonemes if p["phoneme"] in {"p", "b", "m"}]
    minima = []
    for p in closures:
        idx = _frames_in(p, still_options.fps, n)
        if idx:
            minima.append(float(min(measured.gap[i] for i in idx)))
    assert len(minima) >= 15
    closed = np.mean(np.array(minima) < CLOSED_GAP)
    assert closed >= 0.8, f"closed in {closed:.0%} of {len(minima)} bilabials: {minima}"


def test_rounded_vowels_are_narrower_than_spread_ones(
    measured: Measured, phonemes: list[dict[str, float | str]], still_options: RendererOptions
) -> None:
    n = measured.speech_frames

    def widths(names: set[str]) -> list[float]:
        return [
            float(measured.width[i])
            for p in phonemes
            if p["phoneme"] in names
            for i in _frames_in(p, still_options.fps, n)
        ]

    rounded = widths({"u:", "oU", "O:", "0"})
    spread = widths({"i:", "I", "i", "eI", "E"})
    assert len(rounded) >= 8 and len(spread) >= 8
    assert np.mean(rounded) < np.mean(spread) - 0.02, (np.mean(rounded), np.mean(spread))


def test_identity_outside_the_mouth(measured: Measured, face: FaceAsset) -> None:
    """With idle motion off, PSNR outside the dilated mouth region is >= 45 dB on every frame."""
    pts = face.landmarks
    lips = np.concatenate([pts[list(OUTER_UPPER)], pts[list(OUTER_LOWER)]]).astype(np.int32)
    mask = np.zeros(face.image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(lips), 1)
    radius = int(round(0.6 * face.mouth_width))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    outside = cv2.dilate(mask, kernel) == 0
    worst = min(psnr(f.image, face.image, outside) for f in measured.frames)
    assert worst >= 45.0, f"worst PSNR outside the mouth {worst:.1f} dB"
    # ...and the rest is not trivially unchanged: the mouth region does move
    assert max(psnr(f.image, face.image, ~outside) for f in measured.frames[:40]) < 40


def test_inner_lip_contours_exist_in_landmarks() -> None:
    # the measurement above relies on these rings being the 478-point mesh's inner lips
    assert INNER_UPPER[0] == INNER_LOWER[0] == 78 and INNER_UPPER[-1] == INNER_LOWER[-1] == 308
