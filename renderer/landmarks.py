"""Face landmarks with the MediaPipe Tasks FaceLandmarker (478 points, lip rings, blendshapes).

The model file (Google's face_landmarker.task, Apache-2.0) ships in this package under
renderer/models/ with its licence notice, so nothing is downloaded at run time.
ATLAS_FACE_LANDMARKER_MODEL points at another copy.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderer.errors import ModelError

MODEL_ENV = "ATLAS_FACE_LANDMARKER_MODEL"

# MediaPipe FaceMesh indices used across the renderer and the lip-sync measurements.
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
INNER_UPPER_MID, INNER_LOWER_MID = 13, 14
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# (outer corner, inner corner, upper lid, lower lid) for each eye
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))


@dataclass(frozen=True, slots=True)
class DetectedFace:
    points: np.ndarray  # (478, 2) float32 pixel coordinates
    blendshapes: dict[str, float]

    @property
    def box(self) -> tuple[float, float, float, float]:
        x0, y0 = self.points.min(axis=0)
        x1, y1 = self.points.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def width(self) -> float:
        x0, _, x1, _ = self.box
        return x1 - x0

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return (x1 - x0) * (y1 - y0)


BUNDLED_MODEL = Path(__file__).parent / "models" / "face_landmarker.task"


def model_path() -> Path:
    override = os.environ.get(MODEL_ENV)
    path = Path(override) if override else BUNDLED_MODEL
    if not path.is_file():
        raise ModelError(f"face landmarker model missing at {path} (set {MODEL_ENV})")
    return path


class FaceLandmarker:
    """Thread-safe wrapper; one MediaPipe graph per instance, calls serialised by a lock."""

    def __init__(self, *, max_faces: int = 4) -> None:
        # MediaPipe's C++ logging goes straight to stderr; keep it to warnings and worse.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path())),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            output_face_blendshapes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        import mediapipe as mp

        height, width = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with self._lock:
            result = self._landmarker.detect(image)
        faces = []
        for i, landmarks in enumerate(result.face_landmarks):
            points = np.array([[p.x * width, p.y * height] for p in landmarks], dtype=np.float32)
            shapes = {}
            if result.face_blendshapes:
                shapes = {c.category_name: float(c.score) for c in result.face_blendshapes[i]}
            faces.append(DetectedFace(points=points, blendshapes=shapes))
        return faces

    def close(self) -> None:
        with self._lock:
            self._landmarker.close()


_shared: FaceLandmarker | None = None
_shared_lock = threading.Lock()


def shared_landmarker() -> FaceLandmarker:
    """One landmarker per process, built on first use (never at import)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FaceLandmarker()
            _close_before_thread_pools_stop(_shared.close)
        return _shared


def _close_before_thread_pools_stop(close: Callable[[], None]) -> None:
    """MediaPipe closes through a thread pool; at exit that pool stops before plain atexit
    hooks run, and its finaliser then fails noisily. threading's own exit hooks run first
    (newest first), so register there when this CPython has them."""
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(close)
    else:
        register(close)
