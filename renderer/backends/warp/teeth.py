"""Synthesised teeth: rows of crowns that differ the way real ones do, lit like the photo.

Crowns are laid out along u from the midline outwards, separately on each side. Widths and
lengths follow anatomy (upper centrals widest and longest, laterals narrower and a little
shorter, canines narrow, pointed and shorter in a frontal view, the back teeth turning away),
and each face gets its own small irregularities from a seed taken from its photo, so no two
rows, and no two sides of one row, are quite the same.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from renderer.backends.warp.geometry import MouthFrame
from renderer.backends.warp.photo import PhotoLook, luma

# Apparent crown widths from the midline outwards, as fractions of the inner half-width.
UPPER_WIDTHS = (0.215, 0.165, 0.135, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10)
# How far each crown's biting edge sits above the centrals' (fractions of the mouth width).
UPPER_RISE = (0.0, 0.011, 0.017, 0.022, 0.026, 0.03, 0.03, 0.03, 0.03)
# Lower incisors are narrower than the upper ones; the canine is the widest of the front.
LOWER_WIDTHS = (0.115, 0.125, 0.14, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10, 0.10)
LOWER_DROP = (0.0, 0.002, 0.008, 0.014, 0.02, 0.025, 0.025, 0.025, 0.025, 0.025)
CANINE = 2
WARM_IVORY = np.array([1.0, 0.93, 0.80])
LOWER_LIGHT = np.array([1.0, 0.97, 0.92])


@dataclass(frozen=True, slots=True)
class CrownRow:
    """One row of crowns; arrays are (2, n): side 0 is u >= 0, side 1 is u < 0."""

    widths: np.ndarray  # fractions of the inner half-width
    offset: np.ndarray  # biting edge's offset from the row's line, fractions of mouth width
    shade: np.ndarray  # brightness factor of each crown


def face_seed(image: np.ndarray) -> int:
    """A seed of this photo's own: its irregularities stay put from frame to frame and run."""
    return zlib.crc32(np.ascontiguousarray(image).data)


def crown_row(widths: tuple[float, ...], offsets: tuple[float, ...], seed: int) -> CrownRow:
    rng = np.random.default_rng(seed)
    n = len(widths)
    return CrownRow(
        widths=np.asarray(widths) * (1.0 + rng.uniform(-0.07, 0.07, (2, n))),
        offset=np.asarray(offsets) + rng.uniform(-0.004, 0.004, (2, n)),
        shade=1.0 + rng.uniform(-0.05, 0.05, (2, n)),
    )


def teeth_colour(look: PhotoLook) -> np.ndarray:
    """Teeth lit like the face when the photo shows none: as bright as a little under the
    whites of the eyes and brighter than the skin under the same light (glasses or squints
    can hide the eyes' whites), so a dim photo gets dim teeth. Warm ivory, with a little of
    the skin's own colour of light."""
    level = max(0.95 * float(luma(look.sclera)), 1.5 * float(luma(look.skin)))
    tint = 0.75 * WARM_IVORY + 0.25 * look.skin / max(float(luma(look.skin)), 1.0)
    return np.asarray(np.clip(tint * min(level, 242.0) / float(luma(tint)), 0, 250))


def locate(u: np.ndarray, half_width: float, row: CrownRow) -> tuple[np.ndarray, ...]:
    """For each pixel: its side, which crown from the midline (0, 1, ...) and where across
    that crown it lies (0 inner edge .. 1 outer edge)."""
    side = (u < 0).astype(np.intp)
    x = np.abs(u) / half_width
    n = row.widths.shape[1]
    edges = np.concatenate([np.zeros((2, 1)), np.cumsum(row.widths, axis=1)], axis=1)
    index = np.where(
        side == 0,
        np.searchsorted(edges[0], x, side="right") - 1,
        np.searchsorted(edges[1], x, side="right") - 1,
    )
    index = np.clip(index, 0, n - 1)
    t = (x - edges[side, index]) / row.widths[side, index]
    return side, index, np.clip(t, 0.0, 1.0)


def crown_shading(t: np.ndarray, width_px: np.ndarray, slit_depth: float = 0.24) -> np.ndarray:
    """Brightness across one crown: a rounded face, dark slits where neighbours meet."""
    across = 1.0 - 0.22 * (2.0 * t - 1.0) ** 4
    to_gap = np.minimum(t, 1.0 - t) * width_px
    slit = slit_depth * np.exp(-((to_gap / 0.8) ** 2))
    return np.asarray(across * (1.0 - slit))


def upper_teeth(
    u: np.ndarray,
    rel: np.ndarray,
    edge: np.ndarray,
    frame: MouthFrame,
    row: CrownRow,
    teeth: np.ndarray,
    gum: np.ndarray,
    cavity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The upper row: colour and coverage (with the crowns' soft shadow below them)."""
    mw, hw = frame.mouth_width, frame.inner_half_width
    un = np.abs(u) / hw
    side, index, t = locate(u, hw, row)
    width_px = row.widths[side, index] * hw
    across = 2.0 * t - 1.0
    # each crown ends at its own length; corners rounded, the canine comes to a point
    corners = 0.016 * mw * across**4
    point = np.where(index == CANINE, 0.012 * mw * np.abs(across), 0.0)
    crown_edge = edge - mw * row.offset[side, index] - corners - point
    crown_h = mw * (0.20 - 0.07 * un**2)
    gum_line = edge - crown_h + 0.035 * mw * across**2  # the gum dips between teeth
    z = np.clip((rel - gum_line) / np.maximum(crown_edge - gum_line, 1.0), 0.0, 1.0)
    back = _towards_back(un)
    # darker near the gum (the upper lip's shade) and lightest two thirds of the way down
    vertical = 0.88 + 0.12 * np.sin(np.pi * np.clip(z * 1.4, 0, 1) / 2)
    shade = row.shade[side, index] * crown_shading(t, width_px) * back * vertical
    rgb = teeth * shade[..., None]
    # the biting edge is thin enamel: the dark cavity shows through it a little
    translucent = np.clip((z - 0.82) / 0.18, 0.0, 1.0)[..., None] * 0.22
    rgb = rgb * (1 - translucent) + cavity * translucent
    on_gum = np.clip(gum_line - rel + 0.5, 0.0, 1.0)[..., None]
    rgb = rgb * (1 - on_gum) + (gum * back[..., None]) * on_gum
    solid = np.clip(crown_edge - rel + 0.5, 0.0, 1.0)
    # below the teeth: their soft shadow on whatever lies behind
    shadow = 0.25 * np.exp(-np.maximum(rel - crown_edge, 0.0) / (0.04 * mw))
    alpha = solid + (1.0 - solid) * shadow
    rgb = rgb * solid[..., None] + cavity * 0.5 * (1.0 - solid[..., None])
    return rgb, alpha


def lower_teeth(
    u: np.ndarray,
    rel: np.ndarray,
    top: np.ndarray,
    frame: MouthFrame,
    row: CrownRow,
    teeth: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The lower incisors and canines: colour and coverage. Only the front of the row shows;
    further back the teeth turn into the dark of the cheeks."""
    mw, hw = frame.mouth_width, frame.inner_half_width
    un = np.abs(u) / hw
    side, index, t = locate(u, hw, row)
    width_px = row.widths[side, index] * hw
    across = 2.0 * t - 1.0
    crown_top = top + mw * row.offset[side, index] + 0.008 * mw * across**4
    below = np.clip((rel - crown_top) / (0.12 * mw), 0.0, 1.0)
    # lit at the biting edge, into the lower lip's shade further down
    vertical = 1.0 - 0.1 * below
    # lower incisors stand tight together: fainter slits than the upper row's
    shading = crown_shading(t, width_px, slit_depth=0.12)
    shade = row.shade[side, index] * shading * _towards_back(un) * vertical
    front = np.clip((0.75 - un) / 0.25, 0.0, 1.0)
    cover = np.clip(rel - crown_top + 0.5, 0.0, 1.0) * front
    # lit less directly than the upper row, partly by light off the tongue and lips
    return teeth * LOWER_LIGHT * shade[..., None], cover


def _towards_back(un: np.ndarray) -> np.ndarray:
    """Teeth further back sit in the cheeks' shadow."""
    return np.asarray(1.0 - 0.55 * np.clip(un, 0, 1.2) ** 1.8)
