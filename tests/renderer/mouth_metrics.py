"""Measurements of how real a rendered mouth looks, on frames before any video encoding.

Each function reads pixels (and landmarks found on those pixels), never the renderer's
parameters, so the same measurement runs on a photograph and on a render.
"""

from __future__ import annotations

import cv2
import numpy as np

from renderer.landmarks import (
    INNER_LOWER,
    INNER_LOWER_MID,
    INNER_UPPER,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    OUTER_LOWER,
    OUTER_UPPER,
)

_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def polygon_mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres (the mean of each eye's two corners)."""
    left, right = (points[33] + points[133]) / 2, (points[362] + points[263]) / 2
    return float(np.linalg.norm(left - right))


def noise_sigma(gray: np.ndarray, mask: np.ndarray) -> float:
    """Pixel noise, robust to edges (Immerkaer's kernel; median absolute response)."""
    response = np.abs(cv2.filter2D(gray.astype(np.float32), -1, _NOISE_KERNEL))
    values = response[mask & np.pad(np.ones((gray.shape[0] - 2, gray.shape[1] - 2), bool), 1)]
    return float(np.median(values) / (0.6745 * 6.0)) if values.size >= 16 else 0.0


def skin_ring(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Skin around the lips: their hull grown by a third of the mouth width, lips left out."""
    lips = np.concatenate([points[list(OUTER_UPPER)], points[list(OUTER_LOWER)]])
    hull = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lips).astype(np.int32)), 1)
    mouth_width = float(np.linalg.norm(points[MOUTH_RIGHT] - points[MOUTH_LEFT]))
    radius = max(2, int(round(mouth_width / 3)))
    grown = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2))
    near = cv2.dilate(hull, np.ones((7, 7), np.uint8))
    return (grown > 0) & (near == 0)


def lips_region(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The lips' hull and a few pixels around it."""
    lips = np.concatenate([points[list(OUTER_UPPER)], points[list(OUTER_LOWER)]])
    hull = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lips).astype(np.int32)), 1)
    return cv2.dilate(hull, np.ones((9, 9), np.uint8)) > 0


def inner_lip_mask(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    ring = np.concatenate([points[list(INNER_UPPER)], points[list(INNER_LOWER)][::-1]])
    return polygon_mask(image.shape, ring)


def teeth_profile_variation(image: np.ndarray, points: np.ndarray) -> float:
    """How much the brightness of the teeth varies from crown to crown.

    Column means of the bright, unsaturated pixels inside the inner lips, minus their local
    average (a window of a quarter of the mouth width), as a standard deviation relative to
    the teeth's mean brightness. Separate crowns with gaps and shading score high; a flat bar
    scores low.
    """
    mask = inner_lip_mask(image, points)
    pixels = image.astype(np.float32)
    y = luma(pixels)
    top, bottom = pixels.max(axis=-1), pixels.min(axis=-1)
    saturation = (top - bottom) / np.maximum(top, 1.0)
    if mask.sum() < 20:
        return 0.0
    bright = y >= 0.6 * np.percentile(y[mask], 95)
    teeth = mask & bright & (saturation <= 0.4)
    mouth_width = float(np.linalg.norm(points[MOUTH_RIGHT] - points[MOUTH_LEFT]))
    centre = float(points[MOUTH_LEFT][0] + points[MOUTH_RIGHT][0]) / 2
    # the front teeth only: where the row ends (corners, lips) is not crown structure
    central = np.abs(np.arange(image.shape[1]) - centre) <= 0.25 * mouth_width
    counts = teeth.sum(axis=0)
    cols = np.flatnonzero((counts >= 2) & central)
    if cols.size < 8:
        return 0.0
    means = (np.where(teeth, y, 0.0).sum(axis=0)[cols]) / counts[cols]
    window = max(3, int(round(0.25 * mouth_width)) | 1)
    padded = np.pad(means, window // 2, mode="edge")
    local = np.convolve(padded, np.ones(window) / window, mode="valid")
    return float(np.std(means - local) / max(float(means.mean()), 1.0))


def grain_ratio(frame: np.ndarray, synthesised: np.ndarray, skin: np.ndarray) -> float:
    """Fine-scale noise of the synthesised pixels over that of the skin around the mouth."""
    core = cv2.erode(synthesised.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    gray = luma(frame)
    return noise_sigma(gray, core) / max(noise_sigma(gray, skin), 1e-3)


def lip_gap_over_iod(points: np.ndarray) -> float:
    gap = float(np.linalg.norm(points[INNER_LOWER_MID] - points[INNER_UPPER_MID]))
    return gap / inter_ocular(points)


def best_ncc(frame: np.ndarray, patch: np.ndarray, search: tuple[int, int, int, int]) -> float:
    """Highest normalised cross-correlation of `patch` inside the search box x0, y0, x1, y1."""
    x0, y0, x1, y1 = search
    region = luma(frame[y0:y1, x0:x1])
    scores = cv2.matchTemplate(region, luma(patch), cv2.TM_CCOEFF_NORMED)
    return float(scores.max())


def seam_steps(frame: np.ndarray, synthesised: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Colour step (largest channel difference) between each changed pixel on the edge of the
    open mouth and its neighbours on the lips outside it (an edge the photo itself has, left
    as it was, is no seam)."""
    img = frame.astype(np.int16)
    changed = np.abs(img - photo.astype(np.int16)).max(axis=-1) > 2
    inside = synthesised & changed
    steps = []
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        # the neighbour must lie outside the open mouth (on the lips or skin): edges inside
        # the mouth, such as the photo's own teeth against the cavity, are anatomy, not seams
        neighbour_inside = np.roll(synthesised, (dy, dx), axis=(0, 1))
        neighbour = np.roll(img, (dy, dx), axis=(0, 1))
        edge = inside & ~neighbour_inside
        diff = np.abs(img - neighbour).max(axis=-1)
        steps.append(diff[edge])
    return np.concatenate(steps).astype(np.float64)


def photo_steps(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The photo's own 1-pixel colour steps inside a region (same measure as seam_steps)."""
    img = image.astype(np.int16)
    dx = np.abs(img[:, 1:] - img[:, :-1]).max(axis=-1)[region[:, 1:] & region[:, :-1]]
    dy = np.abs(img[1:] - img[:-1]).max(axis=-1)[region[1:] & region[:-1]]
    return np.concatenate([dx, dy]).astype(np.float64)


def column_profile(frame: np.ndarray, mask: np.ndarray, centre: float, half: float) -> np.ndarray:
    """Mean brightness of the columns within `half` px of `centre`, row by row upwards from
    the open mouth's lower edge (the lowest masked row of each column): index 0 is that edge,
    negative indices lie on the lower lip below it."""
    y = luma(frame)
    cols = np.arange(int(round(centre - half)), int(round(centre + half)) + 1)
    reach = frame.shape[0] // 8
    stack = []
    for col in cols:
        rows = np.flatnonzero(mask[:, col])
        if rows.size == 0:
            continue
        edge = int(rows[-1])
        above = y[max(edge - reach, 0) : edge + 1, col][::-1]
        below = y[edge + 1 : edge + 1 + reach, col]
        if above.size == reach + 1 and below.size == reach:
            stack.append(np.concatenate([below[::-1], above]))
    return np.mean(stack, axis=0) if stack else np.zeros(0)


def lower_teeth_visible(
    frame: np.ndarray, mask: np.ndarray, mouth_width: float, centre: float
) -> bool:
    """Whether lower incisors show: bright rows (near the upper teeth's brightness) just above
    the lower lip and brighter than its edge, with darker mouth between them and the upper
    teeth."""
    if mask.sum() < 20:
        return False
    teeth = float(np.percentile(luma(frame)[mask], 95))
    profile = column_profile(frame, mask, centre, 0.08 * mouth_width)
    if profile.size == 0:
        return False
    reach = (profile.size - 1) // 2
    inside = profile[reach:]  # 0 = lower edge, upwards
    near = inside[: max(3, int(round(0.05 * mouth_width)))]
    if near.max() < 0.75 * teeth:
        return False
    # the teeth are a crest of their own above the lip's edge, not the lip fading inwards
    top = int(np.argmax(near))
    if top == 0 or near[top] < near[0] + 0.03 * teeth:
        return False
    dark = inside[top : top + int(round(0.25 * mouth_width))]
    return bool(dark.size and dark.min() < 0.6 * near.max())


def inner_lower_lip_rim(
    frame: np.ndarray, mask: np.ndarray, mouth_width: float, centre: float
) -> float:
    """How much darker the band where the open mouth meets the lower lip is than both what
    lies just inside the mouth and the lip itself, over the lip's brightness (0: no rim).

    A real mouth darkens monotonically from the lip into the cavity, or brightens onto teeth;
    a band darker than both sides is an outline."""
    profile = column_profile(frame, mask, centre, 0.25 * mouth_width)
    if profile.size == 0:
        return 0.0
    reach = (profile.size - 1) // 2
    near = max(2, int(round(0.025 * mouth_width)))
    far = max(near + 2, int(round(0.07 * mouth_width)))
    band = profile[reach - near : reach + near + 1].min()
    lip = profile[reach - far : reach - near].mean()
    inside = profile[reach + near : reach + far].mean()
    return float(max(min(lip, inside) - band, 0.0) / max(lip, 1.0))


def teeth_over_skin(frame: np.ndarray, teeth_region: np.ndarray, points: np.ndarray) -> float:
    """Median brightness of the teeth (the brightest pixels of the region) over the skin's
    around the mouth."""
    y = luma(frame)
    if teeth_region.sum() < 20:
        return 0.0
    teeth = teeth_region & (y >= 0.7 * np.percentile(y[teeth_region], 95))
    return float(np.median(y[teeth]) / max(float(np.median(y[skin_ring(frame, points)])), 1.0))


def crown_edges(
    rgb: np.ndarray, alpha: np.ndarray, u: np.ndarray
) -> list[tuple[float, float, float]]:
    """(u at its middle, width in columns, biting edge's row) of each painted upper crown,
    from the midline outwards.

    `rgb` and `alpha` are an upper-teeth layer (opaque over the teeth) with rows across the
    mouth and columns along it, `u` each pixel's position along it. Per column: the row where
    the coverage falls through one half (sub-pixel), and the teeth's brightness just above
    it. Crowns are the runs of columns between the dark slits where neighbours meet; a
    crown's edge is the median over its middle half.
    """
    edges = np.full(alpha.shape[1], np.nan)
    shine = np.full(alpha.shape[1], np.nan)
    y = luma(rgb)
    above = max(3, alpha.shape[0] // 40)
    for col in range(alpha.shape[1]):
        solid = np.flatnonzero(alpha[:, col] >= 0.5)
        if solid.size == 0 or solid[-1] + 1 >= alpha.shape[0]:
            continue
        last = int(solid[-1])
        a0, a1 = float(alpha[last, col]), float(alpha[last + 1, col])
        edges[col] = last + (a0 - 0.5) / max(a0 - a1, 1e-6)
        shine[col] = float(y[max(last - above, 0) : last, col].mean())
    cols = np.flatnonzero(np.isfinite(edges))
    if cols.size < 8:
        return []
    profile = shine[cols]
    # a slit is the darkest column for a fiftieth of the row around it (not a ripple)
    k = max(1, alpha.shape[1] // 50)
    slits = [
        i
        for i in range(k, cols.size - k)
        if profile[i] == profile[i - k : i + k + 1].min() and profile[i] < profile[i + 1]
    ]
    middle_u = np.median(u, axis=0)
    crowns = []
    for a, b in zip(slits, slits[1:], strict=False):
        quarter = (b - a) // 4
        middle = cols[a + quarter : b - quarter + 1]
        if b - a >= 2:
            crowns.append(
                (float(np.mean(middle_u[middle])), float(b - a), float(np.median(edges[middle])))
            )
    return sorted(crowns, key=lambda crown: abs(crown[0]))
