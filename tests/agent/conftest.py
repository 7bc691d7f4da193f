"""Fixtures for the worker's tests: small renders (128 px) so that minutes of speech run fast."""

from __future__ import annotations

from collections.abc import AsyncIterator

import cv2
import numpy as np
import pytest
import soxr

from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.fake_clock import FakeClock

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


@pytest.fixture
def clock() -> FakeClock:
    """Pacing waits return at once, time jumping to their deadline."""
    return FakeClock(advance_on_wait=True)


@pytest.fixture
async def generator(
    face: FaceAsset, options: RendererOptions, clock: FakeClock
) -> AsyncIterator[LipSyncVideoGenerator]:
    gen = LipSyncVideoGenerator(face=face, options=options, clock=clock)
    yield gen
    await gen.aclose()
