"""A thin wrapper over the LiveKit server API: the only calls the worker makes to it.

Kept behind a small interface so that tests can record calls with a fake, and so that the
worker never needs credentials in code paths that do not talk to the server.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from livekit import api

logger = logging.getLogger("agent")


class RoomAdmin(ABC):
    @abstractmethod
    async def delete_room(self, room_name: str) -> None:
        """Delete the room (disconnecting everyone); a room that is already gone is fine."""

    @abstractmethod
    async def aclose(self) -> None: ...


class LiveKitRoomAdmin(RoomAdmin):
    def __init__(self, *, url: str | None, api_key: str | None, api_secret: str | None) -> None:
        self._url, self._key, self._secret = url, api_key, api_secret
        self._api: api.LiveKitAPI | None = None

    def _client(self) -> api.LiveKitAPI:
        if self._api is None:  # built on first use: it needs a running event loop
            self._api = api.LiveKitAPI(self._url, self._key, self._secret)
        return self._api

    async def delete_room(self, room_name: str) -> None:
        try:
            await self._client().room.delete_room(api.DeleteRoomRequest(room=room_name))
        except api.TwirpError as exc:
            if exc.code != api.TwirpErrorCode.NOT_FOUND:
                raise
            logger.info("room already deleted", extra={"room": room_name})

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None
