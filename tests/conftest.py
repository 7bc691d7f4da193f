"""Shared fixtures: the committed media, real `atlas` processes stopped after each test, and a
real LiveKit server for the tests that need one."""

from __future__ import annotations

import ast
import json
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.livekit_server import LiveKitServer, start_livekit_server, stop
from tests.paths import FIXTURES
from tests.processes import Procs


def pytest_configure(config: pytest.Config) -> None:
    serialize_ast_parse()


def serialize_ast_parse() -> None:
    """CPython 3.11 keeps one AST-building depth counter for all threads (python/cpython#106905):
    two threads in `ast.parse` at once (pytest formatting a failure, a library thread formatting
    a traceback) can raise `SystemError: AST constructor recursion depth mismatch`, which ended a
    loaded run as an INTERNALERROR and lost its failure reports. One lock makes the calls take
    turns; reentrant, because a GC callback inside a parse may parse again on the same thread."""
    parse = ast.parse
    if getattr(parse, "serialized", False):
        return
    lock = threading.RLock()

    def serialized_parse(*args: object, **kwargs: object) -> ast.AST:
        with lock:
            return parse(*args, **kwargs)  # type: ignore[arg-type]

    serialized_parse.serialized = True  # type: ignore[attr-defined]
    ast.parse = serialized_parse  # type: ignore[assignment]


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
