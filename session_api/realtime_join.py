"""Waiting for the avatar worker to join a new session's room (one job of RealtimeService.create).

The bill starts when the worker joins, not at dispatch: the join time is the worker's own
`joined_at` as LiveKit records it. A dispatch no worker took within
`realtime_redispatch_after_s` is made again: LiveKit drops a job it offers while every worker
reads as full, and a worker's load reaches it only every 2.5 s. No worker within
`realtime_join_timeout_s` means none is free: 503 no_capacity.
"""

from __future__ import annotations

import asyncio
import logging

from session_api.config import Settings
from session_api.errors import NoCapacity, TemporarilyUnavailable
from session_api.livekit import AgentPresence, LiveKit, LiveKitBusy, LiveKitError

logger = logging.getLogger("session_api")

JOIN_POLL_S = 0.05  # how often a create looks for the worker in the room


async def wait_for_worker(
    livekit: LiveKit, settings: Settings, *, room: str, dispatch_id: str, metadata: str
) -> AgentPresence:
    """The avatar worker's participant once it is in `room` (NoCapacity if none comes)."""
    s = settings
    now = asyncio.get_running_loop().time
    deadline = now() + s.realtime_join_timeout_s
    redispatch_at = now() + s.realtime_redispatch_after_s
    while True:
        try:
            agent = await livekit.agent_in(room)
            if agent is not None:
                return agent
            if now() >= redispatch_at:
                dispatch_id = await _redispatch_if_untaken(
                    livekit, settings, room=room, dispatch_id=dispatch_id, metadata=metadata
                )
                redispatch_at = now() + s.realtime_redispatch_after_s
        except LiveKitBusy as exc:
            raise NoCapacity(retry_after_s=s.realtime_retry_after_s) from exc
        except LiveKitError as exc:
            raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
        if now() >= deadline:
            logger.warning("no avatar worker joined", extra={"room": room})
            raise NoCapacity(retry_after_s=s.realtime_retry_after_s)
        await asyncio.sleep(JOIN_POLL_S)


async def _redispatch_if_untaken(
    livekit: LiveKit, settings: Settings, *, room: str, dispatch_id: str, metadata: str
) -> str:
    """The dispatch to wait on: the same one if a worker took it, else a new one. The old one
    is left alone: deleting it would end a job assigned to it just after our look. Should
    both produce a job, the worker keeps one avatar (agent/session.py: the later identity
    leaves as superseded)."""
    if await livekit.dispatch_taken(room=room, dispatch_id=dispatch_id):
        return dispatch_id
    logger.info("no worker took the dispatch; dispatching again", extra={"room": room})
    return await livekit.dispatch_agent(
        room=room, agent_name=settings.realtime_agent_name, metadata=metadata
    )
