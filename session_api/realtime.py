"""Realtime sessions: create, look up, swap the face, end exactly once, bill.

See docs/architecture.md, "Realtime sessions and the LiveKit wiring".

The realtime_sessions row is the single source of truth, shared by every API process:

- capacity: a create reserves a slot by inserting a `starting` row, under a lock (an advisory
  transaction lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so the configured number of
  sessions is never exceeded, however many API processes there are;
- ending: every path (DELETE, max duration via the reaper, LiveKit's room_finished) goes
  through `end_once`, one locked transaction that ends an `active` row or does nothing. The
  winner records the duration (the bill); the others see None. The room and face cleanup that
  follows is retried by the reaper until it succeeds (`room_cleanup_due_at`).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from session_api.clock import Clock, utcnow
from session_api.config import Settings
from session_api.db.models import RealtimeSession
from session_api.db.session import Database
from session_api.errors import (
    NoCapacity,
    NotFound,
    StorageUnavailable,
    TemporarilyUnavailable,
)
from session_api.faces import FaceChecker, FaceFetcher, FaceFile
from session_api.livekit import ROOM_PREFIX, LiveKit, LiveKitBusy, LiveKitError, room_name
from session_api.storage import Storage, StorageFailure

logger = logging.getLogger("session_api")

Mode = Literal["conversation", "passthrough"]
MODES: tuple[Mode, ...] = ("conversation", "passthrough")
LIVE = ("starting", "active")
CLEANUP_RETRY = timedelta(seconds=30)
_CAPACITY_LOCK = 0x61746C6173  # pg_advisory_xact_lock key: "atlas"


def new_session_id() -> str:
    """`ses_` + 24 url-safe random characters (144 bits)."""
    return "ses_" + secrets.token_urlsafe(18)


def session_id_of_room(room: str) -> str | None:
    return room.removeprefix(ROOM_PREFIX) if room.startswith(ROOM_PREFIX) else None


def price_cents(settings: Settings, mode: Mode) -> int:
    per_hour = (
        settings.realtime_price_conversation
        if mode == "conversation"
        else settings.realtime_price_passthrough
    )
    return int((per_hour * 100).to_integral_value(ROUND_HALF_UP))


def dollars(cents: Decimal) -> str:
    value = (cents / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"${value}"


def estimated_cost(duration_s: float, cents_per_hour: int) -> str:
    """Per-second proration, rounded half up to the cent: 322.0 s at $10/h -> "$0.89"."""
    cents = Decimal(str(duration_s)) * cents_per_hour / 3600
    return dollars(cents)


def pricing_text(cents_per_hour: int) -> str:
    """'$10/hour, prorated per second' (or '$7.50/hour, ...' for a price with cents)."""
    whole, rest = divmod(cents_per_hour, 100)
    price = f"${whole}" if rest == 0 else f"${whole}.{rest:02d}"
    return f"{price}/hour, prorated per second"


def round_duration(seconds: float) -> float:
    return round(max(0.0, seconds), 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSession:
    key_id: int
    mode: Mode
    max_duration_s: int
    options: Mapping[str, str]
    face: FaceFile


@dataclass(frozen=True, slots=True, kw_only=True)
class CreatedSession:
    session_id: str
    room: str
    token: str
    mode: Mode
    max_duration_s: int
    cents_per_hour: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    session_id: str
    status: str
    room: str
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EndedSession:
    session_id: str
    room: str
    reason: str
    ended_at: datetime
    duration_s: float
    cents_per_hour: int

    @property
    def cost(self) -> str:
        return estimated_cost(self.duration_s, self.cents_per_hour)


class SessionStore:
    """The realtime_sessions table: every state change is one short transaction."""

    def __init__(self, *, db: Database) -> None:
        self.db = db

    async def live_count(self) -> int:
        async with self.db.session() as session:
            return await _live_count(session)

    async def reserve(self, row: RealtimeSession, *, capacity: int) -> bool:
        """Insert a `starting` row if fewer than `capacity` sessions are live; False if full."""
        async with self.db.write() as session:
            if not self.db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CAPACITY_LOCK}
                )
            if await _live_count(session) >= capacity:
                return False
            session.add(row)
        return True

    async def activate(self, session_id: str, *, started_at: datetime, max_duration_s: int) -> bool:
        """starting -> active (one UPDATE; False if the reaper failed it meanwhile)."""
        async with self.db.write() as session:
            result = await session.execute(
                update(RealtimeSession)
                .where(RealtimeSession.id == session_id, RealtimeSession.status == "starting")
                .values(
                    status="active",
                    started_at=started_at,
                    expires_at=started_at + timedelta(seconds=max_duration_s),
                )
            )
        return getattr(result, "rowcount", 0) == 1

    async def fail(self, session_id: str, *, now: datetime) -> bool:
        """A create that did not finish: no bill, cleanup due now."""
        async with self.db.write() as session:
            row = await _locked(session, session_id)
            if row is None or row.status != "starting":
                return False
            row.status = "failed"
            row.ended_at = now
            row.duration_s = 0.0
            row.end_reason = "create_failed"
            row.room_cleanup_due_at = now
        return True

    async def get(self, session_id: str, *, key_id: int) -> RealtimeSession | None:
        async with self.db.session() as session:
            row = await session.get(RealtimeSession, session_id)
        if row is None or row.key_id != key_id:
            return None
        return row

    async def end_once(
        self, session_id: str, *, at: datetime, reason: str, now: datetime
    ) -> EndedSession | None:
        """End an active session at `at` (clamped to [started, expires]); None if not active."""
        async with self.db.write() as session:
            row = await _locked(session, session_id)
            if row is None or row.status != "active" or row.started_at is None:
                return None
            ended_at = min(max(at, row.started_at), row.expires_at)
            row.status = "ended"
            row.ended_at = ended_at
            row.duration_s = round_duration((ended_at - row.started_at).total_seconds())
            row.end_reason = reason
            row.room_cleanup_due_at = now + CLEANUP_RETRY
            return EndedSession(
                session_id=row.id,
                room=row.room,
                reason=reason,
                ended_at=ended_at,
                duration_s=row.duration_s,
                cents_per_hour=row.price_cents_per_hour,
            )

    @asynccontextmanager
    async def locked_active(self, session_id: str, key_id: int) -> AsyncIterator[RealtimeSession]:
        """The caller's active session, row-locked for one transaction; NotFound otherwise."""
        async with self.db.write() as session:
            row = await _locked(session, session_id)
            if row is None or row.key_id != key_id or row.status != "active":
                raise NotFound("Session not found or already ended.")
            yield row

    async def expired(self, now: datetime, *, limit: int = 100) -> list[str]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(RealtimeSession.id)
                .where(RealtimeSession.status == "active", RealtimeSession.expires_at <= now)
                .order_by(RealtimeSession.expires_at)
                .limit(limit)
            )
            return list(rows)

    async def stale_starting(self, cutoff: datetime, *, limit: int = 100) -> list[str]:
        async with self.db.session() as session:
            rows = await session.scalars(
                select(RealtimeSession.id)
                .where(RealtimeSession.status == "starting", RealtimeSession.created_at <= cutoff)
                .limit(limit)
            )
            return list(rows)

    async def claim_cleanup(self, now: datetime, *, limit: int = 50) -> list[str]:
        """Sessions whose room/face cleanup is due, each claimed by one caller only."""
        async with self.db.session() as session:
            due = (
                await session.execute(
                    select(RealtimeSession.id, RealtimeSession.room_cleanup_due_at)
                    .where(RealtimeSession.room_cleanup_due_at <= now)
                    .limit(limit)
                )
            ).all()
        claimed = []
        for session_id, seen in due:
            async with self.db.write() as session:
                result = await session.execute(
                    update(RealtimeSession)
                    .where(
                        RealtimeSession.id == session_id,
                        RealtimeSession.room_cleanup_due_at == seen,
                    )
                    .values(room_cleanup_due_at=now + CLEANUP_RETRY)
                )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(session_id)
        return claimed

    async def cleanup_done(self, session_id: str) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(RealtimeSession)
                .where(RealtimeSession.id == session_id)
                .values(room_cleanup_due_at=None)
            )


async def _live_count(session: AsyncSession) -> int:
    n = await session.scalar(
        select(func.count()).select_from(RealtimeSession).where(RealtimeSession.status.in_(LIVE))
    )
    return int(n or 0)


async def _locked(session: AsyncSession, session_id: str) -> RealtimeSession | None:
    return await session.get(RealtimeSession, session_id, with_for_update=True)


def face_keys_of(row: RealtimeSession) -> list[str]:
    keys = json.loads(row.face_keys or "[]")
    return [str(k) for k in keys]


class RealtimeService:
    """Sessions on LiveKit: rooms, dispatch, tokens, face swaps, ends and their cleanup."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        storage: Storage,
        livekit: LiveKit,
        checker: FaceChecker,
        fetcher: FaceFetcher,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.store = SessionStore(db=db)
        self.storage = storage
        self.livekit = livekit
        self.checker = checker
        self.fetcher = fetcher
        self.clock = clock

    # --- create -------------------------------------------------------------------------------
    async def create(self, new: NewSession) -> CreatedSession:
        s = self.settings
        now = self.clock()
        session_id = new_session_id()
        room = room_name(session_id)
        face_key = f"realtime/{session_id}/face-1.{new.face.extension}"
        cents = price_cents(s, new.mode)
        row = RealtimeSession(
            id=session_id,
            key_id=new.key_id,
            mode=new.mode,
            status="starting",
            room=room,
            max_duration_s=new.max_duration_s,
            price_cents_per_hour=cents,
            face_version=1,
            face_keys=json.dumps([face_key]),
            created_at=now,
            expires_at=now + timedelta(seconds=new.max_duration_s),
        )
        if not await self.store.reserve(row, capacity=s.realtime_capacity):
            raise NoCapacity(retry_after_s=s.realtime_retry_after_s)
        try:
            token = await self._start(session_id, new, face_key)
        except Exception:
            await self._abort(session_id)
            raise
        logger.info(
            "realtime session created",
            extra={"session_id": session_id, "key_id": new.key_id, "mode": new.mode},
        )
        return CreatedSession(
            session_id=session_id,
            room=room,
            token=token,
            mode=new.mode,
            max_duration_s=new.max_duration_s,
            cents_per_hour=cents,
        )

    async def _start(self, session_id: str, new: NewSession, face_key: str) -> str:
        s = self.settings
        room = room_name(session_id)
        await self._put_face(face_key, new.face)
        face = await self.face_ref(face_key, version=1, max_duration_s=new.max_duration_s)
        dispatch = {
            "session_id": session_id,
            "mode": new.mode,
            "face": face,
            "max_duration_seconds": new.max_duration_s,
            "options": dict(new.options),
        }
        try:
            await self.livekit.create_room(
                room,
                empty_timeout_s=s.realtime_empty_timeout_s,
                departure_timeout_s=s.realtime_departure_timeout_s,
                metadata=json.dumps({"face": face}),
            )
            await self.livekit.dispatch_agent(
                room=room, agent_name=s.realtime_agent_name, metadata=json.dumps(dispatch)
            )
        except LiveKitBusy as exc:
            raise NoCapacity(retry_after_s=s.realtime_retry_after_s) from exc
        except LiveKitError as exc:
            raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
        token = self.livekit.client_token(
            session_id=session_id, ttl_s=new.max_duration_s + s.realtime_token_margin_s
        )
        started = self.clock()
        if not await self.store.activate(
            session_id, started_at=started, max_duration_s=new.max_duration_s
        ):
            raise TemporarilyUnavailable("Session start timed out.")
        return token

    async def _abort(self, session_id: str) -> None:
        """Undo a create that failed halfway: no bill; room and face removed now or later."""
        try:
            if await self.store.fail(session_id, now=self.clock()):
                await self.cleanup(session_id)
        except Exception:
            logger.exception("realtime abort failed", extra={"session_id": session_id})

    async def _put_face(self, key: str, face: FaceFile) -> None:
        try:
            await self.storage.put_file(key, face.path, content_type=face.content_type)
        except StorageFailure as exc:
            raise StorageUnavailable() from exc

    async def face_ref(self, key: str, *, version: int, max_duration_s: int) -> dict[str, Any]:
        """`{"storage_key": ...}` for shared file storage, else a presigned `{"url": ...}`."""
        kind = self.settings.realtime_face_ref
        if kind == "auto":
            kind = "storage_key" if self.settings.storage_kind == "file" else "url"
        if kind == "storage_key":
            return {"storage_key": key, "version": version}
        expires_in = min(max_duration_s + self.settings.realtime_token_margin_s, 7 * 24 * 3600)
        try:
            url = await self.storage.presign(key, expires_in=expires_in)
        except StorageFailure as exc:
            raise StorageUnavailable() from exc
        return {"url": url, "version": version}

    # --- read ---------------------------------------------------------------------------------
    async def view(self, session_id: str, *, key_id: int) -> SessionView:
        row = await self.store.get(session_id, key_id=key_id)
        if row is None or row.status not in ("active", "ended"):
            raise NotFound("Session not found.")
        if row.status == "ended":
            duration = row.duration_s or 0.0
        else:
            assert row.started_at is not None
            now = min(self.clock(), row.expires_at)
            duration = round_duration((now - row.started_at).total_seconds())
        return SessionView(
            session_id=row.id,
            status=row.status,
            room=row.room,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_s=duration,
        )

    async def require_active(self, session_id: str, *, key_id: int) -> RealtimeSession:
        row = await self.store.get(session_id, key_id=key_id)
        if row is None or row.status != "active":
            raise NotFound("Session not found or already ended.")
        return row

    # --- face swap ----------------------------------------------------------------------------
    async def swap_face(self, session_id: str, *, key_id: int, face: FaceFile) -> int:
        """Store the new face and bump its version in the room metadata; returns the version."""
        key = f"realtime/{session_id}/face-{secrets.token_hex(6)}.{face.extension}"
        await self._put_face(key, face)
        try:
            async with self.store.locked_active(session_id, key_id) as row:
                version = row.face_version + 1
                ref = await self.face_ref(key, version=version, max_duration_s=row.max_duration_s)
                try:
                    await self.livekit.update_room_metadata(row.room, json.dumps({"face": ref}))
                except LiveKitError as exc:
                    raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
                row.face_version = version
                row.face_keys = json.dumps([*face_keys_of(row), key])
        except Exception:
            await self._delete_faces([key])
            raise
        logger.info("realtime face swapped", extra={"session_id": session_id, "version": version})
        return version

    # --- end ----------------------------------------------------------------------------------
    async def end(
        self, session_id: str, *, reason: str, at: datetime | None = None
    ) -> EndedSession | None:
        """End an active session once (None if it was not active), then clean up."""
        now = self.clock()
        ended = await self.store.end_once(session_id, at=at or now, reason=reason, now=now)
        if ended is None:
            return None
        logger.info(
            "realtime session ended",
            extra={
                "session_id": session_id,
                "reason": reason,
                "duration_s": ended.duration_s,
            },
        )
        await self.cleanup(session_id, room_gone=reason == "room_finished")
        return ended

    async def cleanup(self, session_id: str, *, room_gone: bool = False) -> bool:
        """Delete the room and the face objects; on failure the reaper retries later."""
        async with self.store.db.session() as session:
            row = await session.get(RealtimeSession, session_id)
        if row is None:
            return False
        try:
            if not room_gone:
                await self.livekit.delete_room(row.room)
            await self.storage.delete(*face_keys_of(row))
        except (LiveKitError, StorageFailure):
            logger.warning("realtime cleanup deferred", extra={"session_id": session_id})
            return False
        await self.store.cleanup_done(session_id)
        return True

    async def _delete_faces(self, keys: list[str]) -> None:
        try:
            await self.storage.delete(*keys)
        except StorageFailure:
            logger.warning("face cleanup failed")

    # --- capacity -----------------------------------------------------------------------------
    async def busy(self) -> bool:
        return await self.store.live_count() >= self.settings.realtime_capacity

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self.livekit.aclose()
