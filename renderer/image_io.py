"""Decode untrusted image bytes into an upright RGB array, safely."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from renderer.errors import ImageDecodeError, ImageTooLargeError, UnsupportedMediaError

# Above this many pixels we refuse before decoding (a 50 MB PNG can declare billions).
MAX_IMAGE_PIXELS = 50_000_000
# Faces are found and framed on at most this many pixels per side; more adds nothing.
MAX_WORKING_SIDE = 2048

_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("png", b"\x89PNG\r\n\x1a\n", 0),
    ("jpeg", b"\xff\xd8\xff", 0),
    ("webp", b"WEBP", 8),
)


def sniff_image_format(data: bytes) -> str | None:
    """'png', 'jpeg' or 'webp' from the leading bytes; None for anything else."""
    for name, magic, offset in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if name == "webp" and data[:4] != b"RIFF":
                continue
            return name
    return None


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/WebP bytes -> (H, W, 3) uint8 RGB, EXIF-upright, alpha flattened on white."""
    if not data:
        raise ImageDecodeError("image is empty")
    if sniff_image_format(data) is None:
        raise UnsupportedMediaError("unsupported image format: use PNG, JPEG or WebP")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageTooLargeError(
                    f"image is too large: {image.width}x{image.height} px, "
                    f"the limit is {MAX_IMAGE_PIXELS // 1_000_000} megapixels"
                )
            image.draft("RGB", (MAX_WORKING_SIDE, MAX_WORKING_SIDE))  # JPEG: decode scaled
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("image is too large to decode safely") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("image could not be decoded (truncated or corrupt)") from exc
    if max(rgb.size) > MAX_WORKING_SIDE:
        rgb.thumbnail((MAX_WORKING_SIDE, MAX_WORKING_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8).copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(image, dtype=np.float32)
        peak = max(float(arr.max()), 1.0)
        gray = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8))
        return gray.convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGB
