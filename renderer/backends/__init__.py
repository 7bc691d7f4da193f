"""Lip-sync backends behind one protocol; `create_backend` picks one from the options."""

from __future__ import annotations

from renderer.backends.base import AudioBackend, Backend, BatchingBackend
from renderer.options import RendererOptions


def create_backend(options: RendererOptions) -> Backend:
    if options.backend == "warp":
        from renderer.backends.warp import WarpBackend

        return WarpBackend(options=options)
    if options.backend == "wav2lip":
        from renderer.backends.wav2lip.backend import Wav2LipBackend

        return Wav2LipBackend(options=options)
    raise ValueError(f"unknown renderer backend {options.backend!r}")


__all__ = ["AudioBackend", "Backend", "BatchingBackend", "create_backend"]
