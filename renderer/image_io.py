"""Decode untrusted image bytes into an upright RGB array, safely."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from renderer.errors import ImageDecodeError, ImageTooLargeError, UnsupportedMediaError

# Above this many pixels we refuse before decoding (a 50 MB PNG can declare billions).
MAX_IMAGE_PIXELS = 50_000_000
# PNG and WebP decode at full size (only JPEG decodes scaled), so they get a tighter bound on what
# one decode may allocate: 4096 x 4096, 64 MiB as RGBA.
MAX_FULL_DECODE_PIXELS = 4096 * 4096
# Faces are found and framed on at most this many pixels per side; more adds nothing.
MAX_WORKING_SIDE = 2048
# What decode_image and a face check hold at their peak per decoded pixel (measured, Pillow 13 and
# OpenCV for WebP: about two full-size copies for each format), and besides.
_PEAK_BYTES_PER_PIXEL = {"webp": 11, "png": 9, "jpeg": 9}
_PEAK_FIXED_BYTES = 30 * 1024 * 1024
# EXIF orientation -> the transpose that makes the photo upright.
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_REDUCIBLE = {"L", "LA", "RGB", "RGBA", "I", "F"}

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


def decode_peak_bytes(data: bytes) -> int:
    """About the most memory decode_image(data) (and a face check) will hold, from the header.

    0 for anything decode_image would refuse before decoding (no header, too many pixels).
    """
    fmt = sniff_image_format(data[:16])
    if fmt is None:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                _check_size(image.width, image.height, fmt)
                image.draft("RGB", (MAX_WORKING_SIDE, MAX_WORKING_SIDE))  # JPEG: the scaled size
                pixels = image.width * image.height
    except (Image.DecompressionBombError, ImageTooLargeError, OSError, SyntaxError, ValueError):
        return 0
    return pixels * _PEAK_BYTES_PER_PIXEL[fmt] + _PEAK_FIXED_BYTES


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/WebP bytes -> (H, W, 3) uint8 RGB, EXIF-upright, alpha flattened on white.

    At most MAX_WORKING_SIDE per side. Memory is bounded: sizes are checked from the header before
    decoding, JPEG decodes already scaled down, and the full-size decode of other formats is
    shrunk before any other copy (orientation, alpha) is made.
    """
    if not data:
        raise ImageDecodeError("image is empty")
    fmt = sniff_image_format(data)
    if fmt is None:
        raise UnsupportedMediaError("unsupported image format: use PNG, JPEG or WebP")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image.width, image.height, fmt)
            image.draft("RGB", (MAX_WORKING_SIDE, MAX_WORKING_SIDE))  # JPEG: decode scaled
            orientation = image.getexif().get(0x0112)
            small = _shrink_webp(data, image.size) if fmt == "webp" else _shrink(image)
            del image
            upright = (
                small.transpose(_ORIENTATIONS[orientation])
                if orientation in _ORIENTATIONS
                else small
            )
            rgb = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError("image is too large to decode safely") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("image could not be decoded (truncated or corrupt)") from exc
    return np.asarray(rgb, dtype=np.uint8).copy()


def _check_size(width: int, height: int, fmt: str) -> None:
    limit = MAX_IMAGE_PIXELS if fmt == "jpeg" else MAX_FULL_DECODE_PIXELS
    if width * height > limit:
        raise ImageTooLargeError(
            f"image is too large: {width}x{height} px, the limit for {fmt.upper()} is "
            f"{limit / 1_000_000:.1f} megapixels"
        )


def _shrink(image: Image.Image) -> Image.Image:
    """Decode, and fit in MAX_WORKING_SIDE at once, so only one full-size buffer ever lives."""
    image.load()
    width, height = image.size
    if max(width, height) <= MAX_WORKING_SIDE:
        return image
    if image.mode not in _REDUCIBLE:  # P, 1, CMYK, I;16...: to a mode resize() reduces
        image = image.convert("RGBA") if image.mode in {"P", "PA"} else _to_rgb(image)
    factor = max(width, height) // MAX_WORKING_SIDE
    if factor >= 2:  # a cheap integer box reduction, then the full-size buffer can go
        image = image.reduce(factor)
        width, height = image.size
        if max(width, height) <= MAX_WORKING_SIDE:
            return image
    scale = MAX_WORKING_SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _shrink_webp(data: bytes, size: tuple[int, int]) -> Image.Image:
    """WebP through OpenCV: one full-size buffer (Pillow's decoder holds three, ~280 MB at
    4096 px), area-averaged down to MAX_WORKING_SIDE, as RGB or RGBA."""
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError("WebP could not be decoded")
    width, height = size
    if max(width, height) > MAX_WORKING_SIDE:
        scale = MAX_WORKING_SIDE / max(width, height)
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L")
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return Image.fromarray(cv2.cvtColor(pixels, code))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))  # alpha over white, one RGB buffer
        return canvas
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        arr = np.asarray(image, dtype=np.float32)
        peak = max(float(arr.max()), 1.0)
        gray = Image.fromarray((arr * (255.0 / peak)).astype(np.uint8))
        return gray.convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGB
