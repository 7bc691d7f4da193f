"""The one interface every lip-sync backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from renderer.audio import MouthShape
from renderer.face import FaceAsset

if TYPE_CHECKING:
    from renderer.backends.wav2lip.batching import BatchLoop


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


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioSpan:
    """How much of a speech segment an audio-driven backend reads around each frame."""

    history_s: float  # before the frame's own slice starts
    lookahead_s: float  # after the frame's own slice ends (adds to the stream's latency)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FrameAudio:
    """The speech around one frame, at the stream's sample rate, mono float32.

    Positions count samples from the start of the frame's speech segment (a segment is what lies
    between two flush() calls). `samples` starts at `origin` and holds what the stream has of the
    segment up to the frame's slice plus the backend's lookahead; `end` is the segment's length
    when the segment is closed and ends inside `samples`, else None.
    """

    samples: np.ndarray
    origin: int
    frame_start: int
    end: int | None
    sample_rate: int
    fps: int

    @property
    def frame(self) -> int:
        """Index of this frame within its segment."""
        return self.frame_start * self.fps // self.sample_rate


@runtime_checkable
class AudioBackend(Backend, Protocol):
    """A backend that reads each speech frame's audio itself (e.g. a neural model's mel window)."""

    @property
    def audio_span(self) -> AudioSpan: ...

    def render_audio(
        self, prepared: PreparedFace, mouth: MouthShape, audio: FrameAudio | None
    ) -> np.ndarray:
        """Like render(); `audio` is None on idle frames (no speech queued)."""
        ...


@runtime_checkable
class BatchingBackend(Protocol):
    """A backend whose frames run through one inference loop shared by every stream of the
    process: `batch_loop.stats()` and `batch_loop.on_batch` show how well they batch."""

    @property
    def batch_loop(self) -> BatchLoop[Any, Any]: ...
