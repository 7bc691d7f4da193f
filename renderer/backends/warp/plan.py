"""Per frame: where each output pixel of the region samples the photo, and the open mouth.

Hot path: float32 throughout, a fixed handful of whole-region array operations, and the mouth
interior only on its own small window.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderer.audio import MouthShape
from renderer.backends.warp.geometry import (
    INNER_CORNER,
    JAW_SHARE,
    ROUND,
    SPREAD,
    THICKNESS,
    SkinFields,
)
from renderer.backends.warp.interior import Plates

F32 = np.float32
WET_FEATHER = 1.6


@dataclass(frozen=True, slots=True, eq=False)
class WarpShape:
    """What the plan needs of a prepared face (kept apart from WarpFace to avoid a cycle)."""

    fields: SkinFields
    coarse: SkinFields  # the same on the half-size grid
    base_x: np.ndarray  # (h, w) where each pixel sits with no displacement along axis_v ...
    base_y: np.ndarray  # ... i.e. its position minus rel * axis_v
    u_weighted: np.ndarray  # u * width_weight: how far width changes move each pixel
    plates: Plates
    center: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    mouth_width: float
    gap_max: float  # centre gap at openness 1, px
    upper_share: float
    jaw_share: float  # how far the lower plate drops with the lower lip (the jaw's part)
    inv_upper_falloff: float
    inv_lip_falloff: float
    feather: float  # px over which lips blend into the mouth interior
    shadow: float  # px: length of the upper lip's shadow on the teeth
    shadow_strength: float  # 0 where the photo's own teeth already carry the lip's shadow
    rim: float  # px: how far the upper lip's inner rim darkens towards the open mouth
    rim_strength: float  # how dark that rim gets right at the edge (0..1)
    wet_strength: float  # how strongly the lower lip's wet inner edge catches the light


@dataclass(frozen=True, slots=True)
class WarpPlan:
    """Per-frame sampling maps and mouth-interior overlay for the ROI."""

    map_x: np.ndarray  # (h, w) float32, ROI-sized
    map_y: np.ndarray
    window: tuple[slice, slice]  # the interior's rows/cols of the ROI (empty when shut)
    cavity: np.ndarray  # (wh, ww, 3) float32: the interior's colour
    alpha: np.ndarray  # (wh, ww) float32: its coverage

    def full_cavity(self) -> tuple[np.ndarray, np.ndarray]:
        """Interior colour and coverage padded to the whole ROI (for the ONNX graph)."""
        cavity = np.zeros((*self.map_x.shape, 3), np.float32)
        alpha = np.zeros(self.map_x.shape, np.float32)
        cavity[self.window] = self.cavity
        alpha[self.window] = self.alpha
        return cavity, alpha


def _smoothstep_falloff(x: np.ndarray) -> np.ndarray:
    """x already scaled to [0, 1+]: 1 at 0, 0 from 1 on."""
    x = np.minimum(x, F32(1.0))
    out: np.ndarray = F32(1.0) - x * x * (F32(3.0) - F32(2.0) * x)
    return out


@dataclass(frozen=True, slots=True)
class _Motion:
    lift: np.float32  # upper lip's rise at the centre, px
    drop: np.float32  # lower lip's drop at the centre, px
    scale: float  # width change (negative narrows)
    thickness: float  # lip thickness change factor per unit of distance falloff


def _motion(face: WarpShape, mouth: MouthShape) -> _Motion:
    gap = face.gap_max * mouth.openness
    width = mouth.width
    scale = SPREAD * width if width > 0 else ROUND * width
    return _Motion(
        lift=F32(face.upper_share * gap),
        drop=F32((1.0 - face.upper_share) * gap),
        scale=scale,
        thickness=THICKNESS * width,
    )


def _source_rel(
    face: WarpShape, f: SkinFields, motion: _Motion
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of `f`: the rel it samples, and the displaced inner-lip edges."""
    su = f.u - F32(motion.scale) * f.u * f.width_weight if motion.scale else f.u
    x = su * F32(2.0 / (INNER_CORNER * face.mouth_width))
    profile = np.sqrt(np.maximum(F32(1.0) - x * x, F32(0.0)))
    lift, drop = motion.lift, motion.drop
    edge_up = f.upper - lift * profile
    edge_lo = f.lower + drop * profile
    # above the upper lip's displaced edge: the lip and the skin above it lift, fading out
    d_up = np.maximum(edge_up - f.rel, F32(0.0))
    src_up = f.upper - lift * profile * (
        F32(1.0) - _smoothstep_falloff(d_up * F32(face.inv_upper_falloff))
    )
    # below the lower lip's edge: the lip rolls down (fading fast) on a jaw that drops whole
    d_lo = np.maximum(f.rel - edge_lo, F32(0.0))
    lip_roll = (
        F32(1.0 - JAW_SHARE) * profile * _smoothstep_falloff(d_lo * F32(face.inv_lip_falloff))
    )
    src_lo = edge_lo - drop * (lip_roll + f.jaw)
    if motion.thickness:
        # lips keep their volume: thinner when spread, thicker when rounded
        k = F32(motion.thickness)
        d_up = d_up * (F32(1.0) + k * _smoothstep_falloff(d_up * f.inv_upper_lip))
        d_lo = d_lo * (F32(1.0) + k * _smoothstep_falloff(d_lo * f.inv_lower_lip))
    src_up -= d_up
    src_lo += d_lo
    mid = (edge_up + edge_lo) * F32(0.5)
    return np.where(f.rel < mid, src_up, src_lo), edge_up, edge_lo


def plan_warp(face: WarpShape, mouth: MouthShape) -> WarpPlan:
    """Backward maps (output pixel -> photo pixel) and the interior for one mouth shape.

    The displacement is smooth everywhere but at the lips' inner edges, so it is computed on a
    half-size grid and scaled up, then exactly on the small window that holds those edges.
    """
    motion = _motion(face, mouth)
    height, width = face.fields.rel.shape
    coarse, _, _ = _source_rel(face, face.coarse, motion)
    rel_src = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    window = face.plates.window
    exact, edge_up, edge_lo = _source_rel(face, face.fields.crop(window), motion)
    rel_src[window] = exact
    # cv2.scaleAdd (a * x + y in one pass) is several times faster than numpy here
    map_x = cv2.scaleAdd(rel_src, float(face.axis_v[0]), face.base_x)
    map_y = cv2.scaleAdd(rel_src, float(face.axis_v[1]), face.base_y)
    if motion.scale:
        map_x = cv2.scaleAdd(face.u_weighted, -motion.scale * float(face.axis_u[0]), map_x)
        map_y = cv2.scaleAdd(face.u_weighted, -motion.scale * float(face.axis_u[1]), map_y)
    if mouth.openness <= 0 and not face.fields.upper.any():
        empty = (slice(0, 0), slice(0, 0))
        return WarpPlan(map_x, map_y, empty, np.zeros((0, 0, 3), F32), np.zeros((0, 0), F32))
    cavity, alpha = _interior(face, edge_up, edge_lo, motion.drop, mouth.openness)
    return WarpPlan(map_x=map_x, map_y=map_y, window=window, cavity=cavity, alpha=alpha)


def _interior(
    face: WarpShape, top: np.ndarray, bottom: np.ndarray, drop: np.float32, openness: float
) -> tuple[np.ndarray, np.ndarray]:
    """Colour and coverage of the open mouth on its window (edges given on the window)."""
    plates = face.plates
    rel = face.fields.rel[plates.window]
    from_top, from_bottom = rel - top, bottom - rel
    # the lower lip's wet inner edge blends into the mouth over more pixels than the upper's
    inv_feather = F32(1.0 / face.feather)
    inv_wet_feather = F32(1.0 / (WET_FEATHER * face.feather))
    coverage = np.clip(
        np.minimum(from_top * inv_feather, from_bottom * inv_wet_feather) + F32(0.5), 0.0, 1.0
    )
    coverage *= np.minimum(np.maximum(bottom - top, F32(0.0)), F32(1.0))

    # the jaw carries the lower plate down (and along the tilt of the mouth)
    jaw = float(drop) * face.jaw_share
    pad_x, pad_y = plates.pad
    dx, dy = jaw * float(face.axis_v[0]), jaw * float(face.axis_v[1])
    shift = np.array([[1.0, 0.0, pad_x - dx], [0.0, 1.0, pad_y - dy]], np.float32)
    height, width = rel.shape
    lower = cv2.warpAffine(
        plates.lower_rgb,
        shift,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    a = plates.upper_alpha[..., None]
    colour = lower + (plates.upper_rgb - lower) * a
    # soft shadow under the upper lip (light comes from above: the lower lip casts none)
    if face.shadow_strength:
        shade = F32(1.0) - F32(face.shadow_strength) * np.exp(
            -np.maximum(from_top, F32(0.0)) * F32(1.0 / face.shadow)
        )
        colour *= shade[..., None]
    # ... only where this column of the mouth is open: nothing past the corners
    lips = (F32(1.0) - coverage) * np.minimum((bottom - top) * F32(0.25), F32(1.0))
    lips *= F32(min(openness / 0.3, 1.0))
    # the upper lip curls into the mouth: its inner rim darkens towards it over a few pixels,
    # the way it does in photographs, not along a cut-out edge
    dark = F32(face.rim_strength) * np.exp(np.minimum(from_top, F32(0.0)) * F32(1.0 / face.rim))
    # the lower lip's wet inner edge blends into the mouth and catches the light just outside
    # it: a soft sheen, never an outline
    below = np.maximum(-from_bottom, F32(0.0)) * F32(1.0 / face.rim) - F32(0.4)
    wet = F32(face.wet_strength) * np.exp(-below * below * F32(6.0))
    nearer_bottom = from_bottom < from_top
    dark *= np.where(nearer_bottom, F32(0.0), lips)
    wet *= np.where(nearer_bottom, lips, F32(0.0))
    alpha = coverage + dark + wet
    colour = (colour * coverage[..., None] + plates.wet * wet[..., None]) / np.maximum(
        alpha, F32(1e-6)
    )[..., None]
    return colour, alpha
