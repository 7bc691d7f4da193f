"""Fixtures for the worker's tests: small renders (128 px) so that minutes of speech run fast."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import cv2
import numpy as np
import pytest
import soxr
from livekit import rtc

from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions

SIZE = 128


@pytest.fixture(scope="session")
def options() -> RendererOptions:
    """No idle motion: a rest frame is exactly the photo, so tests can see the mouth move."""
    return RendererOptions(size=SIZE, idle_motion=False)


@pytest.fixture(scope="session")
def face(face_bytes: bytes, options: RendererOptions) -> FaceAsset:
    return FaceAsset.prepare(face_bytes, options=options)


@pytest.fixture(scope="session")
def mirrored_face_bytes(face_bytes: bytes) -> bytes:
    """A second, different photo: the fixture mirrored left-right."""
    image = cv2.imdecode(np.frombuffer(face_bytes, np.uint8), cv2.IMREAD_COLOR)
    ok, data = cv2.imencode(".png", cv2.flip(image, 1))
    assert ok
    return data.tobytes()


@pytest.fixture(scope="session")
def speech24k(speech: tuple[np.ndarray, int], options: RendererOptions) -> np.ndarray:
    """The espeak fixture at the render rate, so that audio accounting is sample-exact."""
    pcm, rate = speech
    out = soxr.resample(pcm.astype(np.float32) / 32768, rate, options.sample_rate)
    return np.clip(np.rint(out * 32768), -32768, 32767).astype(np.int16)


class FakeClock:
    """agent.video_generator.Clock with time that moves only when someone waits."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        if not event.is_set() and seconds > 0:
            self.t += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def generator(
    face: FaceAsset, options: RendererOptions, clock: FakeClock
) -> AsyncIterator[LipSyncVideoGenerator]:
    gen = LipSyncVideoGenerator(face=face, options=options, clock=clock)
    yield gen
    await gen.aclose()


def audio_frames(pcm: np.ndarray, rate: int, chunk_ms: int = 10) -> Iterator[rtc.AudioFrame]:
    """Real rtc.AudioFrames of `chunk_ms` each (the last one shorter)."""
    step = rate * chunk_ms // 1000
    for start in range(0, pcm.size, step):
        part = np.ascontiguousarray(pcm[start : start + step])
        yield rtc.AudioFrame(part.tobytes(), rate, 1, part.size)


def tone_bursts(
    rate: int, *, seconds: float, on_s: float, off_s: float, freq: float = 220.0
) -> np.ndarray:
    """Voiced-like bursts (a harmonic tone) separated by silence: sharp, known onsets."""
    t = np.arange(int(rate * seconds)) / rate
    voiced = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 8))
    gate = (t % (on_s + off_s)) < on_s
    return (voiced * gate * 7000).astype(np.int16)


class ManualClock:
    """agent.clock.Clock whose time moves only when the test calls advance()."""

    def __init__(self) -> None:
        self.t = 0.0
        self._tick = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        deadline = self.t + seconds
        while not event.is_set() and self.t < deadline:
            self._tick.clear()
            waiters = [
                asyncio.ensure_future(event.wait()),
                asyncio.ensure_future(self._tick.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def advance(self, seconds: float) -> None:
        self.t += seconds
        self._tick.set()
        for _ in range(5):  # let woken tasks run
            await asyncio.sleep(0)
