"""The inside of the mouth, built once per face as two plates in output pixels.

- The upper plate belongs to the skull: upper teeth and gum, opaque, with a soft shadow below
  their edge. It never moves; the upper lip lifts off it.
- The lower plate belongs to the jaw: cavity, tongue and lower teeth. Each frame shifts it down
  by the jaw's drop, and the lower lip (which drops a little further) hides most of its teeth.

Where the photo shows its own mouth (a smile with teeth), the plates are the photo's pixels and
only what the photo never showed (above and below its visible teeth, the cavity behind them)
is synthesised. Synthesised pixels take colour from the lips and the whites of the eyes, and
blur and grain measured from the photo (see photo.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from renderer.backends.warp.geometry import MouthFrame
from renderer.backends.warp.photo import PhotoLook, luma

# Apparent crown widths from the midline outwards, as fractions of the inner half-width:
# incisors are broad and face the camera; canines and premolars turn away and look narrow.
UPPER_CROWNS = (0.22, 0.17, 0.14, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10)
LOWER_CROWNS = (0.14, 0.13, 0.13, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10, 0.10)
NOISE_SEED = 20261204


@dataclass(frozen=True, slots=True, eq=False)
class Plates:
    window: tuple[slice, slice]  # ROI rows and columns the open mouth can reach
    upper_rgb: np.ndarray  # (h, w, 3) float32
    upper_alpha: np.ndarray  # (h, w) float32
    lower_rgb: np.ndarray  # (h + 2 pad_y, w + 2 pad_x, 3) float32, padded for the shift
    pad: tuple[int, int]  # (pad_x, pad_y)


@dataclass(frozen=True, slots=True)
class Palette:
    teeth: np.ndarray
    gum: np.ndarray
    cavity: np.ndarray
    tongue: np.ndarray


def palette(look: PhotoLook) -> Palette:
    lip = look.lip
    # Teeth: a warm ivory as bright as a little under the whites of the eyes, and brighter
    # than the skin under any light (glasses or squints can hide the eyes' whites).
    level = max(0.9 * float(luma(look.sclera)), 1.3 * float(luma(look.skin)))
    ivory = np.array([1.0, 0.94, 0.82])
    # a little of the mouth's own warm light falls on them
    tint = 0.7 * ivory + 0.3 * look.skin / max(float(luma(look.skin)), 1.0)
    teeth = tint * min(level, 228.0) / float(luma(tint))
    cavity = 0.85 * (lip * 0.38) + 0.15 * (look.skin * 0.25)  # dark red-brown, never grey
    return Palette(
        teeth=np.clip(teeth, 0, 245),
        gum=np.clip(lip * np.array([1.08, 0.92, 0.95]) + 8, 0, 255),
        cavity=cavity,
        tongue=np.clip(lip * np.array([0.92, 0.70, 0.72]), 0, 255),
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
    colours = palette(look)
    reuse = frame.shows_interior
    if reuse:
        edge = _photo_split(image, frame, u)
        # lower incisors sit behind the upper ones (overbite) and come out as the jaw drops
        lower_teeth_top = edge - 0.035 * frame.mouth_width
        colours = replace(colours, teeth=_photo_teeth_colour(image, frame, colours.teeth))
    else:
        edge = frame.mouth_width * (0.07 - 0.10 * (u / frame.inner_half_width) ** 2)
        lower_teeth_top = edge - 0.02 * frame.mouth_width
    up_rgb, up_alpha = _upper_teeth(u, rel, edge, frame, colours)
    low_rgb = _lower_jaw(u, rel, lower_teeth_top, frame, colours)
    up_rgb, up_alpha = _photographed(up_rgb, look), _soften(up_alpha, look)
    low_rgb = _photographed(low_rgb, look)
    if reuse:
        photo = cv2.remap(
            image, xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR
        ).astype(np.float32)
        up_rgb, up_alpha, low_rgb = _reuse_photo(
            look.sharpness, photo, rel, edge, up_rgb, up_alpha, low_rgb
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
    )


def _crowns(
    u: np.ndarray, half_width: float, widths: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel: which crown from the midline (0, 1, ...) and where across it (0..1)."""
    edges = np.concatenate([[0.0], np.cumsum(widths)])
    x = np.abs(u) / half_width
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(widths) - 1)
    t = (x - edges[index]) / np.asarray(widths)[index]
    return index, np.clip(t, 0.0, 1.0)


def _crown_shading(t: np.ndarray, width_px: np.ndarray) -> np.ndarray:
    """Brightness across one crown: a rounded face, dark slits where neighbours meet."""
    across = 1.0 - 0.18 * (2.0 * t - 1.0) ** 4
    to_gap = np.minimum(t, 1.0 - t) * width_px
    slit = 0.20 * np.exp(-((to_gap / 0.8) ** 2))
    return np.asarray(across * (1.0 - slit))


def _upper_teeth(
    u: np.ndarray, rel: np.ndarray, edge: np.ndarray, frame: MouthFrame, c: Palette
) -> tuple[np.ndarray, np.ndarray]:
    mw, hw = frame.mouth_width, frame.inner_half_width
    un = np.abs(u) / hw
    index, t = _crowns(u, hw, UPPER_CROWNS)
    width_px = np.asarray(UPPER_CROWNS)[index] * hw
    bow = (2.0 * t - 1.0) ** 2
    crown_edge = edge - 0.022 * mw * bow * (index < 3)  # rounded incisal corners, front teeth
    crown_h = mw * (0.20 - 0.07 * un**2)
    gum_line = edge - crown_h + 0.035 * mw * bow  # the gum dips between teeth (papillae)
    z = np.clip((rel - gum_line) / np.maximum(crown_edge - gum_line, 1.0), 0.0, 1.0)
    lateral = 1.0 - 0.6 * np.clip(un, 0, 1.2) ** 1.6  # back teeth sit in the cheeks' shadow
    # no two teeth are quite the same shade
    jitter = 1.0 + np.random.default_rng(NOISE_SEED).uniform(-0.07, 0.07, len(UPPER_CROWNS))[index]
    shade = jitter * (
        _crown_shading(t, width_px)
        * lateral
        * (0.86 + 0.14 * np.sin(np.pi * np.clip(z * 1.3, 0, 1)))
    )
    teeth = c.teeth * shade[..., None]
    # the biting edge is thin enamel: the dark cavity shows through it a little
    translucent = np.clip((z - 0.85) / 0.15, 0.0, 1.0)[..., None] * 0.2
    teeth = teeth * (1 - translucent) + c.cavity * translucent
    on_gum = np.clip(gum_line - rel + 0.5, 0.0, 1.0)[..., None]
    rgb = teeth * (1 - on_gum) + (c.gum * lateral[..., None]) * on_gum
    solid = np.clip(crown_edge - rel + 0.5, 0.0, 1.0)
    # below the teeth: their soft shadow on whatever lies behind
    shadow = 0.25 * np.exp(-np.maximum(rel - crown_edge, 0.0) / (0.04 * mw))
    alpha = solid + (1.0 - solid) * shadow
    rgb = rgb * solid[..., None] + c.cavity * 0.5 * (1.0 - solid[..., None])
    return rgb, alpha


def _lower_jaw(
    u: np.ndarray, rel: np.ndarray, teeth_top: np.ndarray, frame: MouthFrame, c: Palette
) -> np.ndarray:
    mw, hw = frame.mouth_width, frame.inner_half_width
    un = np.abs(u) / hw
    lateral = 1.0 - 0.5 * np.clip(un, 0, 1.2) ** 1.5
    # cavity: darkest deep in the middle, a little lighter towards the cheeks
    cavity = c.cavity * (0.75 + 0.35 * np.clip(un, 0, 1))[..., None]
    # tongue: a dome behind the lower teeth, lit at the front, falling into shadow at the back
    reach = np.sqrt(np.clip(1.0 - (u / (0.8 * hw)) ** 2, 0.0, 1.0))
    tongue_top = teeth_top - 0.10 * mw * reach
    depth = np.clip((teeth_top - rel) / np.maximum(teeth_top - tongue_top, 1.0), 0.0, 1.0)
    tongue = c.tongue * (1.0 - 0.6 * depth**1.2)[..., None] * lateral[..., None]
    gloss = np.exp(-((u / (0.35 * hw)) ** 2) - ((depth - 0.3) / 0.2) ** 2) * 0.25
    tongue = tongue + (c.teeth * 0.8 - tongue) * gloss[..., None]
    on_tongue = np.clip(rel - tongue_top + 0.5, 0.0, 1.0) * (reach > 0)
    rgb = cavity + (tongue - cavity) * on_tongue[..., None]
    # lower teeth: smaller crowns, in the upper teeth's and lower lip's shade
    index, t = _crowns(u, hw, LOWER_CROWNS)
    width_px = np.asarray(LOWER_CROWNS)[index] * hw
    crown_top = teeth_top + 0.012 * mw * (2.0 * t - 1.0) ** 2
    crown = 1.0 - 0.6 * (1.0 - _crown_shading(t, width_px))  # slits half hidden by the lip
    teeth = c.teeth * (0.85 * crown * lateral)[..., None]
    # only the front teeth of the lower row show; further back they turn into the dark
    front = np.clip((0.7 - un) / 0.2, 0.0, 1.0)
    on_teeth = (np.clip(rel - crown_top + 0.5, 0.0, 1.0) * front)[..., None]
    return np.asarray(rgb + (teeth - rgb) * on_teeth)


def _soften(alpha: np.ndarray, look: PhotoLook) -> np.ndarray:
    return np.asarray(cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), look.sharpness))


def _photographed(rgb: np.ndarray, look: PhotoLook) -> np.ndarray:
    """Blur to the photo's sharpness, then add its grain (luma and a little chroma)."""
    blurred = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), look.sharpness)
    rng = np.random.default_rng(NOISE_SEED)
    # bilinear resampling while the jaw moves smooths grain a little: start a touch stronger
    sigma = look.noise
    grain = rng.normal(0.0, sigma, rgb.shape[:2])[..., None] + rng.normal(
        0.0, 0.3 * sigma, rgb.shape
    )
    return np.asarray(np.clip(blurred + grain, 0, 255), np.float32)


def _photo_split(image: np.ndarray, frame: MouthFrame, u: np.ndarray) -> np.ndarray:
    """Where the photo's upper teeth end, for each plate pixel's column (rel units)."""
    top, bottom = frame.curve(frame.upper, u), frame.curve(frame.lower, u)
    return np.asarray(top + _teeth_split(image, frame) * (bottom - top))


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


def _teeth_split(image: np.ndarray, frame: MouthFrame) -> float:
    """Where between the rest lips the upper teeth end (0 top .. 1 bottom).

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
            return float(fractions[darkest])
    below = np.flatnonzero(profile[brightest:] < 0.85 * profile[brightest])
    return float(fractions[brightest + below[0]] if below.size else fractions[-1])


def _reuse_photo(
    softness: float,
    photo: np.ndarray,
    rel: np.ndarray,
    split: np.ndarray,
    up_rgb: np.ndarray,
    up_alpha: np.ndarray,
    low_rgb: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo's own teeth where it shows them: its pixels above the split are the upper
    plate (the skull's), below it the lower plate (the jaw's); only the shadow under the upper
    teeth and the tongue and cavity behind them are synthesised."""
    # the teeth's lower edge as soft as the photo's own edges
    upper = np.clip((split - rel) / max(3.0 * softness, 2.0) + 0.5, 0, 1)
    u3 = upper[..., None]
    up = photo * u3 + up_rgb * (1 - u3)
    alpha = upper + (1 - upper) * up_alpha
    low = photo * (1 - u3) + low_rgb * u3
    return up, np.clip(alpha, 0, 1), low
