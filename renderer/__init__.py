"""Lip-sync rendering: pure compute, no LiveKit and no web.

Public surface: RendererOptions, FaceAsset, StreamRenderer, RenderedFrame, render_file and the
typed errors in renderer.errors.
"""

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
