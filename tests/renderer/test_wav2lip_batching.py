"""The shared inference loop: every stream gets its own results, in order, whatever the timing."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer.backends.wav2lip.batching import BatchLoop, BatchPolicy, LoopClosedError
from renderer.backends.wav2lip.engine import Wav2LipEngine
from tests.renderer.wav2lip_support import (
    wav2lip_engine_fixture,  # noqa: F401 (fixture)
    wav2lip_model_fixture,  # noqa: F401 (fixture)
)

Item = tuple[int, int]  # (stream, sequence number)


class Recorder:
    """run_batch for the loop: tags each item with its batch, and records the batch sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[Item]) -> list[tuple[int, int, int]]:
        with self.lock:
            batch = len(self.sizes)
            self.sizes.append(len(items))
        time.sleep(0.0005)  # a little work, so requests pile up behind a running batch
        return [(stream, seq * 7 + 1, batch) for stream, seq in items]


@settings(max_examples=25, deadline=None)
@given(
    max_batch=st.integers(1, 8),
    max_wait_ms=st.sampled_from([0.0, 0.5, 2.0]),
    arrivals=st.lists(
        st.lists(st.sampled_from([0.0, 0.0, 0.0002, 0.001]), min_size=1, max_size=12),
        min_size=1,
        max_size=6,
    ),
)
def test_each_stream_gets_its_own_results_in_order(
    max_batch: int, max_wait_ms: float, arrivals: list[list[float]]
) -> None:
    recorder = Recorder()
    loop: BatchLoop[Item, tuple[int, int, int]] = BatchLoop(
        recorder, policy=BatchPolicy(max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    )
    results: dict[int, list[tuple[int, int, int]]] = {}
    start = threading.Barrier(len(arrivals))

    def stream(index: int, gaps: list[float]) -> None:
        start.wait()
        pending: list[Future[tuple[int, int, int]]] = []
        out = []
        for seq, gap in enumerate(gaps):
            if gap:
                time.sleep(gap)
            pending.append(loop.submit((index, seq)))
            if seq % 3 == 2:  # sometimes wait for one, like a render thread does
                out.append(pending.pop(0).result(timeout=10))
        out.extend(f.result(timeout=10) for f in pending)
        results[index] = out

    threads = [threading.Thread(target=stream, args=(i, g)) for i, g in enumerate(arrivals)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    loop.close()
    for index, gaps in enumerate(arrivals):
        got = results[index]
        assert [(s, v) for s, v, _ in got] == [(index, seq * 7 + 1) for seq in range(len(gaps))]
        batches = [b for _, _, b in got]
        assert batches == sorted(batches), "a stream's frames never overtake each other"
    assert sum(recorder.sizes) == sum(len(g) for g in arrivals)
    assert max(recorder.sizes) <= max_batch


def test_waiting_requests_are_gathered_into_one_batch() -> None:
    recorder = Recorder()
    loop: BatchLoop[Item, tuple[int, int, int]] = BatchLoop(
        recorder, policy=BatchPolicy(max_batch=4, max_wait_s=0.5)
    )
    futures = [loop.submit((0, i)) for i in range(4)]  # a full batch goes at once, no wait
    assert [f.result(timeout=0.4)[2] for f in futures] == [0, 0, 0, 0]
    loop.close()
    assert recorder.sizes == [4]


def test_a_failing_batch_fails_its_waiters_and_the_loop_goes_on() -> None:
    def run(items: Sequence[int]) -> list[int]:
        if any(i < 0 for i in items):
            raise ValueError("bad frame")
        return [i * 2 for i in items]

    loop: BatchLoop[int, int] = BatchLoop(run, policy=BatchPolicy(max_batch=1, max_wait_s=0))
    bad = loop.submit(-1)
    with pytest.raises(ValueError, match="bad frame"):
        bad.result(timeout=5)
    assert loop.run(21) == 42
    loop.close()
    with pytest.raises(LoopClosedError):
        loop.submit(1)


def test_closing_fails_what_is_still_queued() -> None:
    gate = threading.Event()

    def run(items: Sequence[int]) -> list[int]:
        gate.wait(5)
        return list(items)

    loop: BatchLoop[int, int] = BatchLoop(run, policy=BatchPolicy(max_batch=1, max_wait_s=0))
    first = loop.submit(1)
    time.sleep(0.05)  # the first is running; the next two queue behind it
    queued = [loop.submit(2), loop.submit(3)]
    closer = threading.Thread(target=loop.close)
    closer.start()
    gate.set()
    closer.join(5)
    assert first.result(timeout=5) == 1
    for future in queued:
        with pytest.raises(LoopClosedError):
            future.result(timeout=5)


def test_concurrent_streams_get_their_own_frames_from_the_real_model(
    wav2lip_engine: Wav2LipEngine,
) -> None:
    rng = np.random.default_rng(11)
    streams, frames = 4, 3
    mels = rng.uniform(-4, 4, (streams, frames, 80, 16)).astype(np.float32)
    faces = rng.random((streams, 6, 96, 96), dtype=np.float32)
    expected = [
        wav2lip_engine.run_batch(mels[s][:, None], np.repeat(faces[s][None], frames, 0))
        for s in range(streams)
    ]
    got: dict[int, list[np.ndarray]] = {}
    barrier = threading.Barrier(streams)

    def stream(s: int) -> None:
        barrier.wait()
        got[s] = [wav2lip_engine.infer(mels[s, i], faces[s]) for i in range(frames)]

    before = wav2lip_engine.loop.batches
    threads = [threading.Thread(target=stream, args=(s,)) for s in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for s in range(streams):
        assert np.abs(np.stack(got[s]) - expected[s]).max() < 1e-4
    ran = wav2lip_engine.loop.batches - before
    assert ran < streams * frames, "frames of different streams shared inference calls"
