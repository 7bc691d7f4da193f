"""What the worker tells the API and the client about the session, through LiveKit.

The worker and the API share no code and no database; they meet in the room. The worker's own
participant carries the session's state in its attributes (agent/README.md, "Session state"):

- `atlas.state`: `live` once the avatar's tracks are published; `ended` or `failed` at the end;
- `atlas.error`: with `failed`, an error code (`invalid_job`, `missing_provider_keys`,
  `face_fetch_failed`, `face_unusable`, `internal_error`);
- `atlas.end_reason` and `atlas.billable_until` (unix seconds) with `ended`: the API bills up
  to that time, so the wait for an absent client is not billed.

A failure is also sent to the client as a reliable data packet on topic `atlas.session`:
`{"type": "session_failed", "code": "...", "message": "..."}`.

Then the room is handed off: the API's reaper reads the attributes, records the end and deletes
the room. If the room is still there after `handoff_s` (no API is watching), the worker deletes
it itself, so no room outlives its session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from livekit import rtc

from agent.livekit_api import RoomAdmin

logger = logging.getLogger("agent")

STATE_ATTR = "atlas.state"
ERROR_ATTR = "atlas.error"
END_REASON_ATTR = "atlas.end_reason"
BILLABLE_UNTIL_ATTR = "atlas.billable_until"
TOPIC = "atlas.session"


class SessionReporter:
    def __init__(
        self,
        *,
        room: rtc.Room,
        admin: RoomAdmin,
        client_identity: str | None,
        handoff_s: float,
    ) -> None:
        self._room = room
        self._admin = admin
        self._client = client_identity
        self._handoff_s = handoff_s
        self._gone = asyncio.Event()
        room.on("disconnected", self._on_disconnected)

    def _on_disconnected(self, *_: object) -> None:
        self._gone.set()

    async def live(self) -> None:
        await self._set({STATE_ATTR: "live"})

    async def ended(self, reason: str, *, billable_until: float | None = None) -> None:
        await self._set(
            {
                STATE_ATTR: "ended",
                END_REASON_ATTR: reason,
                BILLABLE_UNTIL_ATTR: f"{billable_until or time.time():.3f}",
            }
        )

    async def failed(self, code: str, message: str) -> None:
        """Wait (up to `handoff_s`) for the client, so that it hears why, then tell it and the
        API; the API then fails the session and deletes the room."""
        await self._client_present()
        await self._set({STATE_ATTR: "failed", ERROR_ATTR: code})
        await self.tell_client(code, message)

    async def tell_client(self, code: str, message: str) -> None:
        """The `session_failed` data packet (a session that fails, or dies while live)."""
        if not self._room.isconnected():
            return
        packet = {"type": "session_failed", "code": code, "message": message}
        try:
            await self._room.local_participant.publish_data(
                json.dumps(packet),
                reliable=True,
                topic=TOPIC,
                destination_identities=[self._client] if self._client else [],
            )
        except Exception:
            logger.warning("could not tell the client about the failure", extra={"code": code})

    async def _client_present(self) -> None:
        if self._client is None or not self._room.isconnected():
            return
        if self._client in self._room.remote_participants:
            return
        joined = asyncio.Event()

        def on_join(participant: rtc.RemoteParticipant) -> None:
            if participant.identity == self._client:
                joined.set()

        self._room.on("participant_connected", on_join)
        try:
            await asyncio.wait_for(joined.wait(), self._handoff_s)
        except TimeoutError:
            pass
        finally:
            self._room.off("participant_connected", on_join)

    async def hand_off_room(self) -> None:
        """Wait up to `handoff_s` for the API to delete the room; delete it if it did not."""
        if self._room.isconnected():
            try:
                await asyncio.wait_for(self._gone.wait(), self._handoff_s)
                return
            except TimeoutError:
                logger.info(
                    "room not closed by the API; deleting it", extra={"room": self._room.name}
                )
        try:
            await self._admin.delete_room(self._room.name)
        except Exception:
            logger.exception("deleting the room failed", extra={"room": self._room.name})

    async def _set(self, attributes: dict[str, str]) -> None:
        if not self._room.isconnected():
            return
        try:
            await self._room.local_participant.set_attributes(attributes)
        except Exception:
            logger.warning("could not publish the session state", extra=attributes)

    def aclose(self) -> None:
        self._room.off("disconnected", self._on_disconnected)
