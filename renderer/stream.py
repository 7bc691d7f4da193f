"""StreamRenderer: push PCM, pull frames at fps, each with its exact audio slice.

Contract:
- push_audio() takes PCM at any rate and channel count; it is resampled to options.sample_rate.
- pull() returns the next speech frame once its audio slice plus `lookahead_s` more has arrived
  (the whole algorithmic latency; a resampler adds its own small filter delay when rates differ).
  An audio-driven backend (AudioBackend, e.g. wav2lip) may ask for a longer lookahead, and for
  some history; it then gets each speech frame's FrameAudio.
- flush() ends a speech segment: the rest is rendered, the last slice zero-padded to a whole
  frame so audio and video clocks never drift, and that frame has segment_end=True.
- clear() drops all queued audio at once; the mouth is closed within `clear_latency_s`.
- next_frame() never blocks: a speech frame if one is ready, else an idle frame (mouth at rest,
  blinking and breathing).
- set_face() crossfades to a new face over options.crossfade_s, one frame per call as ever.

Not thread-safe: drive one instance from one thread (the agent uses a single render thread).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from renderer.audio import (
    LOOKAHEAD_S,
    FeatureExtractor,
    MouthShape,
    MouthTracker,
    StreamResampler,
    float_to_int16,
    to_mono_float,
)
from renderer.backends import Backend, create_backend
from renderer.backends.base import AudioBackend, FrameAudio, PreparedFace
from renderer.compose import EyeRegion, IdleMotion, crossfade, prepare_eyes
from renderer.face import FaceAsset
from renderer.options import RendererOptions

CLEAR_RAMP_FRAMES = 2  # after clear() the mouth is shut by the second frame


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RenderedFrame:
    index: int  # position on the stream's frame clock (speech and idle frames alike)
    image: np.ndarray  # (H, W, 3) uint8 RGB
    audio: np.ndarray | None  # int16 mono, samples_per_frame long; None on idle frames
    mouth: MouthShape
    fps: int
    segment_end: bool = False

    @property
    def timestamp_s(self) -> float:
        return self.index / self.fps


@dataclass(slots=True, eq=False)
class _Segment:
    """Queued audio of one speech segment: pushed chunks, read without re-copying the queue."""

    chunks: deque[np.ndarray] = field(default_factory=deque)
    head: int = 0  # read position inside chunks[0]
    length: int = 0  # unread samples
    closed: bool = False
    consumed: int = 0  # samples already rendered
    keep: int = 0  # how many rendered samples to keep in `history` (for audio backends)
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self.chunks.append(samples)
            self.length += samples.size

    def take(self, count: int) -> np.ndarray:
        """The next `count` samples (zero-padded past the end), without consuming them."""
        parts: list[np.ndarray] = []
        need, offset = count, self.head
        for chunk in self.chunks:
            piece = chunk[offset : offset + need]
            parts.append(piece)
            need -= piece.size
            offset = 0
            if need == 0:
                break
        if need:
            parts.append(np.zeros(need, np.float32))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def consume(self, count: int) -> None:
        if self.keep:
            read = self.take(min(count, self.length))
            self.history = np.concatenate([self.history, read])[-self.keep :]
        remaining = count
        while remaining and self.chunks:
            available = self.chunks[0].size - self.head
            if available <= remaining:
                remaining -= available
                self.chunks.popleft()
                self.head = 0
            else:
                self.head += remaining
                remaining = 0
        self.length = max(self.length - count, 0)
        self.consumed += count

    def frame_audio(self, reach: int, sample_rate: int, fps: int) -> FrameAudio:
        """The kept history, then up to `reach` samples from the next frame's start."""
        ahead = min(self.length, reach)
        return FrameAudio(
            samples=np.concatenate([self.history, self.take(ahead)]),
            origin=self.consumed - self.history.size,
            frame_start=self.consumed,
            end=self.consumed + self.length if self.closed and self.length <= reach else None,
            sample_rate=sample_rate,
            fps=fps,
        )


@dataclass(frozen=True, slots=True, eq=False)
class FaceSwap:
    """A face made ready for StreamRenderer.apply_face()."""

    prepared: PreparedFace
    eyes: tuple[EyeRegion, ...]


@dataclass(slots=True, eq=False)
class _Fade:
    old: PreparedFace
    old_eyes: tuple[EyeRegion, ...]
    frames: int
    done: int = 0


class StreamRenderer:
    def __init__(
        self,
        *,
        face: FaceAsset,
        options: RendererOptions | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.options = options or RendererOptions()
        self._backend = backend or create_backend(self.options)
        self._owns_backend = backend is None
        self._spf = self.options.samples_per_frame
        rate = self.options.sample_rate
        self._audio_backend = self._backend if isinstance(self._backend, AudioBackend) else None
        span = self._audio_backend.audio_span if self._audio_backend else None
        self._lead = round(LOOKAHEAD_S * rate)  # where the mouth-shape window starts
        self._lookahead = max(self._lead, round(span.lookahead_s * rate) if span else 0)
        self._history = round(span.history_s * rate) if span else 0
        self._features = FeatureExtractor(self.options.sample_rate, self._spf)
        self._tracker = MouthTracker(self.options.fps)
        self._resampler = StreamResampler(self.options.sample_rate)
        self._segments: deque[_Segment] = deque()
        self._idle = IdleMotion(fps=self.options.fps, seed=self.options.seed)
        self._prepared = self._backend.prepare(face)
        self._eyes = prepare_eyes(face)
        self._out_size = face.size
        self._fade: _Fade | None = None
        self._clear_ramp = 0
        self._clear_from = MouthShape()
        self._last_mouth = MouthShape()
        self._index = 0

    # -- properties -------------------------------------------------------------------------

    @property
    def lookahead_s(self) -> float:
        """Audio needed past a frame's own slice before that frame can be rendered."""
        return self._lookahead / self.options.sample_rate

    @property
    def clear_latency_s(self) -> float:
        return CLEAR_RAMP_FRAMES / self.options.fps

    @property
    def provider(self) -> str:
        return self._backend.provider

    @property
    def frame_index(self) -> int:
        return self._index

    @property
    def face(self) -> FaceAsset:
        return self._prepared.face

    @property
    def queued_samples(self) -> int:
        return sum(s.length for s in self._segments)

    def ready_frames(self) -> int:
        ready = 0
        for seg in self._segments:
            if seg.closed:
                ready += -(-seg.length // self._spf)
            else:
                ready += max(0, (seg.length - self._lookahead) // self._spf)
                break
        return ready

    # -- input ------------------------------------------------------------------------------

    def push_audio(self, pcm: np.ndarray, *, sample_rate: int, num_channels: int = 1) -> None:
        samples = self._resampler.push(to_mono_float(pcm, num_channels), sample_rate)
        self._open_segment().append(samples)

    def flush(self) -> None:
        """End the current speech segment (its last frame will carry segment_end=True)."""
        tail = self._resampler.flush()
        if self._segments and not self._segments[-1].closed:
            self._segments[-1].append(tail)
            self._segments[-1].closed = True
        elif tail.size:
            seg = self._open_segment()
            seg.append(tail)
            seg.closed = True

    def clear(self) -> None:
        """Drop every queued sample now (an interruption); the mouth closes within 2 frames."""
        self._segments.clear()
        self._resampler.reset()
        self._tracker.interrupt()
        self._clear_from = self._last_mouth
        self._clear_ramp = CLEAR_RAMP_FRAMES

    def set_face(self, face: FaceAsset) -> None:
        """Switch faces with a crossfade; the frame clock is untouched."""
        self.apply_face(self.prepare_face(face))

    def prepare_face(self, face: FaceAsset) -> FaceSwap:
        """The costly half of a swap (the backend's per-face work). It reads no renderer state,
        so it may run on another thread while this one keeps rendering frames."""
        return FaceSwap(prepared=self._backend.prepare(face), eyes=prepare_eyes(face))

    def apply_face(self, swap: FaceSwap) -> None:
        """The cheap half: start the crossfade to a face prepare_face() made."""
        frames = round(self.options.crossfade_s * self.options.fps)
        old, old_eyes = self._prepared, self._eyes
        self._prepared, self._eyes = swap.prepared, swap.eyes
        self._fade = _Fade(old=old, old_eyes=old_eyes, frames=frames) if frames > 0 else None

    # -- output -----------------------------------------------------------------------------

    def pull(self) -> RenderedFrame | None:
        """The next speech frame if its audio is all here, else None."""
        while self._segments:
            seg = self._segments[0]
            if seg.closed and seg.length == 0:
                self._segments.popleft()
                continue
            if not seg.closed and seg.length < self._spf + self._lookahead:
                return None
            reach = self._spf + self._lookahead
            window = seg.take(reach)
            heard = None
            if self._audio_backend is not None:
                heard = seg.frame_audio(reach, self.options.sample_rate, self.options.fps)
            seg.consume(self._spf)
            end = seg.closed and seg.length == 0
            if end:
                self._segments.popleft()
            mouth = self._tracker.speech(
                self._features(window[self._lead : self._lead + self._spf])
            )
            audio = float_to_int16(window[: self._spf])
            return self._emit(mouth, audio=audio, segment_end=end, heard=heard)
        return None

    def next_frame(self) -> RenderedFrame:
        """A speech frame if one is ready, otherwise an idle frame; never waits."""
        return self.pull() or self._emit(self._tracker.silence(), audio=None, segment_end=False)

    def close(self) -> None:
        self._segments.clear()
        if self._owns_backend:
            self._backend.close()

    # -- internals --------------------------------------------------------------------------

    def _open_segment(self) -> _Segment:
        if not self._segments or self._segments[-1].closed:
            self._segments.append(_Segment(keep=self._history))
        return self._segments[-1]

    def _emit(
        self,
        mouth: MouthShape,
        *,
        audio: np.ndarray | None,
        segment_end: bool,
        heard: FrameAudio | None = None,
    ) -> RenderedFrame:
        if self._clear_ramp:  # the interrupted mouth closes over a fixed, short ramp
            self._clear_ramp -= 1
            factor = self._clear_ramp / CLEAR_RAMP_FRAMES
            closing = self._clear_from
            mouth = MouthShape(
                openness=max(mouth.openness, closing.openness * factor),
                width=mouth.width if mouth.openness else closing.width * factor,
            )
        self._last_mouth = mouth
        image = self._render_face(self._prepared, self._eyes, mouth, heard)
        if self._fade is not None:
            fade = self._fade
            fade.done += 1
            old = self._render_face(fade.old, fade.old_eyes, mouth, heard)
            image = crossfade(old, image, fade.done / (fade.frames + 1))
            if fade.done >= fade.frames:
                self._fade = None
        if (image.shape[1], image.shape[0]) != self._out_size:
            image = cv2.resize(image, self._out_size, interpolation=cv2.INTER_AREA)
        frame = RenderedFrame(
            index=self._index,
            image=image,
            audio=audio,
            mouth=mouth,
            fps=self.options.fps,
            segment_end=segment_end,
        )
        self._index += 1
        return frame

    def _render_face(
        self,
        prepared: PreparedFace,
        eyes: tuple[EyeRegion, ...],
        mouth: MouthShape,
        heard: FrameAudio | None,
    ) -> np.ndarray:
        if self._audio_backend is not None:
            image = self._audio_backend.render_audio(prepared, mouth, heard)
        else:
            image = self._backend.render(prepared, mouth)
        if self.options.idle_motion:
            image = self._idle.apply(image, eyes, self._index)
        return image
