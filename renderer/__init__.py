"""Lip-sync rendering: pure compute, no LiveKit and no web.

Public surface: RendererOptions, FaceAsset, StreamRenderer, RenderedFrame, render_file and the
typed errors in renderer.errors. Names load on first use, so importing a light module such as
renderer.settings does not pull in PyAV, OpenCV or MediaPipe.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from renderer.errors import (
        AudioDecodeError,
        FaceTooSmallError,
        ImageDecodeError,
        ImageTooLargeError,
        NoFaceError,
        RendererError,
        RendererInputError,
        UnsupportedMediaError,
    )
    from renderer.face import FaceAsset
    from renderer.offline import RenderResult, render_file
    from renderer.options import RendererOptions
    from renderer.stream import RenderedFrame, StreamRenderer

_HOMES = {
    "AudioDecodeError": "renderer.errors",
    "FaceTooSmallError": "renderer.errors",
    "ImageDecodeError": "renderer.errors",
    "ImageTooLargeError": "renderer.errors",
    "NoFaceError": "renderer.errors",
    "RendererError": "renderer.errors",
    "RendererInputError": "renderer.errors",
    "UnsupportedMediaError": "renderer.errors",
    "FaceAsset": "renderer.face",
    "RenderResult": "renderer.offline",
    "render_file": "renderer.offline",
    "RendererOptions": "renderer.options",
    "RenderedFrame": "renderer.stream",
    "StreamRenderer": "renderer.stream",
}
__all__ = [
    "AudioDecodeError",
    "FaceAsset",
    "FaceTooSmallError",
    "ImageDecodeError",
    "ImageTooLargeError",
    "NoFaceError",
    "RenderResult",
    "RenderedFrame",
    "RendererError",
    "RendererInputError",
    "RendererOptions",
    "StreamRenderer",
    "UnsupportedMediaError",
    "render_file",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'renderer' has no attribute {name!r}")
