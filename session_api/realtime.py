"""The realtime session service: create, look up, swap the face, end exactly once, clean up.

Rooms, dispatch, tokens and face objects live here; the row itself is the repository's
(session_api/realtime_store.py) and the price is session_api/pricing.py's. Every end path
(DELETE, max duration via the reaper, LiveKit's room_finished) goes through the repository's
`end_once`; the room and face cleanup that follows is retried by the reaper until it succeeds
(`room_cleanup_due_at`). Waiting for the worker to join is realtime_join.py's job, checking
live sessions against LiveKit realtime_reconcile.py's, the worker's own end or failure
realtime_worker.py's.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
from session_api.livekit import (
    ROOM_MARK_KEY,
    LiveKit,
    LiveKitBusy,
    LiveKitError,
    room_name,
)
from session_api.pricing import Mode, estimated_cost, price_cents, round_duration
from session_api.realtime_join import wait_for_worker
from session_api.realtime_reconcile import Reconciler
from session_api.realtime_store import EndedSession, SessionStore, face_keys_of
from session_api.storage import Storage, StorageFailure

logger = logging.getLogger("session_api")

MODES: tuple[Mode, ...] = ("conversation", "passthrough")
SWAP_ATTEMPTS = 5  # compare-and-swap tries of one face swap racing others
__all__ = ["MODES", "CreatedSession", "Mode", "NewSession", "RealtimeService"]


def new_session_id() -> str:
    """`ses_` + 24 url-safe random characters (144 bits)."""
    return "ses_" + secrets.token_urlsafe(18)


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
    estimated_cost: str
    error_code: str | None  # failed sessions: why


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
        self._reconciler = Reconciler(self)

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
        dispatch = json.dumps(
            {
                "session_id": session_id,
                "mode": new.mode,
                "face": face,
                "max_duration_seconds": new.max_duration_s,
                "options": {**new.options, "empty_timeout_seconds": s.realtime_empty_timeout_s},
                ROOM_MARK_KEY: self.livekit.room_mark(room),
            }
        )
        room_timeout_s = s.realtime_empty_timeout_s + s.realtime_room_timeout_margin_s
        try:
            await self.livekit.create_room(
                room,
                empty_timeout_s=room_timeout_s,
                departure_timeout_s=room_timeout_s,
                metadata=json.dumps({"face": face}),
            )
            dispatch_id = await self.livekit.dispatch_agent(
                room=room, agent_name=s.realtime_agent_name, metadata=dispatch
            )
        except LiveKitBusy as exc:
            raise NoCapacity(retry_after_s=s.realtime_retry_after_s) from exc
        except LiveKitError as exc:
            raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
        token = self.livekit.client_token(
            session_id=session_id, ttl_s=new.max_duration_s + s.realtime_token_margin_s
        )
        agent = await wait_for_worker(
            self.livekit, s, room=room, dispatch_id=dispatch_id, metadata=dispatch
        )
        if not await self.worker_joined(session_id, agent.joined_at):
            raise TemporarilyUnavailable("Session start timed out.")
        return token

    async def worker_joined(self, session_id: str, joined_at: datetime | None) -> bool:
        """The avatar worker is in the room: the session is active and billed from its join
        (LiveKit's time of it, never later than now). True if the session is active."""
        now = self.clock()
        started = min(joined_at, now) if joined_at is not None else now
        return await self.store.activate(session_id, started_at=started)

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
        if row is None or row.status not in ("active", "ended", "failed"):
            raise NotFound("Session not found.")
        if row.status == "active":
            assert row.started_at is not None
            now = min(self.clock(), row.expires_at)
            duration = round_duration((now - row.started_at).total_seconds())
        else:
            duration = row.duration_s or 0.0
        return SessionView(
            session_id=row.id,
            status=row.status,
            room=row.room,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_s=duration,
            estimated_cost=estimated_cost(duration, row.price_cents_per_hour),
            error_code=row.end_reason if row.status == "failed" else None,
        )

    async def require_active(self, session_id: str, *, key_id: int) -> RealtimeSession:
        row = await self.store.get(session_id, key_id=key_id)
        if row is None or row.status != "active":
            raise NotFound("Session not found or already ended.")
        return row

    # --- face swap ----------------------------------------------------------------------------
    async def swap_face(self, session_id: str, *, key_id: int, face: FaceFile) -> int:
        """Store the new face and bump its version in the room metadata; returns the version.

        LiveKit is called outside any database transaction (a write lock held across it would
        stall every other write); the version then moves by compare-and-swap. A swap that lost
        a race to another writes its face again with the version after the winner's, so the
        room ends on the face of the swap the database records last."""
        key = f"realtime/{session_id}/face-{secrets.token_hex(6)}.{face.extension}"
        await self._put_face(key, face)
        try:
            for _ in range(SWAP_ATTEMPTS):
                row = await self.require_active(session_id, key_id=key_id)
                version = row.face_version + 1
                ref = await self.face_ref(key, version=version, max_duration_s=row.max_duration_s)
                try:
                    await self.livekit.update_room_metadata(row.room, json.dumps({"face": ref}))
                except LiveKitError as exc:
                    raise TemporarilyUnavailable("LiveKit is temporarily unavailable.") from exc
                if await self.store.swap_face(session_id, seen_version=version - 1, key=key):
                    break
            else:
                raise TemporarilyUnavailable("Too many face swaps at once; try again.")
        except Exception:
            await self._delete_faces([key])
            raise
        logger.info("realtime face swapped", extra={"session_id": session_id, "version": version})
        return version

    # --- end ----------------------------------------------------------------------------------
    async def end(
        self,
        session_id: str,
        *,
        reason: str,
        at: datetime | None = None,
        cleanup_later: bool = False,
    ) -> EndedSession | None:
        """End an active session once (None if it was not active), then clean up: at once, or
        with `cleanup_later` by the reaper's next sweep (a webhook's answer waits for nothing
        but the one database write, however many sessions end at once)."""
        now = self.clock()
        ended = await self.store.end_once(
            session_id,
            at=at or now,
            reason=reason,
            now=now,
            cleanup_at=now if cleanup_later else None,
        )
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
        if not cleanup_later:
            await self.cleanup(session_id, room_gone=reason == "room_finished")
        return ended

    async def cleanup(self, session_id: str, *, room_gone: bool = False) -> bool:
        """Delete the room and the face objects; on failure the reaper retries later."""
        async with self.store.db.session() as tx:
            row = await tx.get(RealtimeSession, session_id)
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

    # --- what LiveKit says -----------------------------------------------------------------
    async def reconcile(self) -> list[str]:
        """The reaper's check of live sessions against LiveKit (realtime_reconcile.py)."""
        return await self._reconciler.reconcile()

    # --- capacity -----------------------------------------------------------------------------
    async def busy(self) -> bool:
        return await self.store.live_count() >= self.settings.realtime_capacity

    async def aclose(self) -> None:
        await self.fetcher.aclose()
        await self.livekit.aclose()
