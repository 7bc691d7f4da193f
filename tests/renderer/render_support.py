"""Rendering helpers for the renderer's tests."""

from __future__ import annotations

import numpy as np

from renderer import FaceAsset, RendererOptions, StreamRenderer
from renderer.stream import RenderedFrame


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
