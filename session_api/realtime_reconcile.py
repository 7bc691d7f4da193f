"""What LiveKit shows about live sessions, applied by the reaper (the backstop for lost
webhooks): the room gone, the worker gone (killed), or the worker's own end or failure in its
participant attributes.

One ListRooms call covers every room. Looking at the worker costs a call per room, so a sweep
looks at no more than `realtime_reconcile_rooms_per_sweep` of them, those looked at least
recently first: with hundreds of live sessions each is still seen every few sweeps, and the
sweep no longer holds up the requests served beside it.

A worker gone from its room without a word is left to LiveKit's participant_left webhook for
`realtime_agent_lost_grace_s`: that webhook bills a killed worker's session to when it was last
heard from, where a sweep knows only when it looked. Past the grace (the webhook lost) the
reaper ends it, billed to the sweep that first found it gone.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from session_api.realtime_worker import apply_worker_state

if TYPE_CHECKING:
    from session_api.realtime import RealtimeService


class Reconciler:
    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self._sweeps = 0  # reconcile passes so far
        self._looked_at: dict[str, int] = {}  # room -> the pass that last looked at its worker
        self._missing_since: dict[str, datetime] = {}  # room -> when a pass found no worker

    async def reconcile(self) -> list[str]:
        """End or fail active sessions by what LiveKit shows; returns the ids done."""
        rows = await self.service.store.active_rooms()
        if not rows:
            self._looked_at.clear()
            self._missing_since.clear()
            return []
        existing = await self.service.livekit.existing_rooms([room for _, room in rows])
        done = []
        for session_id, room in rows:
            if room not in existing and await self._room_gone(session_id):
                done.append(session_id)
        for session_id, room in self._rooms_to_look_at(rows, existing):
            if await self._reconcile_worker(session_id, room):
                done.append(session_id)
        return done

    def _rooms_to_look_at(
        self, rows: list[tuple[str, str]], existing: set[str]
    ) -> list[tuple[str, str]]:
        live = [(sid, room) for sid, room in rows if room in existing]
        self._sweeps += 1
        kept = {room for _, room in live}
        self._looked_at = {room: n for room, n in self._looked_at.items() if room in kept}
        self._missing_since = {r: t for r, t in self._missing_since.items() if r in kept}
        live.sort(key=lambda row: self._looked_at.get(row[1], 0))
        chosen = live[: self.service.settings.realtime_reconcile_rooms_per_sweep]
        for _, room in chosen:
            self._looked_at[room] = self._sweeps
        return chosen

    async def _room_gone(self, session_id: str) -> bool:
        return await self.service.end(session_id, reason="room_finished") is not None

    async def _reconcile_worker(self, session_id: str, room: str) -> bool:
        agent = await self.service.livekit.agent_in(room)
        if agent is None:
            return await self._worker_gone(session_id, room)
        self._missing_since.pop(room, None)
        return await apply_worker_state(self.service, session_id, agent)

    async def _worker_gone(self, session_id: str, room: str) -> bool:
        """End the session as agent_lost once the webhook has had its grace (module doc)."""
        now = self.service.clock()
        since = self._missing_since.setdefault(room, now)
        grace = timedelta(seconds=self.service.settings.realtime_agent_lost_grace_s)
        if now - since < grace:
            return False
        del self._missing_since[room]
        return await self.service.end(session_id, reason="agent_lost", at=since) is not None
