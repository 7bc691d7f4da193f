"""The realtime_sessions table (the session repository): every state change is one short
transaction, so the row is the single source of truth shared by every API process.

- capacity: a create reserves a slot by inserting a `starting` row, under a lock (an advisory
  transaction lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so the configured number of
  sessions is never exceeded, however many API processes there are;
- ending: every path goes through `end_once`, one locked transaction that ends a live row or
  does nothing. The winner records the duration (the bill); the others see None.

`tx` names a database transaction here, never a realtime session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from session_api.db.models import RealtimeSession
from session_api.db.session import Database
from session_api.pricing import estimated_cost, round_duration

LIVE = ("starting", "active")
CLEANUP_RETRY = timedelta(seconds=30)
_CAPACITY_LOCK = 0x61746C6173  # pg_advisory_xact_lock key: "atlas"


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
        async with self.db.session() as tx:
            return await _live_count(tx)

    async def reserve(self, row: RealtimeSession, *, capacity: int) -> bool:
        """Insert a `starting` row if fewer than `capacity` sessions are live; False if full."""
        async with self.db.write() as tx:
            if not self.db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
                await tx.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CAPACITY_LOCK}
                )
            if await _live_count(tx) >= capacity:
                return False
            tx.add(row)
        return True

    async def activate(self, session_id: str, *, started_at: datetime) -> bool:
        """starting -> active from `started_at`, the worker's join (the create that waited for
        it, or LiveKit's participant_joined webhook, whichever comes first: both name the same
        join). True if the session is active now; False if it failed or ended meanwhile."""
        async with self.db.write() as tx:
            row = await _locked(tx, session_id)
            if row is None:
                return False
            if row.status == "starting":
                row.status = "active"
                row.started_at = started_at
                row.expires_at = started_at + timedelta(seconds=row.max_duration_s)
            return row.status == "active"

    async def fail(self, session_id: str, *, now: datetime, code: str = "create_failed") -> bool:
        """A session that never went live (a create that did not finish, a worker that never
        came or could not start it): `failed` with `code`, no bill, cleanup due now."""
        async with self.db.write() as tx:
            row = await _locked(tx, session_id)
            if row is None or row.status not in LIVE:
                return False
            row.status = "failed"
            row.ended_at = now
            row.duration_s = 0.0
            row.end_reason = code
            row.room_cleanup_due_at = now
        return True

    async def active_rooms(self, *, limit: int = 200) -> list[tuple[str, str]]:
        """(session id, room) of active sessions, the oldest first."""
        async with self.db.session() as tx:
            rows = await tx.execute(
                select(RealtimeSession.id, RealtimeSession.room)
                .where(RealtimeSession.status == "active")
                .order_by(RealtimeSession.started_at)
                .limit(limit)
            )
            return [(session_id, room) for session_id, room in rows.all()]

    async def get(self, session_id: str, *, key_id: int) -> RealtimeSession | None:
        async with self.db.session() as tx:
            row = await tx.get(RealtimeSession, session_id)
        if row is None or row.key_id != key_id:
            return None
        return row

    async def end_once(
        self,
        session_id: str,
        *,
        at: datetime,
        reason: str,
        now: datetime,
        cleanup_at: datetime | None = None,
    ) -> EndedSession | None:
        """End an active session at `at` (clamped to [started, expires]); None if not active.
        Its cleanup is due at `cleanup_at` (by default a retry's delay later: the caller
        cleans up at once)."""
        async with self.db.write() as tx:
            row = await _locked(tx, session_id)
            if row is None or row.status != "active" or row.started_at is None:
                return None
            ended_at = min(max(at, row.started_at), row.expires_at)
            row.status = "ended"
            row.ended_at = ended_at
            row.duration_s = round_duration((ended_at - row.started_at).total_seconds())
            row.end_reason = reason
            row.room_cleanup_due_at = cleanup_at or now + CLEANUP_RETRY
            return EndedSession(
                session_id=row.id,
                room=row.room,
                reason=reason,
                ended_at=ended_at,
                duration_s=row.duration_s,
                cents_per_hour=row.price_cents_per_hour,
            )

    async def swap_face(self, session_id: str, *, seen_version: int, key: str) -> bool:
        """Compare-and-swap: the face version `seen_version` -> the next, with `key` added to
        the session's face objects; False if the session moved on (another swap, or its end).
        One short write, never held across a LiveKit call."""
        async with self.db.write() as tx:
            row = await _locked(tx, session_id)
            if row is None or row.status != "active" or row.face_version != seen_version:
                return False
            row.face_version = seen_version + 1
            row.face_keys = json.dumps([*face_keys_of(row), key])
        return True

    async def expired(self, now: datetime, *, limit: int = 100) -> list[str]:
        async with self.db.session() as tx:
            rows = await tx.scalars(
                select(RealtimeSession.id)
                .where(RealtimeSession.status == "active", RealtimeSession.expires_at <= now)
                .order_by(RealtimeSession.expires_at)
                .limit(limit)
            )
            return list(rows)

    async def stale_starting(self, cutoff: datetime, *, limit: int = 100) -> list[str]:
        async with self.db.session() as tx:
            rows = await tx.scalars(
                select(RealtimeSession.id)
                .where(RealtimeSession.status == "starting", RealtimeSession.created_at <= cutoff)
                .limit(limit)
            )
            return list(rows)

    async def claim_cleanup(self, now: datetime, *, limit: int = 50) -> list[str]:
        """Sessions whose room/face cleanup is due, each claimed by one caller only."""
        async with self.db.session() as tx:
            due = (
                await tx.execute(
                    select(RealtimeSession.id, RealtimeSession.room_cleanup_due_at)
                    .where(RealtimeSession.room_cleanup_due_at <= now)
                    .limit(limit)
                )
            ).all()
        claimed = []
        for session_id, seen in due:
            async with self.db.write() as tx:
                result = await tx.execute(
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
        async with self.db.write() as tx:
            await tx.execute(
                update(RealtimeSession)
                .where(RealtimeSession.id == session_id)
                .values(room_cleanup_due_at=None)
            )


async def _live_count(tx: AsyncSession) -> int:
    n = await tx.scalar(
        select(func.count()).select_from(RealtimeSession).where(RealtimeSession.status.in_(LIVE))
    )
    return int(n or 0)


async def _locked(tx: AsyncSession, session_id: str) -> RealtimeSession | None:
    return await tx.get(RealtimeSession, session_id, with_for_update=True)


def face_keys_of(row: RealtimeSession) -> list[str]:
    keys = json.loads(row.face_keys or "[]")
    return [str(k) for k in keys]
