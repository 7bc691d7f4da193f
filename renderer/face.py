"""A face photo prepared once: decoded, framed and landmarked; cacheable and serialisable."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from renderer.errors import FaceTooSmallError, ImageDecodeError, NoFaceError
from renderer.image_io import decode_image
from renderer.landmarks import (
    MOUTH_LEFT,
    MOUTH_RIGHT,
    DetectedFace,
    FaceLandmarker,
    shared_landmarker,
)
from renderer.options import RendererOptions

logger = logging.getLogger("renderer")

MIN_FACE_PX = 80  # landmark box width in the photo; smaller faces upscale into mush
# The framed crop is this many face heights tall (head, hair and a little shoulder).
FRAMING_SCALE = 1.9
_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FaceAsset:
    image: np.ndarray  # (H, W, 3) uint8 RGB, already framed to the output size
    landmarks: np.ndarray  # (478, 2) float32, pixel coordinates in `image`
    source_size: tuple[int, int]  # (width, height) of the decoded photo

    @classmethod
    def prepare(
        cls,
        image_bytes: bytes,
        *,
        options: RendererOptions | None = None,
        landmarker: FaceLandmarker | None = None,
    ) -> FaceAsset:
        """Decode, find the largest face and frame it; raises typed RendererInputErrors."""
        options = options or RendererOptions()
        photo = decode_image(image_bytes)
        faces = (landmarker or shared_landmarker()).detect(photo)
        if not faces:
            raise NoFaceError()
        face = max(faces, key=lambda f: f.area)
        if len(faces) > 1:
            logger.info("several faces found; using the largest", extra={"faces": len(faces)})
        if face.width < MIN_FACE_PX:
            raise FaceTooSmallError(face_px=round(face.width), min_px=MIN_FACE_PX)
        matrix, out_size = _framing(photo.shape[1], photo.shape[0], face, options)
        image = cv2.warpAffine(
            photo,
            matrix,
            out_size,
            flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
        points = face.points @ matrix[:, :2].T + matrix[:, 2]
        return cls(
            image=image,
            landmarks=points.astype(np.float32),
            source_size=(photo.shape[1], photo.shape[0]),
        )

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the rendered frames."""
        return self.image.shape[1], self.image.shape[0]

    @property
    def mouth_width(self) -> float:
        return float(np.linalg.norm(self.landmarks[MOUTH_RIGHT] - self.landmarks[MOUTH_LEFT]))

    def to_bytes(self) -> bytes:
        """A compact, self-describing blob (npz) for caches and for sharing across processes."""
        ok, png = cv2.imencode(".png", cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ImageDecodeError("could not encode the prepared face")
        meta = {"version": _FORMAT_VERSION, "source_size": list(self.source_size)}
        buffer = io.BytesIO()
        np.savez(
            buffer,
            image_png=png,
            landmarks=self.landmarks,
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> FaceAsset:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            if meta.get("version") != _FORMAT_VERSION:
                raise ImageDecodeError("prepared face has an unknown format version")
            bgr = cv2.imdecode(data["image_png"], cv2.IMREAD_COLOR)
            if bgr is None:
                raise ImageDecodeError("prepared face is corrupt")
            landmarks = data["landmarks"].astype(np.float32)
        width, height = meta["source_size"]
        return cls(
            image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            landmarks=landmarks,
            source_size=(int(width), int(height)),
        )


def _framing(
    width: int, height: int, face: DetectedFace, options: RendererOptions
) -> tuple[np.ndarray, tuple[int, int]]:
    """Affine map from the photo to the output frame, and the output (width, height)."""
    if options.keep_framing:
        scale = options.size / max(width, height)
        out_w = max(2, round(width * scale) // 2 * 2)
        out_h = max(2, round(height * scale) // 2 * 2)
        matrix = np.array([[out_w / width, 0, 0], [0, out_h / height, 0]], dtype=np.float64)
        return matrix, (out_w, out_h)
    x0, y0, x1, y1 = face.box
    side = min(FRAMING_SCALE * max(x1 - x0, y1 - y0), float(min(width, height)))
    # Keep the crop inside the photo where possible: replicated borders look worse than an
    # off-centre face.
    left = float(np.clip((x0 + x1) / 2 - side / 2, 0, width - side))
    top = float(np.clip((y0 + y1) / 2 - side / 2, 0, height - side))
    scale = options.size / side
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], dtype=np.float64)
    return matrix, (options.size, options.size)
