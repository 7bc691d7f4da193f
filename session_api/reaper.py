"""The realtime reaper: the API-side backstop that ends sessions at their max duration.

The worker ends itself at max_duration_seconds; the reaper makes sure the session is ended and
billed even if the worker or the API died. Each sweep, on every API process:

1. ends active sessions past `expires_at`, at `expires_at` (a session is never billed past its
   max duration, even when the API was down when it expired);
2. fails creates that never finished (a process died between reserving and starting);
3. ends or fails active sessions by what LiveKit shows (RealtimeService.reconcile): the room
   gone, the worker gone (killed), or the worker's own end (billed up to the time it names,
   which excludes an empty room's wait) or failure (nothing billed);
4. retries room and face cleanup that did not succeed the first time.

Ending goes through SessionStore.end_once, so several reapers never end or bill twice. The first
sweep runs at once on start (catching up), then one every `interval_s` (1 s: within 2 s).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from session_api.livekit import LiveKitError
from session_api.realtime import RealtimeService

logger = logging.getLogger("session_api")


@dataclass(slots=True)
class Sweep:
    ended: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)


class Reaper:
    def __init__(
        self, *, service: RealtimeService, interval_s: float = 1.0, start_timeout_s: float = 60.0
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.start_timeout = timedelta(seconds=start_timeout_s)
        self.caught_up = asyncio.Event()  # set after the first sweep
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Sweep until aclose()."""
        while not self._stop.is_set():
            try:
                await self.sweep()
            except Exception:
                logger.exception("reaper sweep failed")
            self.caught_up.set()
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def sweep(self) -> Sweep:
        store = self.service.store
        now = self.service.clock()
        done = Sweep()
        for session_id in await store.expired(now):
            # end_once clamps the end to expires_at: billed up to the max duration, not to now.
            if await self.service.end(session_id, reason="max_duration", at=now) is not None:
                done.ended.append(session_id)
        try:
            done.ended.extend(await self.service.reconcile())
        except LiveKitError:
            logger.warning("reaper: LiveKit unreachable; sessions checked next sweep")
        for session_id in await store.stale_starting(now - self.start_timeout):
            if await store.fail(session_id, now=now):
                done.failed.append(session_id)
        for session_id in await store.claim_cleanup(now):
            if await self.service.cleanup(session_id):
                done.cleaned.append(session_id)
        if done.ended or done.failed:
            logger.info(
                "reaper sweep", extra={"ended": len(done.ended), "failed": len(done.failed)}
            )
        return done

    async def aclose(self) -> None:
        self._stop.set()
