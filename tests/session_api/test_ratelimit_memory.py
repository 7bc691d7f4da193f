"""The in-memory rate limiter (no Redis: the embedded default)."""

from __future__ import annotations

from limits.aio.storage import MemoryStorage

from session_api.ratelimit import RateLimiter


async def test_a_full_window_refuses_then_close_leaves_no_task_behind() -> None:
    limiter = RateLimiter()
    results = [await limiter.hit_scoped("demo-create", "198.51.100.2", 3) for _ in range(4)]
    assert [allowed for allowed, _ in results] == [True, True, True, False]
    assert [state.remaining for _, state in results] == [2, 1, 0, 0]
    storage = limiter._storage
    assert isinstance(storage, MemoryStorage)
    expiry = storage.timer  # the library's expiry sweep, started by the hits
    assert expiry is not None
    await limiter.aclose()
    # closed means finished: a sweep still running would find its keys gone and die with a
    # KeyError nobody retrieves (printed at interpreter exit)
    assert expiry.done()
    assert expiry.cancelled() or expiry.exception() is None
