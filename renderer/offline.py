"""Render a whole audio file and a face to an MP4 (H.264 + AAC, +faststart).

The offline path is the streaming renderer fed as fast as the file decodes, so both paths
produce the same frames. Memory is bounded by one decoded chunk plus the encoder's queue,
whatever the file's length.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from renderer.backends import Backend
from renderer.errors import AudioDecodeError
from renderer.face import FaceAsset
from renderer.options import RendererOptions
from renderer.stream import RenderedFrame, StreamRenderer

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderResult:
    frames: int
    duration_s: float  # video duration (= audio duration rounded up to a whole frame)
    audio_samples: int  # at options.sample_rate, before the final frame's padding
    provider: str
    elapsed_s: float
    sample_frames: list[np.ndarray] = field(default_factory=list)


def decode_audio(path: str | Path, *, chunk_s: float = 1.0) -> Iterator[tuple[np.ndarray, int]]:
    """Yield (mono float32 chunk, sample_rate) from any FFmpeg-readable audio file."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioDecodeError("audio could not be decoded") from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("the file has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.rate or stream.codec_context.sample_rate
        if not rate:
            raise AudioDecodeError("audio has no sample rate")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pending: list[np.ndarray] = []
        pending_n = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_n += out.samples
                if pending_n >= chunk_s * rate:
                    yield np.concatenate(pending), rate
                    pending, pending_n = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise AudioDecodeError("audio could not be decoded") from exc
        if pending:
            yield np.concatenate(pending), rate


def probe_audio(path: str | Path) -> float | None:
    """Check that `path` has a decodable audio stream; its duration in seconds if known."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            stream = container.streams.audio[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            return container.duration / av.time_base if container.duration else None
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioDecodeError("audio could not be decoded") from exc


class BackgroundWriter:
    """Encodes on its own thread, so rendering and encoding use two cores.

    The queue is short: memory stays bounded whatever the file length.
    """

    def __init__(self, writer: Mp4Writer, *, depth: int = 8) -> None:
        self._writer = writer
        self._queue: queue.Queue[RenderedFrame | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mp4-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(frame)
                except BaseException as exc:  # re-raised on the caller's thread
                    self._error = exc

    def write(self, frame: RenderedFrame) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(frame)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self._error is not None:
            raise self._error


class Mp4Writer:
    """H.264 (yuv420p) + AAC into MP4 with the moov atom first (+faststart)."""

    def __init__(self, path: str | Path, *, width: int, height: int, options: RendererOptions):
        self._container = av.open(
            str(path), mode="w", format="mp4", options={"movflags": "+faststart"}
        )
        self._video = self._container.add_stream("libx264", rate=options.fps)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"preset": options.video_preset, "crf": str(options.video_crf)}
        self._video.codec_context.thread_count = options.threads
        self._audio = self._container.add_stream("aac", rate=options.sample_rate)
        self._audio.layout = "mono"
        self._audio.bit_rate = 96_000
        self._audio.options = {"aac_coder": "fast"}  # ~3x cheaper; transparent for speech
        self._rate = options.sample_rate
        self._to_aac = av.AudioResampler(
            format="fltp", layout="mono", rate=self._rate, frame_size=1024
        )
        self._audio_pts = 0

    def write(self, frame: RenderedFrame) -> None:
        yuv = np.asarray(cv2.cvtColor(frame.image, cv2.COLOR_RGB2YUV_I420), dtype=np.uint8)
        video = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        video.pts = frame.index
        self._container.mux(self._video.encode(video))
        if frame.audio is not None:
            self._write_audio(frame.audio)

    def _write_audio(self, samples: np.ndarray | None) -> None:
        if samples is None:
            chunks = self._to_aac.resample(None)
        else:
            audio = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            audio.sample_rate = self._rate
            audio.pts = self._audio_pts
            self._audio_pts += samples.size
            chunks = self._to_aac.resample(audio)
        for chunk in chunks:
            self._container.mux(self._audio.encode(chunk))

    def close(self) -> None:
        self._write_audio(None)
        self._container.mux(self._video.encode(None))
        self._container.mux(self._audio.encode(None))
        self._container.close()


def render_file(
    audio: str | Path,
    face: FaceAsset,
    out: str | Path,
    *,
    options: RendererOptions | None = None,
    on_progress: ProgressCallback | None = None,
    backend: Backend | None = None,
    sample_frames: int = 0,
    max_duration_s: float | None = None,
) -> RenderResult:
    """Render `audio` spoken by `face` into `out` (MP4). Raises AudioDecodeError on bad audio,
    and on audio that runs past `max_duration_s` (whatever its header declared)."""
    options = options or RendererOptions()
    # the final frame may be padded: one frame past the duration is still within it
    max_frames = None if max_duration_s is None else math.ceil(max_duration_s * options.fps) + 1
    started = time.perf_counter()
    expected = probe_audio(audio)
    expected_frames = max(1, round((expected or 0) * options.fps))
    picks = _sample_indices(expected_frames, sample_frames)
    renderer = StreamRenderer(face=face, options=options, backend=backend)
    width, height = face.size
    writer: BackgroundWriter | None = None
    frames = 0
    samples = 0
    kept: list[np.ndarray] = []
    provider = renderer.provider  # read while open: a closed neural backend has no engine
    try:
        for chunk, rate in decode_audio(audio):
            renderer.push_audio(chunk, sample_rate=rate)
            if writer is None:
                writer = BackgroundWriter(
                    Mp4Writer(out, width=width, height=height, options=options)
                )
            while (frame := renderer.pull()) is not None:
                _refuse_past(max_frames, frames, max_duration_s)
                frames, samples = _write(writer, frame, frames, samples, picks, kept)
                if on_progress and frames % options.fps == 0:
                    on_progress(min(frames / expected_frames, 0.99))
        if writer is None:
            raise AudioDecodeError("audio is empty")
        renderer.flush()
        while (frame := renderer.pull()) is not None:
            _refuse_past(max_frames, frames, max_duration_s)
            frames, samples = _write(writer, frame, frames, samples, picks, kept)
        writer.close()
        writer = None
    finally:
        if writer is not None:
            writer.close()
        renderer.close()
    if on_progress:
        on_progress(1.0)
    return RenderResult(
        frames=frames,
        duration_s=frames / options.fps,
        audio_samples=samples,
        provider=provider,
        elapsed_s=time.perf_counter() - started,
        sample_frames=kept,
    )


def _refuse_past(max_frames: int | None, frames: int, max_duration_s: float | None) -> None:
    if max_frames is not None and frames >= max_frames:
        raise AudioDecodeError(f"audio is longer than the {max_duration_s:g} s limit")


def _write(
    writer: BackgroundWriter,
    frame: RenderedFrame,
    frames: int,
    samples: int,
    picks: set[int],
    kept: list[np.ndarray],
) -> tuple[int, int]:
    writer.write(frame)
    if frame.index in picks:
        kept.append(frame.image)
    return frames + 1, samples + (frame.audio.size if frame.audio is not None else 0)


def _sample_indices(total: int, count: int) -> set[int]:
    if count <= 0:
        return set()
    return {round(i) for i in np.linspace(0, max(total - 1, 0), count)}
