"""A viewer for the end-to-end suite: a real `livekit.rtc` participant that joins with the
session's token, publishes speech in real time, and records the avatar's tracks on arrival
time; plus the measurements made on what it received (mouth openness from the landmarker,
audio envelopes, lags by correlation).

Times are `time.monotonic()` seconds on this machine: every "sent" and "received" instant is
taken here, so differences between them are glass-to-glass (through the server, the worker's
render and encode, and back).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from livekit import rtc

from renderer.landmarks import (
    EYES,
    INNER_LOWER_MID,
    INNER_UPPER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    FaceLandmarker,
)
from renderer.lipsync_metrics import best_lag

ROOT = Path(__file__).resolve().parents[2]
SPEECH = ROOT / "tests" / "fixtures" / "speech.wav"
FPS = 25
RATE = 24000  # what the viewer asks its AudioStream for
CHUNK_S = 0.01
MIC = rtc.TrackSource.SOURCE_MICROPHONE


def load_speech() -> tuple[np.ndarray, int]:
    with wave.open(str(SPEECH)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy(), w.getframerate()


def resample(pcm: np.ndarray, rate: int, to: int) -> np.ndarray:
    n = round(len(pcm) * to / rate)
    x = np.linspace(0, len(pcm) - 1, n)
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float64))


@dataclass
class VideoFrame:
    at: float  # arrival (monotonic s)
    width: int
    height: int
    rgb: np.ndarray | None  # kept (half size) only when the viewer keeps pixels


@dataclass
class Sent:
    """What the viewer published: sample i of `pcm` was handed to the SDK at start + i/rate."""

    pcm: np.ndarray
    rate: int
    start: float


@dataclass
class Viewer:
    keep_pixels: bool = True
    room: rtc.Room = field(default_factory=rtc.Room)
    video: list[VideoFrame] = field(default_factory=list)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, int16)
    video_track_sids: list[str] = field(default_factory=list)
    audio_track_sids: list[str] = field(default_factory=list)
    data: list[tuple[str, bytes]] = field(default_factory=list)  # (topic, payload)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    first_video: asyncio.Event = field(default_factory=asyncio.Event)
    frame_seen: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def join(self, url: str, token: str) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("data_received", self._on_data)
        self.room.on("disconnected", lambda *_: self.disconnected.set())
        await self.room.connect(url, token)

    async def leave(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.room.disconnect()

    def agent(self) -> rtc.RemoteParticipant | None:
        for participant in self.room.remote_participants.values():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return participant
        return None

    async def frames_since(self, since: float, count: int) -> None:
        """Until `count` video frames have arrived since `since` (monotonic)."""
        while sum(1 for f in self.video if f.at >= since) < count:
            self.frame_seen.clear()
            await self.frame_seen.wait()

    # -- receiving ---------------------------------------------------------------------------
    def _on_track(self, track: rtc.Track, pub: rtc.RemoteTrackPublication, _p: object) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self.video_track_sids.append(pub.sid)
            self._spawn(self._read_video(track))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            self.audio_track_sids.append(pub.sid)
            self._spawn(self._read_audio(track))

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.data.append((packet.topic or "", bytes(packet.data)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_video(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                at = time.monotonic()
                frame = event.frame
                rgb = None
                if self.keep_pixels:
                    full = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
                    rgb = cv2.resize(full, (frame.width // 2, frame.height // 2))
                self.video.append(VideoFrame(at, frame.width, frame.height, rgb))
                self.first_video.set()
                self.frame_seen.set()
        finally:
            await stream.aclose()

    async def _read_audio(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=RATE, num_channels=1)
        try:
            async for event in stream:
                samples = np.frombuffer(event.frame.data, np.int16).copy()
                self.audio.append((time.monotonic(), samples))
        finally:
            await stream.aclose()

    # -- publishing --------------------------------------------------------------------------
    async def publish_audio(
        self,
        name: str = "mic",
        source: rtc.TrackSource.ValueType = rtc.TrackSource.SOURCE_MICROPHONE,
    ) -> tuple[rtc.AudioSource, rtc.LocalTrackPublication]:
        audio = rtc.AudioSource(RATE, 1, queue_size_ms=40)
        track = rtc.LocalAudioTrack.create_audio_track(name, audio)
        options = rtc.TrackPublishOptions(source=source)
        publication = await self.room.local_participant.publish_track(track, options)
        return audio, publication


async def play(audio: rtc.AudioSource, pcm: np.ndarray, rate: int) -> Sent:
    """Push `pcm` through `audio` in real time (paced by the source's small queue)."""
    samples = resample(pcm, rate, RATE).astype(np.int16) if rate != RATE else pcm
    step = int(RATE * CHUNK_S)
    for i in range(0, len(samples) - step + 1, step):
        chunk = np.ascontiguousarray(samples[i : i + step])
        await audio.capture_frame(rtc.AudioFrame(chunk.tobytes(), RATE, 1, step))
    await audio.wait_for_playout()
    # the first chunks fill the queue at once; the source then drains in real time, so
    # sample i left the SDK at about (end - duration) + i / RATE
    end = time.monotonic()
    return Sent(pcm=samples, rate=RATE, start=end - len(samples) / RATE)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), np.int16)


# -- measurements -----------------------------------------------------------------------------


def _power(pcm: np.ndarray) -> float:
    return float(np.mean(pcm.astype(np.float64) ** 2)) if pcm.size else 0.0


def envelope_on_grid(
    chunks: list[tuple[float, np.ndarray]], grid: np.ndarray, *, window_s: float = 1 / FPS
) -> np.ndarray:
    """RMS of the audio that arrived within each grid step (arrival times)."""
    if not chunks:
        return np.zeros(len(grid))
    times = np.array([t for t, _ in chunks])
    power = np.array(
        [float(np.mean(c.astype(np.float64) ** 2)) if c.size else 0.0 for _, c in chunks]
    )
    out = np.zeros(len(grid))
    for i, t in enumerate(grid):
        mask = (times > t - window_s) & (times <= t)
        out[i] = np.sqrt(power[mask].mean()) if mask.any() else 0.0
    return out


def sent_envelope_on_grid(sent: Sent, grid: np.ndarray) -> np.ndarray:
    """RMS of the sent samples that left the SDK within each grid step."""
    out = np.zeros(len(grid))
    pcm = sent.pcm.astype(np.float64)
    for i, t in enumerate(grid):
        a = int((t - 1 / FPS - sent.start) * sent.rate)
        b = int((t - sent.start) * sent.rate)
        a, b = max(a, 0), min(b, len(pcm))
        if b > a:
            out[i] = float(np.sqrt(np.mean(pcm[a:b] ** 2)))
    return out


@dataclass(frozen=True)
class Mouth:
    at: float
    gap: float  # inner-lip gap / mouth width
    tilt_deg: float  # eye-line angle: face geometry (changes on a face swap)


def mouths(frames: list[VideoFrame], landmarker: FaceLandmarker) -> list[Mouth]:
    out = []
    for frame in frames:
        if frame.rgb is None:
            continue
        faces = landmarker.detect(frame.rgb)
        if not faces:
            continue
        p = max(faces, key=lambda f: f.area).points
        width = float(np.linalg.norm(p[MOUTH_RIGHT] - p[MOUTH_LEFT])) or 1.0
        gap = float(np.linalg.norm(p[INNER_LOWER_MID] - p[INNER_UPPER_MID])) / width
        left, right = p[EYES[0][0]], p[EYES[1][1]]
        tilt = float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))
        out.append(Mouth(frame.at, gap, tilt))
    return out


def on_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.asarray(np.interp(grid, times, values), dtype=np.float64)


def lag_frames(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Lag (grid steps) of b after a at the best Pearson r, and that r."""
    return best_lag(a, b, max_lag)


def xcorr_peak(sent: np.ndarray, received: np.ndarray) -> tuple[float, int]:
    """Normalised cross-correlation peak of two waveforms (same rate) and its lag in samples."""
    a = sent.astype(np.float64)
    b = received.astype(np.float64)
    a = (a - a.mean()) / (np.linalg.norm(a - a.mean()) or 1.0)
    n = len(a) + len(b)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lag = int(np.argmax(corr[: len(b)]))
    window = b[lag : lag + len(a)]
    norm = np.linalg.norm(window - window.mean()) or 1.0
    return float(corr[lag] / norm), lag


def speech_found_in(
    sent: np.ndarray, received: np.ndarray, rate: int, *, window_s: float = 0.3, windows: int = 5
) -> float:
    """The best normalised cross-correlation, inside `received`, of the `windows` loudest
    (non-overlapping) stretches of `window_s` of `sent`.

    A short window, not the whole utterance: the worker drops the silence between speech
    segments (agent/passthrough.py), and the receivers' jitter buffers stretch time a little
    under load, so only short stretches of the waveform survive sample for sample."""
    size = round(window_s * rate)
    starts = range(0, len(sent) - size, size)
    loudest = sorted(starts, key=lambda i: _power(sent[i : i + size]), reverse=True)[:windows]
    return max(xcorr_peak(sent[i : i + size], received)[0] for i in loudest)


def onset_index(pcm: np.ndarray, rate: int, *, db: float = -35.0) -> int:
    """First 10 ms chunk louder than `db` dBFS."""
    step = rate // 100
    for i in range(0, len(pcm) - step, step):
        chunk = pcm[i : i + step].astype(np.float64) / 32768.0
        if 10 * np.log10(np.mean(chunk**2) + 1e-12) > db:
            return i
    raise AssertionError("no speech onset")


def level_db(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64) / 32768.0
    return float(10 * np.log10(np.mean(x**2) + 1e-12)) if x.size else -120.0


def received_audio(chunks: list[tuple[float, np.ndarray]]) -> np.ndarray:
    return np.concatenate([c for _, c in chunks]) if chunks else np.zeros(0, np.int16)


def fps_of(frames: list[VideoFrame], since: float | None = None) -> float:
    times = [f.at for f in frames if since is None or f.at >= since]
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def max_gap_s(frames: list[VideoFrame], since: float, until: float) -> float:
    times = [f.at for f in frames if since <= f.at <= until]
    return float(np.max(np.diff(times))) if len(times) > 1 else float("inf")
