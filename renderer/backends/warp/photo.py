"""What the photo says about itself, measured once per face: colours, grain and sharpness.

Whatever the renderer synthesises inside the mouth takes its colours, noise and blur from these
measurements, so it looks like part of the same photograph.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from renderer.landmarks import INNER_LOWER, OUTER_LOWER, OUTER_UPPER

# Eye rings of the 478-point mesh: their brightest pixels are the whites of the eyes, the best
# reference in the photo for the colour and exposure of teeth.
LEFT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
RIGHT_EYE_RING = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
EYE_CENTRES = ((33, 133), (362, 263))
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


@dataclass(frozen=True, slots=True)
class PhotoLook:
    lip: np.ndarray  # (3,) mean RGB of the lower lip
    skin: np.ndarray  # (3,) mean RGB of the skin around the mouth
    sclera: np.ndarray  # (3,) RGB of the whites of the eyes (teeth reference)
    noise: float  # grain: standard deviation of pixel noise, in 8-bit levels
    sharpness: float  # Gaussian sigma (px) that a crisp synthetic edge needs to match the photo


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres (mean of each eye's corners), in pixels."""
    (a, b), (c, d) = EYE_CENTRES
    return float(np.linalg.norm((points[a] + points[b]) / 2 - (points[c] + points[d]) / 2))


def polygon_mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))


def noise_sigma(gray: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pixel noise, robust to edges and texture: median |Laplacian-of-Laplacian| (Immerkaer).

    For white noise of sigma s the kernel's response has standard deviation 6 s; the median of
    its absolute value is 0.6745 of that.
    """
    response = np.abs(cv2.filter2D(gray.astype(np.float32), -1, _NOISE_KERNEL))[1:-1, 1:-1]
    if mask is not None:
        response = response[mask[1:-1, 1:-1]]
    if response.size < 16:
        return 0.0
    return float(np.median(response) / (0.6745 * 6.0))


def band_ratio(gray: np.ndarray, mask: np.ndarray, noise: float = 0.0) -> float:
    """Energy of the finest detail band over the next coarser one: falls as a photo blurs."""
    g = gray.astype(np.float32)
    b1 = cv2.GaussianBlur(g, (0, 0), 0.7)
    b2 = cv2.GaussianBlur(g, (0, 0), 1.4)
    b3 = cv2.GaussianBlur(g, (0, 0), 2.8)
    fine = float(np.mean((b1 - b2)[mask] ** 2)) - noise**2 * _fine_band_noise_gain()
    coarse = float(np.mean((b2 - b3)[mask] ** 2)) + 1e-6
    return max(fine, 1e-6) / coarse


def _fine_band_noise_gain() -> float:
    """Energy the fine band passes from white noise of unit variance (filter's squared norm)."""
    delta = np.zeros((33, 33), np.float32)
    delta[16, 16] = 1.0
    response = cv2.GaussianBlur(delta, (0, 0), 0.7) - cv2.GaussianBlur(delta, (0, 0), 1.4)
    return float(np.sum(response**2))


def mouth_surroundings(
    shape: tuple[int, ...], points: np.ndarray, mouth_width: float
) -> np.ndarray:
    """Skin around the lips: the lips' hull grown by a third of the mouth width, lips removed."""
    lips = np.concatenate([points[list(OUTER_UPPER)], points[list(OUTER_LOWER)]])
    hull = cv2.convexHull(np.round(lips).astype(np.int32))
    inner = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(inner, hull, 1)
    radius = max(2, int(round(mouth_width / 3)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(inner, kernel)
    near = cv2.dilate(inner, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    ring: np.ndarray = (grown > 0) & (near == 0)
    return ring


def measure_look(image: np.ndarray, points: np.ndarray, mouth_width: float) -> PhotoLook:
    ring = mouth_surroundings(image.shape, points, mouth_width)
    gray = luma(image)
    lower_lip = polygon_mask(
        image.shape, np.concatenate([points[list(OUTER_LOWER)], points[list(INNER_LOWER)][::-1]])
    )
    lip = image[lower_lip].mean(axis=0) if lower_lip.sum() >= 4 else np.array([150.0, 80, 80])
    skin = image[ring].mean(axis=0) if ring.sum() >= 4 else lip * 1.2
    noise = noise_sigma(gray, ring)
    lips_and_skin = cv2.dilate(ring.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return PhotoLook(
        lip=np.asarray(lip, np.float64),
        skin=np.asarray(skin, np.float64),
        sclera=_sclera(image, points, skin),
        noise=noise,
        sharpness=_matching_blur(band_ratio(gray, lips_and_skin, noise)),
    )


def _sclera(image: np.ndarray, points: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The whites of the eyes: the brighter, less saturated pixels inside the eye rings."""
    pixels = [
        image[polygon_mask(image.shape, points[list(r)])] for r in (LEFT_EYE_RING, RIGHT_EYE_RING)
    ]
    eye = np.concatenate(pixels).astype(np.float64)
    if len(eye) < 12:
        return np.clip(skin * 1.6, 0, 235)
    y = luma(eye)
    sat = eye.max(axis=1) - eye.min(axis=1)
    # whites: bright for the eye, without glints (the very brightest) and without the iris
    lo, hi = np.percentile(y, [85, 98])
    pick = (y >= lo) & (y <= hi) & (sat <= np.percentile(sat, 60))
    if pick.sum() < 4:
        pick = y >= lo
    return np.asarray(eye[pick].mean(axis=0), np.float64)


def _matching_blur(photo_ratio: float) -> float:
    """The blur sigma whose effect on a crisp step pattern gives the photo's band ratio."""
    pattern = np.zeros((48, 48), np.float32)
    pattern[:, 12:20] = 200.0
    pattern[:, 30:33] = 200.0
    pattern[20:28, :] += 80.0
    mask = np.ones(pattern.shape, bool)
    best, best_err = 0.5, float("inf")
    for sigma in (0.35, 0.5, 0.7, 0.9, 1.1, 1.4, 1.8, 2.3):
        ratio = band_ratio(cv2.GaussianBlur(pattern, (0, 0), sigma), mask)
        err = abs(np.log(ratio) - np.log(max(photo_ratio, 1e-4)))
        if err < best_err:
            best, best_err = sigma, err
    return best
