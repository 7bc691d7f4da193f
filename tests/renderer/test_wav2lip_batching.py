"""The shared inference loop: every stream gets its own results, in order, whatever the timing."""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer.backends.wav2lip import batching
from renderer.backends.wav2lip.batching import BatchLoop, BatchPolicy, BatchStats, LoopClosedError
from renderer.backends.wav2lip.engine import Wav2LipEngine
from tests.renderer.wav2lip_support import (
    wav2lip_engine_fixture,  # noqa: F401 (fixture)
    wav2lip_model_fixture,  # noqa: F401 (fixture)
)

Item = tuple[int, int]  # (stream, sequence number)
HANG_GUARD_S = 30.0  # result waits end here only if something is broken


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


def test_waiting_requests_are_gathered_into_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loop's clock stands still: its wait deadline never comes, so the batch can only go
    # because it is full (a loop that waited for the deadline would hang into the guard).
    monkeypatch.setattr(batching, "time", types.SimpleNamespace(monotonic=lambda: 100.0))
    recorder = Recorder()
    loop: BatchLoop[Item, tuple[int, int, int]] = BatchLoop(
        recorder, policy=BatchPolicy(max_batch=4, max_wait_s=0.5)
    )
    futures = [loop.submit((0, i)) for i in range(4)]  # a full batch goes at once, no wait
    assert [f.result(timeout=HANG_GUARD_S)[2] for f in futures] == [0, 0, 0, 0]
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
    running, gate = threading.Event(), threading.Event()

    def run(items: Sequence[int]) -> list[int]:
        running.set()
        gate.wait(HANG_GUARD_S)
        return list(items)

    loop: BatchLoop[int, int] = BatchLoop(run, policy=BatchPolicy(max_batch=1, max_wait_s=0))
    first = loop.submit(1)
    assert running.wait(HANG_GUARD_S)  # the first is running; the next two queue behind it
    queued = [loop.submit(2), loop.submit(3)]
    closer = threading.Thread(target=loop.close)
    closer.start()
    gate.set()
    closer.join(HANG_GUARD_S)
    assert first.result(timeout=HANG_GUARD_S) == 1
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


class Gated:
    """run_batch that holds its first batch until released, so later requests pile up behind
    it and the next batch's make-up is known exactly, whatever the machine's speed."""

    def __init__(self) -> None:
        self.running, self.gate = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.sizes.append(len(items))
        self.running.set()
        assert self.gate.wait(HANG_GUARD_S)
        if any(i < 0 for i in items):
            raise ValueError("bad frame")
        return [i * 2 for i in items]

    def held(self, loop: BatchLoop[int, int], first: int) -> Future[int]:
        """Submit `first` and return once it runs (and blocks)."""
        future = loop.submit(first)
        assert self.running.wait(HANG_GUARD_S)
        return future


def test_stats_count_batches_by_size_and_the_observer_sees_each() -> None:
    gated = Gated()
    loop: BatchLoop[int, int] = BatchLoop(gated, policy=BatchPolicy(max_batch=3, max_wait_s=0))
    seen: list[tuple[int, float]] = []
    loop.on_batch = lambda size, seconds: seen.append((size, seconds))
    first = gated.held(loop, 1)
    queued = [loop.submit(i) for i in (2, 3, 4)]  # one full batch behind the held one
    gated.gate.set()
    assert [f.result(timeout=HANG_GUARD_S) for f in (first, *queued)] == [2, 4, 6, 8]
    loop.close()
    stats = loop.stats()
    assert (stats.batches, stats.items, stats.sizes, stats.failed) == (2, 4, {1: 1, 3: 1}, 0)
    assert stats.mean_size == 2.0 and stats.size_quantile(0.5) == 1
    assert stats.size_quantile(1.0) == 3
    assert [size for size, _ in seen] == [1, 3]
    assert all(s >= 0 for _, s in seen) and stats.run_s == pytest.approx(sum(s for _, s in seen))
    assert stats.since(BatchStats(batches=1, items=1, sizes={1: 1})).sizes == {3: 1}


def test_a_failing_observer_does_not_stop_the_loop() -> None:
    loop: BatchLoop[int, int] = BatchLoop(lambda items: [i + 1 for i in items])

    def broken(size: int, seconds: float) -> None:
        raise RuntimeError("metrics down")

    loop.on_batch = broken
    assert [loop.submit(i).result(timeout=HANG_GUARD_S) for i in range(3)] == [1, 2, 3]
    loop.close()
    assert loop.stats().items == 3


def test_a_bad_request_fails_alone_and_its_batch_mates_get_their_results() -> None:
    gated = Gated()
    loop: BatchLoop[int, int] = BatchLoop(gated, policy=BatchPolicy(max_batch=3, max_wait_s=0))
    first = gated.held(loop, 1)
    good, bad, other = loop.submit(5), loop.submit(-1), loop.submit(7)  # batched together
    gated.gate.set()
    assert first.result(timeout=HANG_GUARD_S) == 2
    assert good.result(timeout=HANG_GUARD_S) == 10
    assert other.result(timeout=HANG_GUARD_S) == 14
    with pytest.raises(ValueError, match="bad frame"):
        bad.result(timeout=HANG_GUARD_S)
    loop.close()
    assert gated.sizes == [1, 3, 1, 1, 1]  # the failed batch of 3, then each alone
    stats = loop.stats()
    assert (stats.failed, stats.sizes) == (2, {1: 3})
