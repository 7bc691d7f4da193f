"""One inference loop per model and process: requests from every stream, run in batches.

Streams (one render thread per session, or one offline render) submit single frames and wait on
a Future. The loop's thread takes what is pending, up to `max_batch`; when fewer are pending it
waits for more, but never past `max_wait_s` after the oldest request arrived. While a batch runs,
new requests queue up, so under load the batches fill by themselves and the wait costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
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
        self.batches = 0  # statistics, for logs and benchmarks
        self.items = 0
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
            if not live:
                continue
            try:
                results = self._run_batch([r.item for r in live])
                if len(results) != len(live):
                    raise RuntimeError("run_batch returned a different number of results")
            except Exception as exc:  # every waiter must hear about it, or it hangs
                logger.exception("inference batch failed", extra={"batch": len(live)})
                for request in live:
                    request.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for request, result in zip(live, results, strict=True):
                request.future.set_result(result)
        with self._cond:
            leftover, self._pending = list(self._pending), deque()
        for request in leftover:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(LoopClosedError("the inference loop was closed"))
