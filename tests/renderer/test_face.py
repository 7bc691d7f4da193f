"""FaceAsset.prepare on good and bad photos: every failure is typed and says why."""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from renderer import (
    FaceAsset,
    FaceTooSmallError,
    ImageDecodeError,
    ImageTooLargeError,
    NoFaceError,
    RendererInputError,
    RendererOptions,
    UnsupportedMediaError,
)
from renderer.face import MIN_FACE_PX
from renderer.image_io import sniff_image_format


@pytest.fixture(scope="module")
def photo(face_bytes: bytes) -> Image.Image:
    return Image.open(io.BytesIO(face_bytes)).convert("RGB")


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions and carries almost no data (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_prepares_a_framed_face(face: FaceAsset) -> None:
    assert face.image.shape == (512, 512, 3) and face.image.dtype == np.uint8
    assert face.landmarks.shape == (478, 2)
    cx, cy = face.landmarks.mean(axis=0)
    assert 180 < cx < 330 and 160 < cy < 350, "the face sits in the middle of the frame"
    assert 60 < face.mouth_width < 160


def test_keep_framing_keeps_the_whole_photo(face_bytes: bytes, photo: Image.Image) -> None:
    kept = FaceAsset.prepare(face_bytes, options=RendererOptions(size=512, keep_framing=True))
    height, width = kept.image.shape[:2]
    assert max(width, height) == 512 and width % 2 == 0 and height % 2 == 0
    assert width / height == pytest.approx(photo.width / photo.height, rel=0.01)


def test_serialises_and_restores_exactly(face: FaceAsset) -> None:
    restored = FaceAsset.from_bytes(face.to_bytes())
    assert np.array_equal(restored.image, face.image)
    assert np.array_equal(restored.landmarks, face.landmarks)
    assert restored.source_size == face.source_size


@pytest.mark.parametrize(
    ("fmt", "mode", "params"),
    [
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "L", {}),
        ("JPEG", "CMYK", {"quality": 92}),
        ("JPEG", "L", {"quality": 92}),
        ("WEBP", "RGB", {"quality": 90}),
        ("WEBP", "RGBA", {"quality": 90}),
    ],
)
def test_accepts_formats_and_colour_modes(
    photo: Image.Image, face: FaceAsset, fmt: str, mode: str, params: dict[str, object]
) -> None:
    image = photo.convert(mode)
    if mode == "RGBA":
        alpha = Image.new("L", photo.size, 255)
        alpha.paste(0, (0, 0, 40, 40))  # a transparent corner, composited on white
        image.putalpha(alpha)
    prepared = FaceAsset.prepare(_encode(image, fmt, **params))
    assert prepared.image.shape == (512, 512, 3)
    assert prepared.mouth_width == pytest.approx(face.mouth_width, rel=0.06)


def test_sixteen_bit_grayscale(photo: Image.Image) -> None:
    gray16 = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16))
    prepared = FaceAsset.prepare(_encode(gray16, "PNG"))
    assert prepared.image.shape == (512, 512, 3)


def test_honours_exif_orientation(photo: Image.Image, face: FaceAsset) -> None:
    # Stored sideways, with EXIF saying "rotate 90 CW to display" (orientation 6).
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    prepared = FaceAsset.prepare(_encode(sideways, "JPEG", quality=95, exif=exif.tobytes()))
    assert prepared.source_size == (photo.width, photo.height)
    assert prepared.mouth_width == pytest.approx(face.mouth_width, rel=0.06)
    left, right = prepared.landmarks[61], prepared.landmarks[291]
    assert abs(left[1] - right[1]) < 0.1 * prepared.mouth_width, "the mouth is level: upright"


def test_downscales_huge_photos(photo: Image.Image) -> None:
    big = photo.resize((photo.width * 5, photo.height * 5))
    prepared = FaceAsset.prepare(_encode(big, "JPEG", quality=80))
    assert max(prepared.source_size) <= 2048


def test_no_face(photo: Image.Image) -> None:
    blank = Image.new("RGB", (400, 400), (180, 160, 150))
    with pytest.raises(NoFaceError, match="no face detected"):
        FaceAsset.prepare(_encode(blank, "PNG"))


def test_face_too_small_names_the_minimum(photo: Image.Image) -> None:
    small = photo.resize((int(photo.width * 0.4), int(photo.height * 0.4)))
    canvas = Image.new("RGB", (600, 600), (120, 130, 140))
    canvas.paste(small, (100, 100))
    with pytest.raises(FaceTooSmallError) as caught:
        FaceAsset.prepare(_encode(canvas, "PNG"))
    assert caught.value.min_px == MIN_FACE_PX
    assert f"minimum is {MIN_FACE_PX} px" in str(caught.value)


def test_several_faces_use_the_largest_and_say_so(
    photo: Image.Image, face: FaceAsset, caplog: pytest.LogCaptureFixture
) -> None:
    canvas = Image.new("RGB", (1100, 700), (120, 130, 140))
    canvas.paste(photo, (0, 50))
    canvas.paste(photo.resize((300, 352)), (700, 100))
    with caplog.at_level(logging.INFO, logger="renderer"):
        prepared = FaceAsset.prepare(_encode(canvas, "PNG"))
    assert any("several faces" in r.getMessage() for r in caplog.records)
    assert prepared.mouth_width == pytest.approx(face.mouth_width, rel=0.06)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", ImageDecodeError, "empty"),
        (b"GIF89a" + b"\x00" * 64, UnsupportedMediaError, "PNG, JPEG or WebP"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", UnsupportedMediaError, "PNG, JPEG or WebP"),
        (_png_header_only(40_000, 40_000), ImageTooLargeError, "too large"),
        (_png_header_only(8000, 8000), ImageTooLargeError, "too large"),
    ],
)
def test_bad_bytes_get_typed_errors(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        FaceAsset.prepare(data)


def test_truncated_jpeg(face_bytes: bytes) -> None:
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        FaceAsset.prepare(face_bytes[: len(face_bytes) // 3])


def test_every_input_error_is_a_renderer_input_error() -> None:
    for error in (ImageDecodeError, UnsupportedMediaError, ImageTooLargeError, NoFaceError):
        assert issubclass(error, RendererInputError)


def test_sniffs_by_content_not_name(face_bytes: bytes, photo: Image.Image) -> None:
    assert sniff_image_format(face_bytes) == "jpeg"
    assert sniff_image_format(_encode(photo, "PNG")) == "png"
    assert sniff_image_format(_encode(photo, "WEBP")) == "webp"
    assert sniff_image_format(b"RIFF\x00\x00\x00\x00WAVE") is None
