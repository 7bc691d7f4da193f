"""Many sessions, one backend: N StreamRenderers on N threads share one Wav2LipBackend.

Each renderer is fed its own stretch of the real speech fixture in 40 ms chunks, on its own
thread, as a session's render thread is in a worker that hosts many sessions. The threads meet
at a barrier before each frame, so all N submit that frame's inference together; the loop's clock
is frozen, so a batch goes only once it is full. Batch sizes therefore do not depend on the
machine's speed: shared, every batch holds N frames; not shared, the loops wait for frames that
never come and the hang guard fails the test.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from renderer import FaceAsset, RendererOptions, StreamRenderer
from renderer.backends import BatchingBackend
from renderer.backends.wav2lip import batching
from renderer.backends.wav2lip.backend import Wav2LipBackend
from renderer.backends.wav2lip.batching import BatchPolicy
from renderer.backends.wav2lip.engine import NeuralSettings, Wav2LipEngine
from tests.paths import FIXTURES
from tests.renderer.wav2lip_support import contract_model

HANG_GUARD_S = 60.0  # waits end here only if something is broken
CHUNK_S = 0.040  # one frame of audio per push, as a realtime feed delivers it
STREAM_S = 1.2  # speech per session
OPTIONS = RendererOptions(backend="wav2lip")


@pytest.fixture(scope="module")
def contract_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return contract_model(tmp_path_factory.mktemp("contract") / "contract.onnx")


@pytest.fixture(scope="module")
def faces(face: FaceAsset) -> list[FaceAsset]:
    """Two different faces, so a frame delivered to the wrong session shows."""
    return [face, FaceAsset.prepare((FIXTURES / "face_smile.jpg").read_bytes())]


def open_backend(model: Path, max_batch: int) -> Wav2LipBackend:
    policy = BatchPolicy(max_batch=max_batch, max_wait_s=1.0)
    engine = Wav2LipEngine(str(model), settings=NeuralSettings(policy=policy))
    return Wav2LipBackend(options=OPTIONS, engine=engine)


def close_backend(backend: Wav2LipBackend) -> None:
    engine = backend.engine
    backend.close()
    engine.close()


def session_audio(speech: tuple[np.ndarray, int], session: int) -> np.ndarray:
    """Session i speaks its own stretch of the fixture (a different offset each)."""
    pcm, rate = speech
    start = round(session * 0.7 * rate) % (pcm.size - round(STREAM_S * rate))
    return pcm[start : start + round(STREAM_S * rate)]


def chunks(pcm: np.ndarray, rate: int) -> Iterator[np.ndarray]:
    step = round(CHUNK_S * rate)
    for start in range(0, pcm.size, step):
        yield pcm[start : start + step]


def run_session(
    renderer: StreamRenderer, pcm: np.ndarray, rate: int, tick: threading.Barrier | None
) -> list[np.ndarray]:
    """Push 40 ms at a time and render what is ready; every session has the same number of
    samples, so each is ready on the same ticks and all N meet at the barrier then."""

    def render_ready(out: list[np.ndarray]) -> None:
        while renderer.ready_frames():
            if tick is not None:
                tick.wait(HANG_GUARD_S)
            frame = renderer.pull()
            assert frame is not None and frame.audio is not None
            out.append(frame.image)

    images: list[np.ndarray] = []
    for chunk in chunks(pcm, rate):
        renderer.push_audio(chunk, sample_rate=rate)
        render_ready(images)
    renderer.flush()
    render_ready(images)
    return images


def render_alone(
    backend: Wav2LipBackend, face: FaceAsset, pcm: np.ndarray, rate: int
) -> list[np.ndarray]:
    renderer = StreamRenderer(face=face, options=OPTIONS, backend=backend)
    try:
        return run_session(renderer, pcm, rate, None)
    finally:
        renderer.close()


def render_together(
    backends: list[Wav2LipBackend], faces: list[FaceAsset], audio: list[np.ndarray], rate: int
) -> dict[int, list[np.ndarray]]:
    """Session i renders on its own thread through backends[i] (all the same one when shared)."""
    sessions = len(audio)
    tick = threading.Barrier(sessions)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def session(i: int) -> None:
        renderer = StreamRenderer(face=faces[i % len(faces)], options=OPTIONS, backend=backends[i])
        try:
            results[i] = run_session(renderer, audio[i], rate, tick)
        except BaseException as exc:  # reported by the test, not lost with the thread
            errors.append(exc)
            tick.abort()
        finally:
            renderer.close()

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + HANG_GUARD_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = any(thread.is_alive() for thread in threads)
    if hung:  # free the waiting threads: closing a loop fails what it still holds
        for backend in {id(b): b for b in backends}.values():
            backend.engine.loop.close()
    assert not hung, "sessions waited for batches that never filled: the backend is not shared"
    assert not errors, errors
    return results


@pytest.mark.parametrize("sessions", [4, 8])
def test_sessions_sharing_one_backend_are_served_in_batches_of_n(
    sessions: int,
    contract_path: Path,
    faces: list[FaceAsset],
    speech: tuple[np.ndarray, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rate = speech[1]
    audio = [session_audio(speech, i) for i in range(sessions)]
    reference = open_backend(contract_path, max_batch=1)
    try:
        expected = [render_alone(reference, faces[i % 2], audio[i], rate) for i in range(sessions)]
    finally:
        close_backend(reference)

    shared = open_backend(contract_path, max_batch=sessions)
    assert isinstance(shared, BatchingBackend)
    observed: list[int] = []
    shared.batch_loop.on_batch = lambda size, seconds: observed.append(size)
    # A frozen clock: a batch never goes on its wait deadline, only once all N have submitted.
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(monotonic=lambda: 100.0))
    try:
        got = render_together([shared] * sessions, faces, audio, rate)
        stats = shared.batch_loop.stats()
    finally:
        monkeypatch.undo()
        close_backend(shared)

    frames = len(expected[0])
    assert frames >= 25 and all(len(e) == frames for e in expected)
    assert stats.sizes == {sessions: frames}, "every frame ran in a batch of all N sessions"
    assert stats.size_quantile(0.5) >= sessions - 1 and stats.mean_size == sessions
    assert observed == [sessions] * frames
    for i in range(sessions):
        assert len(got[i]) == frames
        for shared_image, alone_image in zip(got[i], expected[i], strict=True):
            diff = int(np.abs(shared_image.astype(np.int16) - alone_image).max())
            assert diff <= 1, f"session {i} got another session's frame (off by {diff})"


def test_sessions_with_their_own_backends_do_not_batch(
    contract_path: Path,
    faces: list[FaceAsset],
    speech: tuple[np.ndarray, int],
) -> None:
    """The control: separate loops each see one session's frames, so batches stay at 1."""
    rate, sessions = speech[1], 3
    audio = [session_audio(speech, i) for i in range(sessions)]
    backends = [open_backend(contract_path, max_batch=8) for _ in range(sessions)]
    for backend in backends:  # no waiting for company that will not come
        backend.engine.loop.policy = BatchPolicy(max_batch=8, max_wait_s=0.0)
    try:
        render_together(backends, faces, audio, rate)
        sizes = [b.batch_loop.stats().sizes for b in backends]
    finally:
        for backend in backends:
            close_backend(backend)
    assert all(set(s) == {1} for s in sizes)
