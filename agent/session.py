"""One live session's lifetime: face swaps, presence, max duration, and ending exactly once.

LiveSession watches the room (never the renderer directly):

- room metadata with a newer face version: fetch it, prepare it off the render thread, then
  crossfade on the same tracks. Older or equal versions are ignored, and a swap that finishes
  after a newer one has been applied is dropped;
- the client (`user-{session_id}`) not joined within `empty_timeout_s` of the start, or gone
  for `empty_timeout_s`: end, so nobody pays for an empty room;
- `max_duration_s` after the start: end.

Ending runs once, whatever asks for it: stop the audio intake (`on_end`: nothing more is said,
the frame being rendered finishes), delete the room through the server API, and log a summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc

from agent.clock import Clock, LoopClock
from agent.faces import FaceFetchError, FaceSource
from agent.livekit_api import RoomAdmin
from agent.metadata import FaceRef, parse_room_face
from agent.status import SessionReporter
from agent.tasks import TaskOwner
from agent.video_generator import LipSyncVideoGenerator
from renderer.errors import RendererInputError

logger = logging.getLogger("agent")

AGENT_NAME_ATTR = "lk.agent.name"  # livekit-agents sets it on every job's participant

EndReason = Literal[
    "max_duration",
    "client_never_joined",
    "client_left",
    "room_closed",
    "error",
    "shutdown",
    "superseded",  # another job of the same session holds the room (one avatar a session)
]


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    reason: EndReason
    duration_s: float
    frames: int
    speech_frames: int
    starved_frames: int  # idle frames shown mid-speech because audio came late
    slow_frames: int  # frames that took longer than a frame interval to render
    audio_underruns: int  # times the published audio ran dry inside a segment
    audio_underrun_ms: float  # and for how long in all
    interruptions: int
    segments: int
    face_swaps: int
    speech_start_p50_ms: float | None = None  # the agent's share of a reply's latency

    def log_extra(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
            "frames": self.frames,
            "speech_frames": self.speech_frames,
            "starved_frames": self.starved_frames,
            "slow_frames": self.slow_frames,
            "audio_underruns": self.audio_underruns,
            "audio_underrun_ms": round(self.audio_underrun_ms, 1),
            "interruptions": self.interruptions,
            "segments": self.segments,
            "face_swaps": self.face_swaps,
            "speech_start_p50_ms": None
            if self.speech_start_p50_ms is None
            else round(self.speech_start_p50_ms, 1),
        }


class LiveSession:
    def __init__(
        self,
        *,
        room: rtc.Room,
        session_id: str,
        client_identity: str | None,
        generator: LipSyncVideoGenerator,
        face_source: FaceSource,
        room_admin: RoomAdmin,
        face_version: int,
        max_duration_s: float,
        empty_timeout_s: float,
        on_end: Callable[[], Awaitable[None]] | None = None,
        delete_room: bool = True,
        reporter: SessionReporter | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`client_identity` None: no presence rule (plugin mode: the agent owns the room).
        `delete_room` False: end without deleting the room (it is not ours).
        `reporter`: publish the end (reason, billable time) for the API, and hand the room's
        deletion to it (agent/status.py); without one the room is deleted at once."""
        self._room = room
        self._session_id = session_id
        self._client = client_identity
        self._generator = generator
        self._faces = face_source
        self._admin = room_admin
        self._face_version = face_version
        self._max_duration_s = max_duration_s
        self._empty_timeout_s = empty_timeout_s
        self._on_end = on_end
        self._delete_room = delete_room
        # our own room: any other agent in it is another job of this session (in plugin mode
        # the room is the sending agent's, and it is an agent too)
        self._other_avatars = delete_room
        self._reporter = reporter
        self._clock = clock or LoopClock()
        self._changed = asyncio.Event()
        self._started_at: float | None = None
        self._client_seen = False
        self._absent_since: float | None = None
        self._end_reason: EndReason | None = None
        self._ended = asyncio.Event()
        self._summary: SessionSummary | None = None
        self._end_lock = asyncio.Lock()
        self._swaps = TaskOwner("face_swap")
        self._swap_lock = asyncio.Lock()
        self.face_swaps = 0

    @property
    def face_version(self) -> int:
        return self._face_version

    @property
    def summary(self) -> SessionSummary | None:
        return self._summary

    # -- lifetime ---------------------------------------------------------------------------

    async def run(self) -> SessionSummary:
        """Watch until the session ends; returns its summary (ending it exactly once)."""
        self._started_at = self._clock.now()
        self._absent_since = self._started_at
        self._room.on("participant_connected", self._on_participant_connected)
        self._room.on("participant_disconnected", self._on_participant_disconnected)
        self._room.on("room_metadata_changed", self._on_room_metadata_changed)
        self._room.on("disconnected", self._on_room_disconnected)
        if self._other_avatars:
            for participant in list(self._room.remote_participants.values()):
                self._yield_to(participant)
        if self._client is not None and self._client in self._room.remote_participants:
            logger.info("client joined", extra={"session_id": self._session_id})  # before us
            self._client_present(True)
        # a pipeline that dies ends the session now, billed up to the failure
        self._generator.on_failure(lambda _exc: self.request_end("error"))
        # a face swap written before we joined is still in the (durable) room metadata
        self._on_room_metadata_changed("", self._room.metadata)
        try:
            while self._end_reason is None:
                reason, wake = self._deadline()
                now = self._clock.now()
                if now >= wake:
                    self.request_end(reason)
                    break
                self._changed.clear()
                await self._clock.wait(self._changed, wake - now)
            return await self._finish()
        finally:
            self._room.off("participant_connected", self._on_participant_connected)
            self._room.off("participant_disconnected", self._on_participant_disconnected)
            self._room.off("room_metadata_changed", self._on_room_metadata_changed)
            self._room.off("disconnected", self._on_room_disconnected)
            await self._swaps.aclose()

    async def end_now(self, reason: EndReason) -> SessionSummary:
        """End from outside `run()` (its task was cancelled): the same end, exactly once."""
        self.request_end(reason)
        return await self._finish()

    def request_end(self, reason: EndReason) -> None:
        """Ask the session to end (idempotent: the first reason wins)."""
        if self._end_reason is None:
            self._end_reason = reason
        self._changed.set()

    def _deadline(self) -> tuple[EndReason, float]:
        assert self._started_at is not None
        candidates: list[tuple[float, EndReason]] = [
            (self._started_at + self._max_duration_s, "max_duration")
        ]
        if self._client is not None and self._absent_since is not None:
            reason: EndReason = "client_left" if self._client_seen else "client_never_joined"
            candidates.append((self._absent_since + self._empty_timeout_s, reason))
        wake, reason = min(candidates)
        return reason, wake

    async def _finish(self) -> SessionSummary:
        async with self._end_lock:
            if self._summary is not None:
                return self._summary
            reason = self._end_reason or "shutdown"
            logger.info("session ending", extra={"session_id": self._session_id, "reason": reason})
            if self._on_end is not None:
                try:
                    await self._on_end()
                except Exception:
                    logger.exception("stopping the session's pipeline failed")
            if reason != "superseded":  # else the session goes on under the job that replaced us
                await self._report_end(reason)
            stats = self._generator.stats
            assert self._started_at is not None
            self._summary = SessionSummary(
                session_id=self._session_id,
                reason=reason,
                duration_s=self._clock.now() - self._started_at,
                frames=stats.frames,
                speech_frames=stats.speech_frames,
                starved_frames=stats.starved_frames,
                slow_frames=stats.slow_frames,
                audio_underruns=stats.audio_underruns,
                audio_underrun_ms=stats.audio_underrun_ms,
                interruptions=stats.interruptions,
                segments=stats.segments,
                face_swaps=self.face_swaps,
                speech_start_p50_ms=stats.speech_start_p50_ms,
            )
            logger.info("session summary", extra=self._summary.log_extra())
            self._ended.set()
            return self._summary

    async def _report_end(self, reason: EndReason) -> None:
        """Tell the API (and, for a failure, the client), then let the room go."""
        if self._reporter is not None:
            billable_until = self._billable_until(reason)
            if reason == "error":
                await self._reporter.tell_client(
                    "internal_error", "The avatar stopped rendering; the session has ended."
                )
            await self._reporter.ended(reason, billable_until=billable_until)
        if self._delete_room and self._reporter is not None:
            await self._reporter.hand_off_room()
        elif self._delete_room:
            try:
                await self._admin.delete_room(self._room.name)
            except Exception:
                logger.exception("deleting the room failed", extra={"room": self._room.name})

    def _billable_until(self, reason: EndReason) -> float:
        """Unix time the bill stops at: when the client left (or the start, if it never came)
        for an empty-room end, so the wait is not billed; now otherwise."""
        now = time.time()
        if reason in ("client_left", "client_never_joined") and self._absent_since is not None:
            return now - max(0.0, self._clock.now() - self._absent_since)
        return now

    # -- presence ---------------------------------------------------------------------------

    def _client_present(self, present: bool) -> None:
        if present:
            self._client_seen = True
            self._absent_since = None
        elif self._absent_since is None:
            self._absent_since = self._clock.now()
        self._changed.set()

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if self._other_avatars and self._yield_to(participant):
            return
        if participant.identity == self._client:
            logger.info("client joined", extra={"session_id": self._session_id})
            self._client_present(True)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self._client:
            logger.info("client left", extra={"session_id": self._session_id})
            self._client_present(False)

    def _on_room_disconnected(self, *_: object) -> None:
        self.request_end("room_closed")

    def _yield_to(self, participant: rtc.RemoteParticipant) -> bool:
        """One avatar a session: of two jobs of it in the room (a redispatch and a late
        assignment, a job handed to another worker), the one whose identity sorts first stays
        and the other leaves, without a word to the API and without touching the room. Both
        see each other, so both reach the same answer."""
        me = self._room.local_participant
        if participant.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
            return False
        # only another job of our own worker type (livekit-agents' agent-name attribute), never
        # some other agent a customer dispatched into the room
        if participant.attributes.get(AGENT_NAME_ATTR) != me.attributes.get(AGENT_NAME_ATTR):
            return False
        if participant.identity >= me.identity:
            return False
        logger.info(
            "another avatar serves this session; leaving",
            extra={"session_id": self._session_id, "other": participant.identity},
        )
        self.request_end("superseded")
        return True

    # -- face swap --------------------------------------------------------------------------

    def _on_room_metadata_changed(self, _old: str, new: str) -> None:
        ref = parse_room_face(new)
        if ref is None or ref.version <= self._face_version:
            return
        self._swaps.spawn(self._swap(ref), name=f"v{ref.version}")

    async def _swap(self, ref: FaceRef) -> None:
        extra = {"session_id": self._session_id, "version": ref.version}
        try:
            image = await self._faces.fetch(ref)
        except FaceFetchError as exc:
            logger.warning("face swap: fetch failed", extra={**extra, "error": str(exc)})
            return
        async with self._swap_lock:  # one prepare-and-apply at a time, newest wins
            if ref.version <= self._face_version:
                logger.info("face swap: a newer face was applied meanwhile", extra=extra)
                return
            try:
                await self._generator.set_face(image)
            except RendererInputError as exc:
                logger.warning("face swap: unusable face", extra={**extra, "error": str(exc)})
                return
            self._face_version = ref.version
            self.face_swaps += 1
            logger.info("face swapped", extra=extra)
