"""One inference loop per model and process: requests from every stream, run in batches.

Streams (one render thread per session, or one offline render) submit single frames and wait on
a Future. The loop's thread takes what is pending, up to `max_batch`; when fewer are pending it
waits for more, but never past `max_wait_s` after the oldest request arrived. While a batch runs,
new requests queue up, so under load the batches fill by themselves and the wait costs nothing.

Shared by every session of a process, the loop is also where batching shows: `stats()` gives a
snapshot (batches, frames, a count per batch size, time spent running batches), and `on_batch`
is a per-loop hook called on the loop's thread after each batch with (size, seconds), e.g. to
feed a metrics histogram. A batch that fails is retried one request at a time, so one stream's
bad request fails that stream alone, not every stream that shared its batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger("renderer")

T = TypeVar("T")
R = TypeVar("R")


class LoopClosedError(RuntimeError):
    """The inference loop was closed before this request ran."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPolicy:
    max_batch: int = 32
    max_wait_s: float = 0.004  # added latency at most, when the loop is idle and traffic thin

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if not 0.0 <= self.max_wait_s <= 1.0:
            raise ValueError("max_wait_s must be between 0 and 1 s")


BatchObserver = Callable[[int, float], None]  # (batch size, seconds the batch ran)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStats:
    """What a loop has run so far (a snapshot; cheap to take)."""

    batches: int = 0  # batches that ran to a result
    items: int = 0  # requests served by those batches
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches
    run_s: float = 0.0  # time spent inside run_batch, all batches together
    failed: int = 0  # batches that raised (their requests were then retried one by one)

    @property
    def mean_size(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def size_quantile(self, q: float) -> int:
        """The batch size below or at which a fraction `q` of the batches lie (0 when none)."""
        if not self.batches:
            return 0
        rank, seen = q * self.batches, 0
        for size in sorted(self.sizes):
            seen += self.sizes[size]
            if seen >= rank:
                return size
        return max(self.sizes)

    def since(self, earlier: BatchStats) -> BatchStats:
        """What ran between `earlier` and this snapshot."""
        sizes = {s: n - earlier.sizes.get(s, 0) for s, n in self.sizes.items()}
        return BatchStats(
            batches=self.batches - earlier.batches,
            items=self.items - earlier.items,
            sizes={s: n for s, n in sizes.items() if n},
            run_s=self.run_s - earlier.run_s,
            failed=self.failed - earlier.failed,
        )


@dataclass(frozen=True, slots=True, eq=False)
class _Request(Generic[T, R]):
    item: T
    future: Future[R]
    arrived: float


class BatchLoop(Generic[T, R]):
    """Runs `run_batch(items) -> results` (same length, same order) on its own thread."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        *,
        policy: BatchPolicy | None = None,
        name: str = "inference",
    ) -> None:
        self.policy = policy or BatchPolicy()
        self._run_batch = run_batch
        self._pending: deque[_Request[T, R]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        # Statistics: written by the loop's thread only, read through stats() under this lock.
        self._stats_lock = threading.Lock()
        self._sizes: dict[int, int] = {}
        self._batches = self._items = self._failed = 0
        self._run_s = 0.0
        self.on_batch: BatchObserver | None = None
        self._thread = threading.Thread(target=self._loop, name=f"atlas-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        future: Future[R] = Future()
        with self._cond:
            if self._closed:
                raise LoopClosedError("the inference loop is closed")
            self._pending.append(_Request(item, future, time.monotonic()))
            self._cond.notify()
        return future

    def run(self, item: T) -> R:
        """Submit one item and wait for its result."""
        return self.submit(item).result()

    def close(self) -> None:
        """Stop the thread; requests still queued fail with LoopClosedError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def batches(self) -> int:
        return self._batches

    @property
    def items(self) -> int:
        return self._items

    def stats(self) -> BatchStats:
        with self._stats_lock:
            return BatchStats(
                batches=self._batches,
                items=self._items,
                sizes=dict(self._sizes),
                run_s=self._run_s,
                failed=self._failed,
            )

    def _take(self) -> list[_Request[T, R]] | None:
        max_batch, max_wait = self.policy.max_batch, self.policy.max_wait_s
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = self._pending[0].arrived + max_wait
            while len(self._pending) < max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(len(self._pending), max_batch)
            return [self._pending.popleft() for _ in range(count)]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if live and not self._serve(live) and len(live) > 1:
                for request in live:  # find the culprit: the others get their results
                    self._serve([request])
        with self._cond:
            leftover, self._pending = list(self._pending), deque()
        for request in leftover:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(LoopClosedError("the inference loop was closed"))

    def _serve(self, live: list[_Request[T, R]]) -> bool:
        """Run one batch and settle its futures; False (futures left open) if it raised, unless
        it was a single request, whose future then gets the exception."""
        started = time.monotonic()
        try:
            results = self._run_batch([r.item for r in live])
            if len(results) != len(live):
                raise RuntimeError("run_batch returned a different number of results")
        except Exception as exc:  # every waiter must hear about it, or it hangs
            with self._stats_lock:
                self._failed += 1
            if len(live) > 1:
                return False
            logger.exception("inference request failed")
            live[0].future.set_exception(exc)
            return True
        seconds = time.monotonic() - started
        with self._stats_lock:
            self._batches += 1
            self._items += len(live)
            self._sizes[len(live)] = self._sizes.get(len(live), 0) + 1
            self._run_s += seconds
        for request, result in zip(live, results, strict=True):
            request.future.set_result(result)
        self._observe(len(live), seconds)
        return True

    def _observe(self, size: int, seconds: float) -> None:
        observer = self.on_batch
        if observer is None:
            return
        try:
            observer(size, seconds)
        except Exception:  # a metrics hook must never stop inference
            logger.exception("batch observer failed")
