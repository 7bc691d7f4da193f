from __future__ import annotations

import numpy as np
import pytest

from renderer import FaceAsset, RendererOptions, StreamRenderer
from renderer.landmarks import FaceLandmarker, shared_landmarker
from renderer.stream import RenderedFrame


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


def render_all(
    face: FaceAsset,
    pcm: np.ndarray,
    rate: int,
    options: RendererOptions,
    *,
    chunk: int | None = None,
    idle_after: int = 0,
) -> list[RenderedFrame]:
    """Push `pcm` (in chunks), flush, pull every speech frame, then `idle_after` idle frames."""
    renderer = StreamRenderer(face=face, options=options)
    frames: list[RenderedFrame] = []
    step = chunk or len(pcm)
    for start in range(0, len(pcm), step):
        renderer.push_audio(pcm[start : start + step], sample_rate=rate)
        while (frame := renderer.pull()) is not None:
            frames.append(frame)
    renderer.flush()
    while (frame := renderer.pull()) is not None:
        frames.append(frame)
    frames.extend(renderer.next_frame() for _ in range(idle_after))
    renderer.close()
    return frames
