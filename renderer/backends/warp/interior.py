"""The inside of the mouth, built once per face as two plates in output pixels.

- The upper plate belongs to the skull: upper teeth and gum, opaque, with a soft shadow below
  their edge. It never moves; the upper lip lifts off it.
- The lower plate belongs to the jaw: cavity, tongue and lower teeth. Each frame shifts it down
  by the jaw's drop, and the lower lip (which drops a little further) hides most of its teeth:
  on a wide opening the lower incisors' tips show above it.

Where the photo shows its own mouth (a smile with teeth), the plates are the photo's pixels and
only what the photo never showed (above and below its visible teeth, the cavity behind them)
is synthesised. Synthesised pixels take colour from the lips, the skin and the whites of the
eyes (or the photo's own teeth), and blur and grain measured from the photo (see photo.py).
The teeth themselves are painted by teeth.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderer.backends.warp.geometry import MouthFrame
from renderer.backends.warp.photo import PhotoLook, luma
from renderer.backends.warp.teeth import (
    LOWER_DROP,
    LOWER_WIDTHS,
    UPPER_RISE,
    UPPER_WIDTHS,
    CrownRow,
    crown_row,
    face_seed,
    lower_teeth,
    teeth_colour,
    upper_teeth,
)

NOISE_SEED = 20261204
# Closed faces: the upper incisors end this far below the lip line (fraction of mouth width),
# and the lower ones start this far above it, so that on a wide opening the jaw (which drops
# a little less than the lower lip) brings their biting edges out from behind the lip.
UPPER_EDGE = 0.06
LOWER_TOP = 0.015
# A smile's lower incisors sit behind its upper ones (overbite) and come out as the jaw drops;
# their tips show at most this far above the lower lip (fraction of mouth width).
SMILE_OVERBITE = 0.035
SMILE_LOWER_SHOW = 0.07


@dataclass(frozen=True, slots=True, eq=False)
class Plates:
    window: tuple[slice, slice]  # ROI rows and columns the open mouth can reach
    upper_rgb: np.ndarray  # (h, w, 3) float32
    upper_alpha: np.ndarray  # (h, w) float32
    lower_rgb: np.ndarray  # (h + 2 pad_y, w + 2 pad_x, 3) float32, padded for the shift
    pad: tuple[int, int]  # (pad_x, pad_y)
    wet: np.ndarray  # (3,) colour of the light on the wet inner edge of the lower lip


@dataclass(frozen=True, slots=True)
class Palette:
    teeth: np.ndarray
    gum: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray


def palette(look: PhotoLook, teeth: np.ndarray | None = None) -> Palette:
    """The interior's colours from the photo's; `teeth` when the photo shows its own."""
    lip = look.lip
    # dark red-brown, never grey: the mouth's wet walls under little light
    cavity = 0.85 * lip * np.array([0.40, 0.27, 0.26]) + 0.15 * (look.skin * 0.22)
    # the tongue: pinker and less saturated than the lips, a little darker
    grey = float(luma(lip))
    tongue = 0.8 * lip * np.array([0.95, 0.78, 0.80]) + 0.2 * grey
    return Palette(
        teeth=teeth_colour(look) if teeth is None else teeth,
        gum=np.clip(lip * np.array([1.08, 0.92, 0.95]) + 8, 0, 255),
        cavity=cavity,
        tongue=np.clip(tongue, 0, 255),
    )


def build_plates(
    image: np.ndarray,
    frame: MouthFrame,
    look: PhotoLook,
    box: tuple[int, int, int, int],
    window: tuple[slice, slice],
    jaw_shift_max: float,
) -> Plates:
    x0, y0, _, _ = box
    rows, cols = window
    pad_x = int(np.ceil(abs(jaw_shift_max * frame.axis_v[0]))) + 2
    pad_y = int(np.ceil(abs(jaw_shift_max * frame.axis_v[1]))) + 2
    ys, xs = np.mgrid[
        y0 + rows.start - pad_y : y0 + rows.stop + pad_y,
        x0 + cols.start - pad_x : x0 + cols.stop + pad_x,
    ].astype(np.float64)
    u, v = frame.to_uv(xs, ys)
    rel = v - frame.curve(frame.line, u)
    mw, hw = frame.mouth_width, frame.inner_half_width
    reuse, both_rows = frame.shows_interior, True
    if reuse:
        edge, both_rows = _photo_split(image, frame, u)
        lip_edge = frame.curve(frame.lower, u)
        lower_top = np.minimum(edge - SMILE_OVERBITE * mw, lip_edge - SMILE_LOWER_SHOW * mw)
        colours = palette(look, _photo_teeth_colour(image, frame, teeth_colour(look)))
    else:
        colours = palette(look)
        edge = mw * (UPPER_EDGE - 0.10 * (u / hw) ** 2)
        lower_top = mw * (-LOWER_TOP + 0.10 * (u / hw) ** 2)
    seed = face_seed(image)
    upper_row = crown_row(UPPER_WIDTHS, UPPER_RISE, seed)
    lower_row = crown_row(LOWER_WIDTHS, LOWER_DROP, seed + 1)
    up_rgb, up_alpha = upper_teeth(
        u, rel, edge, frame, upper_row, colours.teeth, colours.gum, colours.cavity
    )
    low_rgb = _lower_jaw(u, rel, lower_top, frame, lower_row, colours)
    softness = _softness(look, frame, u)
    up_rgb, up_alpha = _photographed(up_rgb, look, softness), _soften(up_alpha, softness)
    low_rgb = _photographed(low_rgb, look, softness)
    if reuse:
        photo = cv2.remap(
            image, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR
        ).astype(np.float32)
        lip = None if both_rows else frame.curve(frame.lower, u)
        up_rgb, up_alpha, low_rgb = _reuse_photo(
            look.sharpness, photo, rel, edge, lip, up_rgb, up_alpha, low_rgb
        )
    inner = (
        slice(pad_y, pad_y + rows.stop - rows.start),
        slice(pad_x, pad_x + cols.stop - cols.start),
    )
    return Plates(
        window=window,
        upper_rgb=np.ascontiguousarray(up_rgb[inner], np.float32),
        upper_alpha=np.ascontiguousarray(up_alpha[inner], np.float32),
        lower_rgb=np.ascontiguousarray(low_rgb, np.float32),
        pad=(pad_x, pad_y),
        wet=_wet_light(look, colours.teeth),
    )


def _wet_light(look: PhotoLook, teeth: np.ndarray) -> np.ndarray:
    """The sheen on the wet inner lip: the light's colour at about the teeth's brightness."""
    return np.asarray(np.clip(0.55 * teeth + 0.45 * look.lip * 1.15, 0, 255), np.float32)


def _lower_jaw(
    u: np.ndarray,
    rel: np.ndarray,
    teeth_top: np.ndarray,
    frame: MouthFrame,
    row: CrownRow,
    c: Palette,
) -> np.ndarray:
    """Cavity, tongue and lower teeth, as the jaw carries them."""
    mw, hw = frame.mouth_width, frame.inner_half_width
    un = np.clip(np.abs(u) / hw, 0, 1)
    # cavity: darkest deep in the middle and high up behind the upper teeth, a little light
    # reaching in from the corners and off the tongue
    low = np.clip((rel - teeth_top + 0.12 * mw) / (0.12 * mw), 0.0, 1.0)
    cavity = c.cavity * (0.55 + 0.35 * un + 0.25 * low)[..., None]
    rgb = cavity + _tongue(u, rel, teeth_top, frame, c, cavity)
    teeth, cover = lower_teeth(u, rel, teeth_top, frame, row, c.teeth)
    return np.asarray(rgb + (teeth - rgb) * cover[..., None])


def _tongue(
    u: np.ndarray,
    rel: np.ndarray,
    teeth_top: np.ndarray,
    frame: MouthFrame,
    c: Palette,
    cavity: np.ndarray,
) -> np.ndarray:
    """What the tongue adds to the cavity: a rounded dorsum behind the lower teeth, its top
    edge soft where the surface turns away, lit along its crown, darker at its sides."""
    mw, hw = frame.mouth_width, frame.inner_half_width
    across = np.clip(u / (0.8 * hw), -1.0, 1.0)
    reach = np.sqrt(1.0 - across**2)
    top = teeth_top - 0.11 * mw * reach
    depth = (rel - top) / (0.07 * mw)  # 0 at its top edge, 1 where it faces the camera
    on = np.clip(depth / 0.45, 0.0, 1.0) * (reach > 0.05)
    on = on * on * (3.0 - 2.0 * on)
    facing = np.sin(0.5 * np.pi * np.clip(depth, 0.0, 1.0))
    lit = (0.35 + 0.65 * facing) * (0.55 + 0.45 * reach)
    # a faint furrow runs down its middle
    lit = lit * (1.0 - 0.1 * np.exp(-((u / (0.05 * hw)) ** 2)) * facing)
    tongue = c.tongue * lit[..., None]
    sheen = 0.14 * np.exp(-((u / (0.3 * hw)) ** 2) - ((depth - 0.8) / 0.35) ** 2)
    tongue = tongue + (c.teeth * 0.75 - tongue) * sheen[..., None]
    return np.asarray((tongue - cavity) * on[..., None])


def _softness(look: PhotoLook, frame: MouthFrame, u: np.ndarray) -> tuple[float, np.ndarray]:
    """Blur for the plates: the photo's, plus the soft edges of real enamel and gums, and
    more of it towards the corners, where everything sits further back and out of focus."""
    base = float(np.hypot(look.sharpness, 0.008 * frame.mouth_width))
    back = np.clip((np.abs(u) / frame.inner_half_width - 0.35) / 0.5, 0.0, 1.0)
    return base, back.astype(np.float32)


def _soften(alpha: np.ndarray, softness: tuple[float, np.ndarray]) -> np.ndarray:
    return _blurred(alpha.astype(np.float32), softness)


def _blurred(values: np.ndarray, softness: tuple[float, np.ndarray]) -> np.ndarray:
    """Blur by the base sigma, and by twice as much where `softness`'s weight says so."""
    sigma, back = softness
    sharp = cv2.GaussianBlur(values, (0, 0), sigma)
    soft = cv2.GaussianBlur(values, (0, 0), 2.0 * sigma)
    weight = back if values.ndim == 2 else back[..., None]
    return np.asarray(sharp + (soft - sharp) * weight)


def _photographed(
    rgb: np.ndarray, look: PhotoLook, softness: tuple[float, np.ndarray]
) -> np.ndarray:
    """Blur to the photo's sharpness, then add its grain (luma and a little chroma)."""
    blurred = _blurred(rgb.astype(np.float32), softness)
    rng = np.random.default_rng(NOISE_SEED)
    sigma = look.noise
    grain = rng.normal(0.0, sigma, rgb.shape[:2])[..., None] + rng.normal(
        0.0, 0.3 * sigma, rgb.shape
    )
    return np.asarray(np.clip(blurred + grain, 0, 255), np.float32)


def _photo_split(image: np.ndarray, frame: MouthFrame, u: np.ndarray) -> tuple[np.ndarray, bool]:
    """Where the photo's upper teeth end, for each plate pixel's column (rel units), and
    whether the photo shows its lower teeth below them."""
    top, bottom = frame.curve(frame.upper, u), frame.curve(frame.lower, u)
    fraction, both_rows = _teeth_split(image, frame)
    return np.asarray(top + fraction * (bottom - top)), both_rows


def _photo_teeth_colour(image: np.ndarray, frame: MouthFrame, fallback: np.ndarray) -> np.ndarray:
    """Mean colour of the bright, unsaturated pixels between the photo's rest lips."""
    hw = frame.inner_half_width
    uu, ff = np.meshgrid(np.linspace(-0.6 * hw, 0.6 * hw, 25), np.linspace(0.1, 0.9, 9))
    top, bottom = frame.curve(frame.upper, uu), frame.curve(frame.lower, uu)
    xs, ys = frame.to_xy(uu, frame.curve(frame.line, uu) + top + ff * (bottom - top))
    pixels = cv2.remap(image, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR)
    pixels = pixels.reshape(-1, 3).astype(np.float64)
    y = luma(pixels)
    pick = y >= np.percentile(y, 60)
    return np.asarray(pixels[pick].mean(axis=0)) if pick.sum() >= 4 else fallback


def _teeth_split(image: np.ndarray, frame: MouthFrame) -> tuple[float, bool]:
    """Where between the rest lips the upper teeth end (0 top .. 1 bottom), and whether a
    lower row shows below them.

    The darkest row between two rows of teeth if the photo shows one; else the teeth seen are
    the upper row (a smile shows it, the lower lip hides the lower one), so they end where the
    brightness falls off towards the lower lip: the teeth stay whole.
    """
    hw = frame.inner_half_width
    fractions = np.linspace(0.25, 1.0, 31)
    us = np.linspace(-0.4 * hw, 0.4 * hw, 15)
    uu, ff = np.meshgrid(us, fractions)
    top, bottom = frame.curve(frame.upper, uu), frame.curve(frame.lower, uu)
    v = frame.curve(frame.line, uu) + top + ff * (bottom - top)
    xs, ys = frame.to_xy(uu, v)
    rows = cv2.remap(image, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR)
    profile = luma(rows).mean(axis=1)
    brightest = int(np.argmax(profile))
    inner = profile[: len(profile) - 4]  # a dark row must have teeth below it too
    darkest = int(np.argmin(inner[brightest:])) + brightest
    if darkest > brightest and inner[darkest] < 0.8 * float(profile[brightest]):
        if profile[darkest:].max() > 0.9 * inner[darkest] / 0.8:
            return float(fractions[darkest]), True
    below = np.flatnonzero(profile[brightest:] < 0.85 * profile[brightest])
    return float(fractions[brightest + below[0]] if below.size else fractions[-1]), False


def _reuse_photo(
    softness: float,
    photo: np.ndarray,
    rel: np.ndarray,
    split: np.ndarray,
    lip: np.ndarray | None,
    up_rgb: np.ndarray,
    up_alpha: np.ndarray,
    low_rgb: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo's own teeth where it shows them: its pixels above the split are the upper
    plate (the skull's); below it they ride on the jaw. Where the photo shows no lower teeth,
    its dark gap between the upper teeth and the lower lip (`lip`, its rest inner edge) is
    synthesised too, so the new lower incisors run on down behind the lower lip."""
    # the teeth's lower edge as soft as the photo's own edges
    ramp = max(3.0 * softness, 2.0)
    upper = np.clip((split - rel) / ramp + 0.5, 0, 1)
    u3 = upper[..., None]
    up = photo * u3 + up_rgb * (1 - u3)
    alpha = upper + (1 - upper) * up_alpha
    own = 1.0 - upper
    if lip is not None:
        own = np.clip((rel - lip) / ramp + 0.5, 0, 1)
    o3 = own[..., None]
    low = photo * o3 + low_rgb * (1 - o3)
    return up, np.clip(alpha, 0, 1), low
