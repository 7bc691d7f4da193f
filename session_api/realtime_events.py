"""LiveKit's webhooks about session rooms, applied to the sessions: the billing source of truth.

livekit-server POSTs them to /v1/livekit/webhook, signed with the API key (verified in
session_api/livekit.py with livekit-api's WebhookReceiver). Of a session's room:

- the avatar's `participant_joined` (or `track_published`, should the join be lost): the
  session is active from the worker's join, by LiveKit's clock;
- the avatar's `participant_left`: its last attributes say how the session ended (reason and
  the time the bill stops, which leaves out an empty room's wait) or that it failed; an avatar
  that left without saying so (killed) ends the session as `agent_lost`, unless another
  avatar is still in the room: at the event's time, or, when LiveKit timed its connection out,
  when it was last heard from (CONNECTION_TIMEOUT_S earlier: a killed worker's sessions are
  billed to the kill, not to LiveKit's noticing it);
- `room_finished`: the session ends at LiveKit's time of it.

Every path is idempotent (the store's `activate` / `end_once` / `fail`), so LiveKit may deliver
twice or out of order. An end's room and face cleanup is left to the reaper's next sweep, so
the answer costs one database write. The reaper (session_api/reaper.py) is the backstop for
lost webhooks. Webhooks of other rooms (a customer's, plugin mode) are ignored.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from livekit import api

from session_api.livekit import (
    CONNECTION_TIMEOUT_S,
    AgentPresence,
    is_agent,
    session_id_of_room,
)
from session_api.realtime_worker import apply_worker_state

if TYPE_CHECKING:
    from session_api.realtime import RealtimeService

logger = logging.getLogger("session_api")

JOINED = frozenset({"participant_joined", "track_published"})
EVENT_TIME_STEP_S = 1.0  # a webhook's created_at is unix seconds


async def apply_webhook(service: RealtimeService, event: api.WebhookEvent) -> None:
    """Apply one verified webhook to the session whose room it names (if any)."""
    session_id = session_id_of_room(event.room.name)
    if session_id is None:
        return
    if event.event == "room_finished":
        _log(event, session_id)
        at = _event_time(event)
        await service.end(session_id, reason="room_finished", at=at, cleanup_later=True)
        return
    if not event.HasField("participant") or not is_agent(event.participant):
        return
    _log(event, session_id)
    agent = AgentPresence.of(event.participant)
    if event.event in JOINED:
        await service.worker_joined(session_id, agent.joined_at or _event_time(event))
    elif event.event == "participant_left":
        await _worker_left(service, session_id, event.room.name, agent, _event_time(event))


async def _worker_left(
    service: RealtimeService, session_id: str, room: str, agent: AgentPresence, at: datetime | None
) -> None:
    if await apply_worker_state(service, session_id, agent, cleanup_later=True):
        return
    if agent.state in ("ended", "failed"):
        return  # said and applied before (a repeated delivery)
    if await service.livekit.agent_in(room) is not None:
        return  # another avatar is in the room: not this session's end
    if agent.timed_out:
        at = _last_heard(at, service.clock())
    ended = await service.end(session_id, reason="agent_lost", at=at, cleanup_later=True)
    if ended is not None:
        logger.warning("avatar worker left without ending", extra={"session_id": session_id})


def _last_heard(left_at: datetime | None, now: datetime) -> datetime:
    """When an avatar LiveKit timed out was last heard from: CONNECTION_TIMEOUT_S before it
    left. The event's time is whole seconds, floored, so a second is given back: the bill
    never stops before the silence."""
    if left_at is None:
        return now - timedelta(seconds=CONNECTION_TIMEOUT_S)
    return left_at + timedelta(seconds=EVENT_TIME_STEP_S - CONNECTION_TIMEOUT_S)


def _log(event: api.WebhookEvent, session_id: str) -> None:
    logger.info("livekit webhook", extra={"event": event.event, "session_id": session_id})


def _event_time(event: api.WebhookEvent) -> datetime | None:
    return datetime.fromtimestamp(event.created_at, UTC) if event.created_at > 0 else None
