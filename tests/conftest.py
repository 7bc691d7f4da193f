"""Shared fixtures: the committed media, real `atlas` processes stopped after each test, and a
real LiveKit server for the tests that need one."""

from __future__ import annotations

import json
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.livekit_server import LiveKitServer, start_livekit_server, stop
from tests.paths import FIXTURES
from tests.processes import Procs


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def face_bytes() -> bytes:
    return (FIXTURES / "face.jpg").read_bytes()


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    """The espeak-ng fixture as (int16 mono PCM, sample rate)."""
    with wave.open(str(FIXTURES / "speech.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).copy()
        return pcm, w.getframerate()


@pytest.fixture(scope="session")
def phonemes() -> list[dict[str, float | str]]:
    data = json.loads((FIXTURES / "speech_phonemes.json").read_text())
    phonemes: list[dict[str, float | str]] = data["phonemes"]
    return phonemes


@pytest.fixture(scope="session")
def livekit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveKitServer]:
    """One real `livekit-server --dev` for the whole test session (tests/livekit_server.py)."""
    server, proc = start_livekit_server(tmp_path_factory.mktemp("livekit"))
    try:
        yield server
    finally:
        stop(proc)
        server.webhooks.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """`atlas` processes for one test: SIGTERM, a grace period, then SIGKILL at the end."""
    owner = Procs(tmp_path)
    try:
        yield owner
    finally:
        owner.stop_all()
