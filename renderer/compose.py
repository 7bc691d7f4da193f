"""What happens to a rendered face before it leaves: idle motion and face-swap crossfades.

Idle motion runs on the frame clock, during speech and in silence alike, so it never jumps:
blinks at seeded random intervals, and a slow breathing/sway of the whole head.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderer.face import FaceAsset
from renderer.landmarks import EYES

BLINK_S = 0.22
BLINK_GAP_S = (2.2, 5.5)
SWAY_PX = 1.6  # at 512 px; scaled with the frame
SWAY_DEG = 0.35
BREATH_SCALE = 0.004


@dataclass(frozen=True, slots=True, eq=False)
class EyeRegion:
    box: tuple[int, int, int, int]
    ys: np.ndarray  # (h, w) pixel rows
    xs: np.ndarray
    lid_gap: np.ndarray  # (h, w) how far the upper lid travels to close, per column
    weight: np.ndarray  # (h, w) falloff above the lower lid (1 at the lid line)


def prepare_eyes(face: FaceAsset) -> tuple[EyeRegion, ...]:
    regions = []
    height, width = face.image.shape[:2]
    for outer, inner, upper, lower in EYES:
        pts = face.landmarks
        left_x, right_x = sorted((float(pts[outer, 0]), float(pts[inner, 0])))
        eye_w = right_x - left_x
        gap = max(float(pts[lower, 1] - pts[upper, 1]), 1.0)
        lower_y = float(pts[lower, 1])
        reach = 0.9 * eye_w  # how far above the lower lid the skin stretches down
        x0, x1 = int(max(left_x - 0.3 * eye_w, 0)), int(min(right_x + 0.3 * eye_w, width))
        y0, y1 = int(max(lower_y - reach - gap - 2, 0)), int(min(lower_y + 3, height))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        centre = (left_x + right_x) / 2
        across = np.clip(1.0 - ((xs - centre) / (0.65 * eye_w)) ** 2, 0.0, 1.0)
        above = np.clip((lower_y - ys) / reach, 0.0, 1.0)
        weight = np.where(ys <= lower_y, 0.5 + 0.5 * np.cos(np.pi * above), 0.0)
        regions.append(
            EyeRegion(
                box=(x0, y0, x1, y1),
                ys=ys,
                xs=xs,
                lid_gap=(gap * across).astype(np.float32),
                weight=weight.astype(np.float32),
            )
        )
    return tuple(regions)


class IdleMotion:
    """Deterministic (seeded) blinks and sway as a function of the frame index."""

    def __init__(self, *, fps: int, seed: int) -> None:
        self._fps = fps
        self._rng = np.random.default_rng(seed)
        self._phase = self._rng.uniform(0, 2 * np.pi, size=3)
        self._next_blink = self._draw_gap()
        self._blinks: list[float] = []

    def _draw_gap(self) -> float:
        return float(self._rng.uniform(*BLINK_GAP_S))

    def blink_amount(self, t: float) -> float:
        """0 open .. 1 closed at time t (call with non-decreasing t)."""
        while t >= self._next_blink:
            self._blinks.append(self._next_blink)
            self._next_blink += self._draw_gap()
        self._blinks = [b for b in self._blinks if t - b < BLINK_S]
        if not self._blinks:
            return 0.0
        x = (t - self._blinks[-1]) / BLINK_S  # 0..1: fast close, slower open
        return float(x / 0.35 if x < 0.35 else max(0.0, 1.0 - (x - 0.35) / 0.65))

    def apply(self, frame: np.ndarray, eyes: tuple[EyeRegion, ...], index: int) -> np.ndarray:
        t = index / self._fps
        blink = self.blink_amount(t)
        if blink > 0.0:
            source = frame.copy()
            for eye in eyes:
                x0, y0, x1, y1 = eye.box
                map_y = eye.ys - blink * eye.lid_gap * eye.weight
                frame[y0:y1, x0:x1] = cv2.remap(
                    source, eye.xs, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                )
        return self._sway(frame, t)

    def _sway(self, frame: np.ndarray, t: float) -> np.ndarray:
        height, width = frame.shape[:2]
        px = SWAY_PX * max(width, height) / 512
        p = self._phase
        dx = px * np.sin(2 * np.pi * t / 7.3 + p[0])
        dy = 0.6 * px * np.sin(2 * np.pi * t / 5.1 + p[1])
        angle = SWAY_DEG * np.sin(2 * np.pi * t / 9.7 + p[2])
        scale = 1.0 + BREATH_SCALE * np.sin(2 * np.pi * t / 4.2)
        # pivot low in the frame (the neck), so the head moves, not the whole picture
        matrix = cv2.getRotationMatrix2D((width / 2, height * 0.85), angle, scale)
        matrix[:, 2] += (dx, dy)
        # REPLICATE: half the cost of REFLECT, and the same look for a sway of two pixels
        return cv2.warpAffine(frame, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def crossfade(old: np.ndarray, new: np.ndarray, weight: float) -> np.ndarray:
    """Blend two frames; weight 0 is all old, 1 all new."""
    if old.shape != new.shape:
        old = cv2.resize(old, (new.shape[1], new.shape[0]), interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(old, 1.0 - weight, new, weight, 0.0)
