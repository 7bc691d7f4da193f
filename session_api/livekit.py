"""A thin wrapper over livekit-api: rooms, agent dispatch, room metadata, tokens and webhooks.

Everything LiveKit-shaped stays here; the realtime service sees plain Python values and two
domain errors. Built in the app's lifespan (it owns an aiohttp session) and closed by aclose().
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
from livekit import api

logger = logging.getLogger("session_api")


class LiveKitError(Exception):
    """LiveKit could not be reached or refused a call. str() holds no secrets."""


class LiveKitBusy(LiveKitError):
    """LiveKit answered resource_exhausted: no room or agent capacity left."""


class WebhookRejected(Exception):
    """A webhook whose signature, body hash or JSON did not verify."""


def client_identity(session_id: str) -> str:
    return f"user-{session_id}"


def room_name(session_id: str) -> str:
    return f"atlas-rt-{session_id}"


ROOM_PREFIX = "atlas-rt-"


def session_id_of_room(room: str) -> str | None:
    return room.removeprefix(ROOM_PREFIX) if room.startswith(ROOM_PREFIX) else None


ROOM_MARK_KEY = "room_mark"  # in the dispatch metadata
_MARK_DOMAIN = b"atlas-room-owner\x00"


def room_mark(room: str, secret: str) -> str:
    """The mark that tells the worker this API created `room` (agent/ownership.py checks it):
    an HMAC-SHA256 of the room name keyed with the API secret, so nobody else can make it and
    it names one room only. The worker deletes no room without it."""
    return hmac.new(secret.encode(), _MARK_DOMAIN + room.encode(), hashlib.sha256).hexdigest()


# What the avatar worker tells the API and the client through its participant attributes
# (the contract is documented in agent/README.md; agent and session_api share no code).
STATE_ATTR = "atlas.state"  # "live" | "ended" | "failed"
ERROR_ATTR = "atlas.error"  # failed: an error code
END_REASON_ATTR = "atlas.end_reason"  # ended: why
BILLABLE_UNTIL_ATTR = "atlas.billable_until"  # ended: unix time (s) the bill stops at

# livekit-server closes a participant whose connection went silent (a killed process, a lost
# network) after its ICE disconnected (10 s) and failed (5 s) timeouts and its own disconnect
# cleanup (5 s): constants of the server (pkg/rtc/transport.go, participant.go), not settings.
# It reports that close as disconnect reason CONNECTION_TIMEOUT, so the participant was last
# heard from this long before its participant_left.
CONNECTION_TIMEOUT_S = 20.0


def is_agent(participant: api.ParticipantInfo) -> bool:
    return participant.kind == api.ParticipantInfo.Kind.AGENT


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """The avatar worker's participant in a session's room, as the server lists it."""

    identity: str
    attributes: dict[str, str]
    joined_at: datetime | None = None  # when it joined, by LiveKit's clock
    timed_out: bool = False  # it left because LiveKit timed its silent connection out

    @classmethod
    def of(cls, participant: api.ParticipantInfo) -> AgentPresence:
        ms = participant.joined_at_ms or participant.joined_at * 1000
        joined = datetime.fromtimestamp(ms / 1000, UTC) if ms > 0 else None
        timed_out = participant.disconnect_reason == api.DisconnectReason.CONNECTION_TIMEOUT
        return cls(participant.identity, dict(participant.attributes), joined, timed_out)

    @property
    def state(self) -> str:
        return self.attributes.get(STATE_ATTR, "")


class LiveKit:
    def __init__(self, *, url: str, api_key: str, api_secret: str, timeout_s: float = 5.0) -> None:
        self._api = api.LiveKitAPI(
            url=url,
            api_key=api_key,
            api_secret=api_secret,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            failover=False,
        )
        self._api_key = api_key
        self._api_secret = api_secret
        self._webhooks = api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))

    @asynccontextmanager
    async def _call(self, op: str) -> AsyncIterator[None]:
        try:
            yield
        except api.ServerError as exc:
            logger.warning("livekit call failed", extra={"op": op, "code": exc.code})
            if exc.code == api.ServerErrorCode.RESOURCE_EXHAUSTED:
                raise LiveKitBusy(f"{op}: {exc.code}") from exc
            raise LiveKitError(f"{op}: {exc.code}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("livekit unreachable", extra={"op": op, "error": type(exc).__name__})
            raise LiveKitError(f"{op}: {type(exc).__name__}") from exc

    async def create_room(
        self, name: str, *, empty_timeout_s: int, departure_timeout_s: int, metadata: str
    ) -> None:
        request = api.CreateRoomRequest(
            name=name,
            empty_timeout=empty_timeout_s,
            departure_timeout=departure_timeout_s,
            metadata=metadata,
        )
        async with self._call("create_room"):
            await self._api.room.create_room(request)

    async def delete_room(self, name: str) -> bool:
        """Delete the room; False if LiveKit no longer has it (already gone is fine)."""
        try:
            async with self._call("delete_room"):
                await self._api.room.delete_room(api.DeleteRoomRequest(room=name))
        except LiveKitError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    async def update_room_metadata(self, name: str, metadata: str) -> None:
        async with self._call("update_room_metadata"):
            await self._api.room.update_room_metadata(
                api.UpdateRoomMetadataRequest(room=name, metadata=metadata)
            )

    async def dispatch_agent(self, *, room: str, agent_name: str, metadata: str) -> str:
        """Explicit dispatch of `agent_name` into `room`; returns the dispatch id."""
        request = api.CreateAgentDispatchRequest(
            agent_name=agent_name, room=room, metadata=metadata
        )
        async with self._call("create_dispatch"):
            dispatch = await self._api.agent_dispatch.create_dispatch(request)
        return dispatch.id

    async def dispatch_taken(self, *, room: str, dispatch_id: str) -> bool:
        """Whether a worker took the dispatch (LiveKit records the job it assigned). A job
        offered while every worker read as full is dropped, and the dispatch stays empty."""
        async with self._call("get_dispatch"):
            dispatch = await self._api.agent_dispatch.get_dispatch(dispatch_id, room)
        return dispatch is not None and len(dispatch.state.jobs) > 0

    async def existing_rooms(self, names: list[str]) -> set[str]:
        """Which of `names` the server still has."""
        if not names:
            return set()
        async with self._call("list_rooms"):
            listed = await self._api.room.list_rooms(api.ListRoomsRequest(names=names))
        return {room.name for room in listed.rooms}

    async def agent_in(self, room: str) -> AgentPresence | None:
        """The agent participant in `room` (our avatar worker), or None (none, or no room)."""
        try:
            async with self._call("list_participants"):
                request = api.ListParticipantsRequest(room=room)
                listed = await self._api.room.list_participants(request)
        except LiveKitError as exc:
            if _not_found(exc):
                return None
            raise
        for participant in listed.participants:
            if is_agent(participant):
                return AgentPresence.of(participant)
        return None

    def room_mark(self, room: str) -> str:
        return room_mark(room, self._api_secret)

    def client_token(self, *, session_id: str, ttl_s: int) -> str:
        """A join token for the session's client: its own identity, its own room only."""
        grants = api.VideoGrants(
            room_join=True,
            room=room_name(session_id),
            can_publish=True,
            can_subscribe=True,
            can_publish_data=True,
            can_update_own_metadata=False,
        )
        token = (
            api.AccessToken(self._api_key, self._api_secret)
            .with_identity(client_identity(session_id))
            .with_kind("standard")
            .with_grants(grants)
            .with_ttl(timedelta(seconds=ttl_s))
        )
        return token.to_jwt()

    def receive_webhook(self, body: str, authorization: str | None) -> api.WebhookEvent:
        """Verify LiveKit's signed webhook (JWT over the body's SHA-256) and parse it."""
        if not authorization:
            raise WebhookRejected("missing Authorization")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            return self._webhooks.receive(body, token)
        except Exception as exc:  # jwt, hash and JSON errors all mean "not from LiveKit"
            raise WebhookRejected(type(exc).__name__) from exc

    async def aclose(self) -> None:
        await self._api.aclose()


def _not_found(exc: LiveKitError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, api.ServerError) and cause.code == api.ServerErrorCode.NOT_FOUND
