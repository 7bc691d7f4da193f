"""What LiveKit shows about live sessions, applied by the reaper (the backstop for lost
webhooks): the room gone, the worker gone (killed), or the worker's own end or failure in its
participant attributes.

One ListRooms call covers every room. Looking at the worker costs a call per room, so a sweep
looks at no more than `realtime_reconcile_rooms_per_sweep` of them, those looked at least
recently first: with hundreds of live sessions each is still seen every few sweeps, and the
sweep no longer holds up the requests served beside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from session_api.realtime_worker import apply_worker_state

if TYPE_CHECKING:
    from session_api.realtime import RealtimeService


class Reconciler:
    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self._sweeps = 0  # reconcile passes so far
        self._looked_at: dict[str, int] = {}  # room -> the pass that last looked at its worker

    async def reconcile(self) -> list[str]:
        """End or fail active sessions by what LiveKit shows; returns the ids done."""
        rows = await self.service.store.active_rooms()
        if not rows:
            self._looked_at.clear()
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
            return await self.service.end(session_id, reason="agent_lost") is not None
        return await apply_worker_state(self.service, session_id, agent)
