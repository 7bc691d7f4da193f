"""What the avatar worker says about its session through its participant attributes
(agent/README.md, "Session state"), applied to the session: its own end (billed up to the
time it names, which leaves out an empty room's wait) or its failure (nothing billed).

Read from ListParticipants by the reaper, and from the worker's participant_left webhook.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from session_api.livekit import BILLABLE_UNTIL_ATTR, END_REASON_ATTR, ERROR_ATTR, AgentPresence

if TYPE_CHECKING:
    from session_api.realtime import RealtimeService

logger = logging.getLogger("session_api")


def billable_until(agent: AgentPresence) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(agent.attributes[BILLABLE_UNTIL_ATTR]), UTC)
    except (KeyError, ValueError, OverflowError):
        return None


async def apply_worker_state(
    service: RealtimeService, session_id: str, agent: AgentPresence, *, cleanup_later: bool = False
) -> bool:
    """End or fail the session if the worker says it ended or failed; True if this call did.
    `cleanup_later`: the room and faces go in the reaper's next sweep, not now."""
    if agent.state == "failed":
        return await _worker_failed(service, session_id, agent, cleanup_later=cleanup_later)
    if agent.state == "ended":
        reason = (agent.attributes.get(END_REASON_ATTR) or "agent_ended")[:32]
        at = billable_until(agent)
        ended = await service.end(session_id, reason=reason, at=at, cleanup_later=cleanup_later)
        return ended is not None
    return False


async def _worker_failed(
    service: RealtimeService, session_id: str, agent: AgentPresence, *, cleanup_later: bool
) -> bool:
    """The worker could not start the session: failed, nothing billed, room deleted."""
    code = (agent.attributes.get(ERROR_ATTR) or "agent_failed")[:32]
    if not await service.store.fail(session_id, now=service.clock(), code=code):
        return False
    logger.warning("realtime session failed", extra={"session_id": session_id, "code": code})
    if not cleanup_later:  # store.fail made it due now: the reaper's next sweep
        await service.cleanup(session_id)
    return True
