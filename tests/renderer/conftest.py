from __future__ import annotations

import pytest

from renderer import FaceAsset, RendererOptions
from renderer.landmarks import FaceLandmarker, shared_landmarker


@pytest.fixture(scope="session")
def landmarker() -> FaceLandmarker:
    return shared_landmarker()


@pytest.fixture(scope="session")
def still_options() -> RendererOptions:
    """No idle motion: every pixel outside the mouth must stay the photo's."""
    return RendererOptions(idle_motion=False)


@pytest.fixture(scope="session")
def face(face_bytes: bytes) -> FaceAsset:
    return FaceAsset.prepare(face_bytes)
