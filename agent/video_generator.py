"""LipSyncVideoGenerator: livekit-agents' VideoGenerator over the renderer's StreamRenderer.

Audio frames pushed in are rendered into video frames at the renderer's fps. Iterating yields,
per frame:

- speech: the video frame, then its exact audio slice, then AudioSegmentEnd after the
  segment's last frame (AvatarRunner turns that into lk.playback_finished);
- silence: an idle video frame (mouth at rest, blinking and breathing) and no audio.

So the stream never stalls and audio never drifts from video: every audio sample leaves glued
to the frame that shows it.

Pacing. Speech frames are yielded as fast as the consumer takes them (AvatarRunner's
AVSynchronizer queues ~100 ms of each and plays them out in real time). Idle frames are yielded
no earlier than their place on the frame clock: if idle frames ran ahead, they would sit in the
synchroniser's video queue while the first speech audio went straight out of an empty
AudioSource, and every reply would start with the lips ~3 frames behind the voice. With idle
frames just in time, speech video enters an empty queue together with its audio.

The StreamRenderer is not thread-safe: every call on it runs on this generator's one render
thread, in submission order, so the event loop never blocks on pixels and a clear() can never
overtake audio pushed before it. Audio chunks wait in an inbox that the render thread empties
before each frame, so a chunk costs no thread hop of its own.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import cv2
import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from agent.clock import Clock, LoopClock
from agent.metrics import WorkerMetrics
from renderer import FaceAsset, RenderedFrame, RendererOptions, StreamRenderer
from renderer.backends import Backend

logger = logging.getLogger("agent")

T = TypeVar("T")

# Past this much behind the frame clock (a stall), idle pacing re-anchors instead of bursting.
REANCHOR_S = 0.2
# A gap in the published audio shorter than this is scheduling noise, not an audible underrun.
UNDERRUN_TOLERANCE_S = 0.002


class AvatarVideoFrame(rtc.VideoFrame):
    """One rendered frame as I420 (what the video encoder takes, so the FFI converts nothing on
    the event loop), handed over without a copy. `image` keeps the RGB picture it came from."""

    def __init__(self, rendered: RenderedFrame, i420: np.ndarray | None, *, speech: bool) -> None:
        height, width = rendered.image.shape[:2]
        # a flat uint8 view: rtc takes a memoryview whose length is its byte size as it is
        if i420 is None:  # odd sizes have no I420 layout
            kind, pixels = rtc.VideoBufferType.RGB24, np.ascontiguousarray(rendered.image)
        else:
            kind, pixels = rtc.VideoBufferType.I420, i420
        super().__init__(width, height, kind, pixels.reshape(-1).data)
        self.image = rendered.image
        self.index = rendered.index
        self.timestamp_s = rendered.timestamp_s
        self.speech = speech
        self.mouth_openness = rendered.mouth.openness


def to_i420(image: np.ndarray) -> np.ndarray | None:
    """RGB (H, W, 3) to planar I420 (H * 3/2, W), on the render thread (OpenCV drops the GIL);
    None for odd sizes, which I420 cannot hold."""
    height, width = image.shape[:2]
    if height % 2 or width % 2:
        return None
    return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)


@dataclass(frozen=True, slots=True, eq=False)
class _Step:
    """What the render thread hands back for one frame."""

    frame: RenderedFrame
    i420: np.ndarray | None
    render_s: float
    convert_s: float


class AvatarAudioFrame(rtc.AudioFrame):
    """The mono int16 audio slice of one video frame."""

    def __init__(self, samples: np.ndarray, *, sample_rate: int, index: int, fps: int) -> None:
        super().__init__(samples.tobytes(), sample_rate, 1, samples.size)
        self.index = index
        self.timestamp_s = index / fps


@dataclass(slots=True)
class GeneratorStats:
    frames: int = 0
    speech_frames: int = 0
    idle_frames: int = 0
    segments: int = 0
    interruptions: int = 0
    # idle frames emitted while a segment was open because its audio came too late
    starved_frames: int = 0
    # frames whose rendering took longer than one frame interval
    slow_frames: int = 0
    # times the published audio ran dry inside a segment, and for how long in all: each audio
    # frame leaves when the runner asks for it, and what left before plays out in real time
    audio_underruns: int = 0
    audio_underrun_ms: float = 0.0
    # per segment started from rest: ms from its first audio reaching the generator to its first
    # speech frame leaving it (the agent's own share of glass-to-glass latency)
    speech_start_ms: list[float] = field(default_factory=list)

    @property
    def speech_start_p50_ms(self) -> float | None:
        return statistics.median(self.speech_start_ms) if self.speech_start_ms else None


class LipSyncVideoGenerator(VideoGenerator):
    def __init__(
        self,
        *,
        face: FaceAsset,
        options: RendererOptions | None = None,
        backend: Backend | None = None,
        speech_wait_s: float | None = None,
        pace_idle: bool = True,
        clock: Clock | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        """`speech_wait_s`: how long to wait for late audio of an open segment before an idle
        frame is shown instead (default: one frame interval). `pace_idle`: yield idle frames
        on the frame clock (see the module docstring); off only for offline consumers.
        `metrics`: the worker's Prometheus metrics, fed per frame."""
        self._options = options or RendererOptions()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlas-render")
        self._renderer = StreamRenderer(face=face, options=self._options, backend=backend)
        # renderer calls from the event loop, in order, for the render thread to apply
        self._inbox: deque[Callable[[], None]] = deque()
        fps = self._options.fps
        self._speech_wait_s = 1.0 / fps if speech_wait_s is None else speech_wait_s
        self._clock = clock or LoopClock()
        self._pace_idle = pace_idle
        self._anchor: float | None = None  # clock time of frame 0 on the frame clock
        self._next_index = 0
        self._audio_arrived = asyncio.Event()
        self._segment_open = False
        self._epoch = 0  # bumped by every clear: frames rendered before it lose their audio
        self._audio_dry_at: float | None = None  # when the segment's audio sent so far runs out
        self._speaking = False  # the last frame out was speech
        self._speech_audio_at: float | None = None  # when a segment's audio came, from rest
        self._closed = False
        self._iterating = False
        self._metrics = metrics
        self._failure_listeners: list[Callable[[BaseException], None]] = []
        self.failure: BaseException | None = None  # why rendering stopped, if it failed
        self.stats = GeneratorStats()

    @classmethod
    def from_image(
        cls, image_bytes: bytes, *, options: RendererOptions | None = None
    ) -> LipSyncVideoGenerator:
        """Prepare the face (blocking, ~20-50 ms: call it off the event loop) and build one."""
        options = options or RendererOptions()
        return cls(face=FaceAsset.prepare(image_bytes, options=options), options=options)

    # -- properties -------------------------------------------------------------------------

    @property
    def options(self) -> RendererOptions:
        return self._options

    @property
    def video_size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self._renderer.face.size

    @property
    def clear_latency_s(self) -> float:
        return self._renderer.clear_latency_s

    @property
    def lookahead_s(self) -> float:
        return self._renderer.lookahead_s

    # -- VideoGenerator ---------------------------------------------------------------------

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if self._closed:
            return
        try:
            await self._push(frame)
        except Exception as exc:
            self._fail(exc)

    async def _push(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            self._segment_open = False
            await self._send(self._renderer.flush)
        else:
            if frame.samples_per_channel == 0:
                return
            pcm = np.frombuffer(frame.data, dtype=np.int16).copy()
            if not self._segment_open and not self._speaking and self._speech_audio_at is None:
                self._speech_audio_at = self._clock.now()
            self._segment_open = True
            # no hop of its own: the render thread takes it before its next frame, which the
            # wake-up below asks for (a hop per 20 ms chunk cost ~0.01 cores a session)
            self._inbox.append(
                partial(
                    self._renderer.push_audio,
                    pcm,
                    sample_rate=frame.sample_rate,
                    num_channels=frame.num_channels,
                )
            )
        self._audio_arrived.set()

    async def clear_buffer(self) -> None:
        """Drop every queued sample at once; the mouth closes within clear_latency_s."""
        self._epoch += 1
        self._segment_open = False
        self._audio_dry_at = None
        self._speech_audio_at = None
        self.stats.interruptions += 1
        self._audio_arrived.set()
        if not self._closed:
            await self._send(self._renderer.clear)

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        if self._iterating:
            raise RuntimeError("LipSyncVideoGenerator supports one iterator at a time")
        self._iterating = True
        return self._stream()

    # -- face swap --------------------------------------------------------------------------

    async def set_face(self, image_bytes: bytes) -> None:
        """Prepare a new face off the render thread, then crossfade to it on the same stream."""
        face = await asyncio.to_thread(FaceAsset.prepare, image_bytes, options=self._options)
        await self.set_face_asset(face)

    async def set_face_asset(self, face: FaceAsset) -> None:
        # The backend's per-face work runs beside the render thread, which only swaps it in:
        # done on the render thread, it stalled the video for its whole length.
        swap = await asyncio.to_thread(self._renderer.prepare_face, face)
        if not self._closed:
            await self._call(self._renderer.apply_face, swap)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._audio_arrived.set()
        await self._call(self._renderer.close)
        self._executor.shutdown(wait=False)

    # -- internals --------------------------------------------------------------------------

    async def _send(self, command: Callable[[], None]) -> None:
        """Queue `command` behind the audio already queued, and run the queue now."""
        self._inbox.append(command)
        try:
            await self._call(self._take_inbox)
        except Exception as exc:  # the queued audio was bad: this session cannot go on
            self._fail(exc)

    def _take_inbox(self) -> None:
        """On the render thread: apply the queued audio, flushes and clears, in order."""
        while self._inbox:
            self._inbox.popleft()()

    def _step(self, allow_idle: bool) -> _Step | None:
        self._take_inbox()
        started = time.perf_counter()
        frame = self._renderer.pull()
        if frame is None and allow_idle:
            frame = self._renderer.next_frame()
        if frame is None:
            return None
        rendered = time.perf_counter()
        i420 = to_i420(frame.image)
        return _Step(frame, i420, rendered - started, time.perf_counter() - rendered)

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _idle_due(self) -> float:
        """When the next frame is due on the frame clock (re-anchored after a stall)."""
        now = self._clock.now()
        interval = 1.0 / self._options.fps
        if self._anchor is None or now - (self._anchor + self._next_index * interval) > REANCHOR_S:
            self._anchor = now - self._next_index * interval
        return self._anchor + self._next_index * interval

    async def _next_rendered(self) -> tuple[_Step, bool] | None:
        """The next frame and whether a clear came after it was rendered; None once closed."""
        speech_deadline: float | None = None
        while not self._closed:
            self._audio_arrived.clear()
            epoch = self._epoch
            waiting = self._segment_open
            now = self._clock.now()
            if waiting:
                allow_idle = speech_deadline is not None and now >= speech_deadline
            else:
                allow_idle = not self._pace_idle or now >= self._idle_due()
            step = await self._call(self._step, allow_idle)
            if step is not None:
                self._account(step, waiting=waiting)
                self._next_index = step.frame.index + 1
                return step, epoch != self._epoch
            if self._audio_arrived.is_set():
                continue
            if self._segment_open:
                if speech_deadline is None:
                    speech_deadline = self._clock.now() + self._speech_wait_s
                wake = speech_deadline
            else:
                wake = self._idle_due()
            await self._clock.wait(self._audio_arrived, wake - self._clock.now())
        return None

    def _account(self, step: _Step, *, waiting: bool) -> None:
        late = step.render_s + step.convert_s > 1.0 / self._options.fps
        if late:
            self.stats.slow_frames += 1
        if waiting and step.frame.audio is None:
            self.stats.starved_frames += 1
        if self._metrics is not None:
            self._metrics.render_seconds.observe(step.render_s)
            self._metrics.convert_seconds.observe(step.convert_s)
            if late:
                self._metrics.frames_late.inc()

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        try:
            async for item in self._frames():
                yield item
        except Exception as exc:
            self._fail(exc)

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        rate, fps = self._options.sample_rate, self._options.fps
        while (next_step := await self._next_rendered()) is not None:
            step, stale = next_step
            rendered = step.frame
            epoch = self._epoch
            speech = rendered.audio is not None and not stale
            self._count_frame(speech)
            yield AvatarVideoFrame(rendered, step.i420, speech=speech)
            # a clear while the consumer held the video frame drops the slice still to come
            if speech and rendered.audio is not None and epoch == self._epoch:
                audio = AvatarAudioFrame(
                    rendered.audio, sample_rate=rate, index=rendered.index, fps=fps
                )
                self._count_underrun(audio.duration)
                yield audio
                if rendered.segment_end:
                    self.stats.segments += 1
                    self._audio_dry_at = None
                    yield AudioSegmentEnd()

    def _count_frame(self, speech: bool) -> None:
        self._speaking = speech
        if speech and self._speech_audio_at is not None:
            self._count_speech_start(self._clock.now() - self._speech_audio_at)
            self._speech_audio_at = None
        self.stats.frames += 1
        if speech:
            self.stats.speech_frames += 1
        else:
            self.stats.idle_frames += 1
        if self._metrics is not None:
            self._metrics.frames.labels(kind="speech" if speech else "idle").inc()

    def _count_speech_start(self, seconds: float) -> None:
        self.stats.speech_start_ms.append(seconds * 1000)
        if self._metrics is not None:
            self._metrics.speech_start_seconds.observe(seconds)

    def _fail(self, exc: BaseException) -> None:
        """The pipeline cannot go on: stop, and tell whoever listens (the session ends with
        reason "error"). Only this session's generator stops; the process goes on."""
        if self.failure is not None or self._closed:
            return
        self.failure = exc
        logger.error(
            "rendering failed; the session ends",
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        self._closed = True
        self._audio_arrived.set()
        for listener in self._failure_listeners:
            listener(exc)

    def on_failure(self, listener: Callable[[BaseException], None]) -> None:
        """Call `listener` once if rendering fails (it runs on the event loop)."""
        if self.failure is not None:
            listener(self.failure)
        else:
            self._failure_listeners.append(listener)

    def _count_underrun(self, duration_s: float) -> None:
        """Account the audio frame about to leave: a late one inside a segment is an underrun."""
        now = self._clock.now()
        dry_at = self._audio_dry_at
        if dry_at is not None and now - dry_at > UNDERRUN_TOLERANCE_S:
            self.stats.audio_underruns += 1
            if self._metrics is not None:
                self._metrics.audio_underruns.inc()
            self.stats.audio_underrun_ms += (now - dry_at) * 1000
        self._audio_dry_at = max(now, dry_at or now) + duration_s
