"""The one interface every lip-sync backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from renderer.audio import MouthShape
from renderer.face import FaceAsset


class PreparedFace(Protocol):
    """Backend-specific state for one face, built once by Backend.prepare."""

    @property
    def face(self) -> FaceAsset: ...


class Backend(Protocol):
    name: str

    @property
    def provider(self) -> str:
        """Where the pixels are computed, for logs and benchmarks (e.g. CPUExecutionProvider)."""
        ...

    def prepare(self, face: FaceAsset) -> PreparedFace: ...

    def render(self, prepared: PreparedFace, mouth: MouthShape) -> np.ndarray:
        """A new (H, W, 3) uint8 RGB frame of `prepared.face` with this mouth shape."""
        ...

    def close(self) -> None: ...
