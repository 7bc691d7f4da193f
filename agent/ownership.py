"""Rooms we own: the worker deletes a room only when the API created it for this session.

The API names its rooms `atlas-rt-<session id>` and puts an ownership mark in the dispatch
metadata (`room_mark`): an HMAC-SHA256, keyed with LIVEKIT_API_SECRET, of the room's name. Only
a holder of the secret can make it, and it names one room, so a dispatch of ours copied into
another room does not verify either. A dispatch without a valid mark (a junk or misconfigured
one, plugin mode in a customer's room) ends by leaving the room, never by deleting it.

The same function is in session_api/livekit.py (agent and session_api share no code; a test
checks the two agree).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from livekit.agents import JobContext

from agent.config import AgentSettings
from agent.livekit_api import LiveKitRoomAdmin, RoomAdmin

logger = logging.getLogger("agent")

ROOM_PREFIX = "atlas-rt-"
MARK_KEY = "room_mark"
_DOMAIN = b"atlas-room-owner\x00"


def room_mark(room: str, secret: str) -> str:
    """The API's ownership mark for `room`."""
    return hmac.new(secret.encode(), _DOMAIN + room.encode(), hashlib.sha256).hexdigest()


def mark_in(raw_metadata: str) -> str | None:
    """The mark in raw dispatch metadata, whatever else it holds (or None)."""
    try:
        data: Any = json.loads(raw_metadata)
    except (ValueError, TypeError):
        return None
    mark = data.get(MARK_KEY) if isinstance(data, dict) else None
    return mark if isinstance(mark, str) else None


def owns_room(room: str, raw_metadata: str, secret: str | None) -> bool:
    """Whether the dispatch metadata proves that our API created `room`."""
    mark = mark_in(raw_metadata)
    if not secret or mark is None or not room.startswith(ROOM_PREFIX):
        return False
    return hmac.compare_digest(mark, room_mark(room, secret))


class OwnedRoomAdmin(RoomAdmin):
    """A RoomAdmin that deletes only the job's own room, and only when we own it."""

    def __init__(self, inner: RoomAdmin, *, room: str, owned: bool) -> None:
        self._inner, self._room, self._owned = inner, room, owned

    async def delete_room(self, room_name: str) -> None:
        if not self._owned or room_name != self._room:
            logger.warning("not deleting a room this API did not create", extra={"room": room_name})
            return
        await self._inner.delete_room(room_name)

    async def aclose(self) -> None:
        await self._inner.aclose()


class NoRoomAdmin(RoomAdmin):
    """The admin of a room we do not own: it holds no credentials and calls nothing."""

    async def delete_room(self, room_name: str) -> None:
        raise AssertionError("OwnedRoomAdmin never deletes a room it does not own")

    async def aclose(self) -> None:
        return None


def room_admin_for(ctx: JobContext, settings: AgentSettings) -> RoomAdmin:
    """The job's room admin: it deletes the job's room only if our API made it. For any other
    room (plugin mode: the agent's) it holds no API client at all, so the job does with the
    room only what its own room token allows."""
    secret = settings.livekit_api_secret.get_secret_value() if settings.livekit_api_secret else None
    room = ctx.job.room.name
    owned = owns_room(room, ctx.job.metadata, secret)
    inner: RoomAdmin = NoRoomAdmin()
    if owned:
        inner = LiveKitRoomAdmin(
            url=settings.livekit_url, api_key=settings.livekit_api_key, api_secret=secret
        )
    return OwnedRoomAdmin(inner, room=room, owned=owned)
