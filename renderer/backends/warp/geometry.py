"""The mouth frame of one face, and the static fields the per-frame warp reads.

u runs along the line through the mouth corners, v across it (down is positive), both in output
pixels with the origin at the mouth centre; rel is v minus the rest lip line under the pixel.
Lengths below are fractions of the mouth width (corner to corner) unless they say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from renderer.landmarks import (
    INNER_LOWER,
    INNER_UPPER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    OUTER_LOWER,
    OUTER_UPPER,
)

CHIN = 152
# Conversational speech rarely opens the inner lips past a quarter of the inter-ocular distance;
# this is the centre gap at openness 1 (articulation 1), calibrated so that the speech fixture's
# 95th percentile lands near 0.16 of it (see docs/renderer.md).
GAP_PER_IOD = 0.18
UPPER_SHARE = 0.2  # share of the gap that the upper lip lifting makes (the jaw makes the rest)
SMILE_UPPER_SHARE = 0.0  # an upper lip a smile already raised off the teeth stays put
JAW_SHARE = 0.8  # of the lower lip's drop, the part the jaw (lower teeth, chin) carries
UPPER_FALLOFF = 0.38  # the upper lip's lift fades out this far above its edge
LIP_FALLOFF = 0.30  # the lower lip's own roll fades out this far below its edge
CHIN_FALLOFF = 0.55  # below the chin the jaw's drop fades out over this much neck
SPREAD = 0.10  # width change at width=+1
ROUND = 0.16  # width change at width=-1
THICKNESS = 0.30  # lips thin by this much of themselves at full spread, thicken when rounded
INNER_CORNER = 0.92  # the inner gap ends a little inside the outer corners
OPEN_REST = 0.06  # a rest gap wider than this shows the photo's own mouth interior


def smooth_falloff(distance: np.ndarray, length: float | np.ndarray) -> np.ndarray:
    """1 at 0, 0 from `length` on, smoothstep in between."""
    x = np.clip(distance / length, 0.0, 1.0)
    return np.asarray(1.0 - x * x * (3.0 - 2.0 * x), np.float32)


@dataclass(frozen=True, slots=True)
class MouthFrame:
    center: np.ndarray  # (2,) float64
    axis_u: np.ndarray
    axis_v: np.ndarray
    mouth_width: float
    grid_u: np.ndarray  # (33,) samples along u of the rest curves below
    line: np.ndarray  # rest lip line (v) along grid_u
    upper: np.ndarray  # rest inner upper lip, rel to the line (<= 0)
    lower: np.ndarray  # rest inner lower lip, rel to the line (>= 0)
    upper_thickness: np.ndarray  # outer minus inner contour, along grid_u (px, >= 1)
    lower_thickness: np.ndarray
    chin_rel: float  # the chin's rel below the line at the centre
    shows_interior: bool  # the photo's lips are apart: its own teeth/cavity are reused

    def to_uv(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        du, dv = xs - self.center[0], ys - self.center[1]
        return du * self.axis_u[0] + dv * self.axis_u[1], du * self.axis_v[0] + dv * self.axis_v[1]

    def to_xy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.center[0] + u * self.axis_u[0] + v * self.axis_v[0],
            self.center[1] + u * self.axis_u[1] + v * self.axis_v[1],
        )

    def curve(self, values: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(u, self.grid_u, values), np.float64)

    @property
    def inner_half_width(self) -> float:
        return 0.5 * INNER_CORNER * self.mouth_width


def mouth_frame(points: np.ndarray) -> MouthFrame:
    pts = points.astype(np.float64)
    left, right = pts[MOUTH_LEFT], pts[MOUTH_RIGHT]
    mouth_width = float(np.linalg.norm(right - left))
    axis_u = (right - left) / mouth_width
    axis_v = np.array([-axis_u[1], axis_u[0]])
    inner = np.concatenate([pts[list(INNER_UPPER)], pts[list(INNER_LOWER)]])
    center = (left + right) / 2
    center = center + axis_v * float(np.mean((inner - center) @ axis_v))

    def uv(p: np.ndarray) -> np.ndarray:
        return np.stack([(p - center) @ axis_u, (p - center) @ axis_v], axis=-1)

    grid_u = np.linspace(-mouth_width / 2, mouth_width / 2, 33)
    inner_up = _interp_curve(grid_u, uv(pts[list(INNER_UPPER)]))
    inner_lo = _interp_curve(grid_u, uv(pts[list(INNER_LOWER)]))
    outer_up = _interp_curve(grid_u, uv(pts[list(OUTER_UPPER)]))
    outer_lo = _interp_curve(grid_u, uv(pts[list(OUTER_LOWER)]))
    line = 0.5 * (inner_up + inner_lo)
    rest_gap = float(np.max(inner_lo - inner_up))
    shows_interior = rest_gap > OPEN_REST * mouth_width
    if shows_interior:
        upper, lower = np.minimum(inner_up - line, 0.0), np.maximum(inner_lo - line, 0.0)
    else:  # a shut mouth: the lips meet on the line
        upper, lower = np.zeros_like(line), np.zeros_like(line)
    chin = uv(pts[CHIN][None])[0]
    return MouthFrame(
        center=center,
        axis_u=axis_u,
        axis_v=axis_v,
        mouth_width=mouth_width,
        grid_u=grid_u,
        line=line,
        upper=upper,
        lower=lower,
        upper_thickness=np.maximum(inner_up - outer_up, 1.0),
        lower_thickness=np.maximum(outer_lo - inner_lo, 1.0),
        chin_rel=float(chin[1] - np.interp(chin[0], grid_u, line)),
        shows_interior=shows_interior,
    )


def box_grid(box: tuple[int, int, int, int], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of the box; with step 2, those of the half-size grid that cv2.resize
    (INTER_LINEAR) scales back onto the box exactly."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cw, ch = -(-w // step), -(-h // step)
    xs = x0 + (np.arange(cw) + 0.5) * (w / cw) - 0.5
    ys = y0 + (np.arange(ch) + 0.5) * (h / ch) - 0.5
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    return gx, gy


@dataclass(frozen=True, slots=True, eq=False)
class SkinFields:
    """Per ROI pixel, what the warp needs that never changes for this face (float32)."""

    u: np.ndarray
    v_line: np.ndarray  # rest lip line under the pixel
    rel: np.ndarray
    upper: np.ndarray  # rest inner-lip edges under the pixel (rel units)
    lower: np.ndarray
    width_weight: np.ndarray  # how much width changes move each pixel
    inv_upper_lip: np.ndarray  # 1 / (1.3 x lip thickness): where thinning/thickening acts
    inv_lower_lip: np.ndarray
    jaw: np.ndarray  # JAW_SHARE x how rigidly each pixel rides on the jaw

    def crop(self, window: tuple[slice, slice]) -> SkinFields:
        return SkinFields(*(getattr(self, name)[window] for name in self.__slots__))


def roi_box(frame: MouthFrame, gap_max: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    mw = frame.mouth_width
    half = mw / 2
    up_extent = (UPPER_FALLOFF * mw + gap_max * UPPER_SHARE) + float(-frame.upper.min()) + 4
    down_extent = max(frame.chin_rel, 0.6 * mw) + CHIN_FALLOFF * mw + gap_max + 4
    side_extent = half * 1.75 + 4
    corners = np.array(
        [[su, sv] for su in (-side_extent, side_extent) for sv in (-up_extent, down_extent)]
    )
    xs, ys = frame.to_xy(corners[:, 0], corners[:, 1] + float(np.mean(frame.line)))
    width, height = size
    x0, y0 = int(np.floor(xs.min())), int(np.floor(ys.min()))
    x1, y1 = int(np.ceil(xs.max())) + 1, int(np.ceil(ys.max())) + 1
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def skin_fields(frame: MouthFrame, xs: np.ndarray, ys: np.ndarray) -> SkinFields:
    """The static fields at the given pixel centres (a full grid, or a coarser one)."""
    u, v = frame.to_uv(xs, ys)
    mw = frame.mouth_width
    half = mw / 2
    v_line = frame.curve(frame.line, u)
    rel = v - v_line
    lateral = np.where(np.abs(u) <= half, 1.0, smooth_falloff(np.abs(u) - half, 0.75 * half))
    vertical = smooth_falloff(np.abs(rel), 0.6 * mw)
    lower = frame.curve(frame.lower, u)
    f32 = np.float32
    return SkinFields(
        u=u.astype(f32),
        v_line=v_line.astype(f32),
        rel=rel.astype(f32),
        upper=frame.curve(frame.upper, u).astype(f32),
        lower=lower.astype(f32),
        width_weight=(lateral * vertical).astype(f32),
        inv_upper_lip=(1.0 / (1.3 * frame.curve(frame.upper_thickness, u))).astype(f32),
        inv_lower_lip=(1.0 / (1.3 * frame.curve(frame.lower_thickness, u))).astype(f32),
        jaw=(JAW_SHARE * _jaw_field(frame, u, rel - lower)).astype(f32),
    )


def _jaw_field(frame: MouthFrame, u: np.ndarray, below_lip: np.ndarray) -> np.ndarray:
    """How much of the jaw's drop each pixel below the lips follows (1 rides rigidly).

    The jaw hinges far behind the mouth, so in a frontal photo the chin drops nearly as far as
    the lower teeth and the skin below the chin and towards the jaw's angles stretches. Right at
    the lip edge the field follows the opening's own profile, so the lip edge maps exactly.
    """
    mw = frame.mouth_width
    profile = np.sqrt(np.clip(1.0 - (u / frame.inner_half_width) ** 2, 0.0, 1.0))
    lateral = np.where(np.abs(u) <= 0.3 * mw, 1.0, smooth_falloff(np.abs(u) - 0.3 * mw, 0.6 * mw))
    chin_depth = max(frame.chin_rel, 0.6 * mw)
    rigid = lateral * np.where(
        below_lip <= chin_depth, 1.0, smooth_falloff(below_lip - chin_depth, CHIN_FALLOFF * mw)
    )
    rise = np.clip(below_lip / (0.25 * mw), 0.0, 1.0)
    rise = rise * rise * (3.0 - 2.0 * rise)
    field = profile + (rigid - profile) * rise
    return np.asarray(np.where(below_lip < 0, 0.0, field))


def _interp_curve(grid_u: np.ndarray, curve: np.ndarray) -> np.ndarray:
    order = np.argsort(curve[:, 0])
    return np.asarray(np.interp(grid_u, curve[order, 0], curve[order, 1]), np.float64)
