"""PlaybackGuard: exactly one lk.playback_started and one lk.playback_finished per speech segment.

livekit-agents' AvatarRunner reports playback from one `_audio_playing` flag. When a second
segment is queued before the first has been rendered out (an agent's TTS runs faster than real
time, so this is the normal case), the flag is cleared by the first segment's end and the
second segment never gets its lk.playback_finished: the sending agent waits on it for ever, and
the avatar "goes silent after an interruption" (the first failure in docs/architecture.md, "What
we design against"). A clear_buffer that arrives between segments is not answered either.

The guard sits between the pieces AvatarRunner drives and takes playback reporting away from
it (the runner's own notify_* calls are ignored):

    sender ── AudioReceiver ──> guard.receiver ──> AvatarRunner ──> guard.generator ──> generator
                 ^  notify_*                                                   |
                 └──────────── guard: one ledger of segments <─────────────────┘ (frames out)

- A segment opens with its first audio frame and closes with its trailer (AudioSegmentEnd).
  Only closed, non-empty segments reach the generator as AudioSegmentEnd, so the generator's
  segment ends map one to one, in order, onto the ledger.
- lk.playback_started: with the segment's first audio slice leaving the generator, and only
  then: a segment none of whose audio played gets lk.playback_finished alone (position 0), so
  the sending agent records its speech as skipped, not as partly heard.
  lk.playback_finished {playback_position, interrupted: false}: with its AudioSegmentEnd.
- lk.clear_buffer: the generator is cleared first, then every unfinished segment is finished
  with interrupted: true (one lk.playback_finished each; the one playing carries its position).
  When no segment is pending (its stream has not arrived yet, or it just finished) the clear is
  still answered with one lk.playback_finished {interrupted: true}; a sender ignores a surplus
  one, whereas a missing one wedges it.
- A segment whose trailer never comes (no audio for `trailer_timeout_s`) is closed by the guard
  and rendered out as usual. A closed segment is finished with interrupted: true once the
  renderer has put out no audio for `playout_grace_s` (a stall, or an end it lost): the
  watchdog follows the renderer's progress, never a real-time estimate, so a backend slower
  than real time still plays every segment to its end. So every segment is finished exactly
  once, whatever is lost.

Notifications go out through the wrapped receiver's notify_* in one ordered queue (flushed
before the receiver closes); a clear's answers, and audio arriving after it, wait for the
generator to have dropped its audio. Audio taken before a clear but not yet handed to the
runner is dropped with it. The guard owns the reading and the ledger; `receiver`/`generator`
(agent/playback_views.py) only call into it. agent/protocol_receiver.py is the protocol's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Literal

from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, VideoGenerator

from agent.clock import Clock, LoopClock
from agent.playback_views import GuardedGenerator, GuardedReceiver
from agent.protocol_receiver import ProtocolAudioReceiver
from agent.tasks import TaskOwner

logger = logging.getLogger("agent")

# The same fallback livekit-agents' DataStreamAudioReceiver uses for a lost trailer: audio is
# pushed faster than real time, but an LLM may pause mid-reply for a few seconds.
TRAILER_TIMEOUT_S = 10.0
# How long the renderer may put out no audio while a closed segment waits (a render stall, a
# lost end) before that segment is declared over.
PLAYOUT_GRACE_S = 3.0
# How long closing waits for the queued notifications to be handed to the receiver.
CLOSE_FLUSH_S = 5.0
# The playout watchdog's sleep when nothing is pending (any change wakes it sooner).
IDLE_WATCH_S = 60.0


@dataclass(slots=True, eq=False)
class _Segment:
    number: int
    last_input: float  # clock time of its latest audio frame
    received_s: float = 0.0
    played_s: float = 0.0
    closed: bool = False  # its trailer went to the generator
    started: bool = False
    finished: bool = False
    closed_at: float | None = None  # clock time its trailer went to the generator


@dataclass(frozen=True, slots=True)
class _Notice:
    kind: Literal["started", "finished"]
    playback_position: float = 0.0
    interrupted: bool = False


@dataclass(slots=True)
class GuardStats:
    segments: int = 0
    finished: int = 0
    interrupted: int = 0
    clears: int = 0
    unanswerable_clears: int = 0  # clears with nothing pending, answered all the same
    trailer_timeouts: int = 0
    playout_timeouts: int = 0


class PlaybackGuard:
    """Wraps an AudioReceiver and a VideoGenerator; give AvatarRunner `receiver` and
    `generator`. The runner's start()/aclose() start and close the guard (through `receiver`)."""

    def __init__(
        self,
        *,
        receiver: AudioReceiver,
        generator: VideoGenerator,
        trailer_timeout_s: float = TRAILER_TIMEOUT_S,
        playout_grace_s: float = PLAYOUT_GRACE_S,
        clock: Clock | None = None,
    ) -> None:
        self._inner_recv = receiver
        self._inner_gen = generator
        self._trailer_timeout_s = trailer_timeout_s
        self._playout_grace_s = playout_grace_s
        self.clock: Clock = clock or LoopClock()
        self._ledger: deque[_Segment] = deque()  # unfinished segments, oldest first
        self._input: _Segment | None = None  # the segment audio is arriving for
        self._last_output: float | None = None  # clock time audio last left the generator
        self._clear_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[_Notice | asyncio.Task[None]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks = TaskOwner("playback")
        self._sender: asyncio.Task[None] | None = None
        # reading: the receiver's iterator; the next item in flight, with the clear count then
        self._source: AsyncIterator[rtc.AudioFrame | AudioSegmentEnd] | None = None
        self._next: asyncio.Future[tuple[rtc.AudioFrame | AudioSegmentEnd, int]] | None = None
        self._arrived = asyncio.Event()
        self._started = False
        self._closed = False
        self.stats = GuardStats()
        self.receiver = GuardedReceiver(self)
        self.generator = GuardedGenerator(self, generator)

    @property
    def pending_segments(self) -> int:
        return len(self._ledger)

    # -- lifetime ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self._inner_recv.start()
        self._inner_recv.on("clear_buffer", self._on_clear_buffer)
        self._sender = self._tasks.spawn(self._send_notices(), name="send_notices")
        self._tasks.spawn(self._watch_playout(), name="watch_playout")

    async def interrupt(self) -> None:
        """Drop all queued audio and finish every pending segment (interrupted), e.g. when the
        session ends; returns once the notifications are handed to the receiver."""
        if self._closed:
            return
        self._clear(answer_always=False)
        await self._flush_notices()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inner_recv.off("clear_buffer", self._on_clear_buffer)
        if self._next is not None:
            self._next.cancel()
        # what the sender is owed goes out before the receiver closes
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush_notices(), CLOSE_FLUSH_S)
        await self._tasks.aclose()
        await self._inner_recv.aclose()

    async def _flush_notices(self) -> None:
        if self._sender is not None and not self._sender.done():
            await self._outbox.join()

    # -- input: the sender's audio ----------------------------------------------------------

    async def next_input(self) -> rtc.AudioFrame | AudioSegmentEnd:
        """The sender's next item for the runner, booked (or an end for an overdue trailer)."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            pending = self._next
            if pending is None:
                if self._source is None:
                    self._source = self._inner_recv.__aiter__()
                pending = self._next = asyncio.ensure_future(self._receive(self._source))
                self._arrived.clear()
                pending.add_done_callback(lambda _: self._arrived.set())
            if not pending.done():
                deadline = self.trailer_deadline()
                if deadline is None:
                    await asyncio.wait({pending})
                else:
                    await self.clock.wait(self._arrived, deadline - self.clock.now())
            item: rtc.AudioFrame | AudioSegmentEnd | None
            if pending.done():
                self._next = None
                if pending.cancelled():
                    continue  # closed meanwhile
                received, clears = pending.result()  # StopAsyncIteration ends the runner
                # taken before a clear that has happened since: audio that clear dropped
                item = self.on_input(received) if clears == self.stats.clears else None
            else:
                deadline = self.trailer_deadline()
                if deadline is None or self.clock.now() < deadline:
                    continue
                item = self.on_trailer_timeout()
            if item is not None:
                return item

    async def _receive(
        self, source: AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]
    ) -> tuple[rtc.AudioFrame | AudioSegmentEnd, int]:
        item = await source.__anext__()
        return item, self.stats.clears  # counted in the same step as the item is taken

    def on_input(
        self, item: rtc.AudioFrame | AudioSegmentEnd
    ) -> rtc.AudioFrame | AudioSegmentEnd | None:
        """Book an item from the sender; returns what to hand the runner (None: drop it)."""
        if isinstance(item, AudioSegmentEnd):
            if self._input is None:
                # no audio since the last end or clear: a cleared stream's trailer (answered
                # already) or an empty stream, which is owed its answer
                if self._streams_opened() > self.stats.finished + len(self._ledger):
                    self._answer_unseen(interrupted=False)
                return None
            self._close_input()
            return item
        if item.samples_per_channel == 0:
            return None
        now = self.clock.now()
        seg = self._input
        if seg is None:
            self.stats.segments += 1
            seg = _Segment(number=self.stats.segments, last_input=now)
            self._input = seg
            self._ledger.append(seg)
        seg.received_s += item.duration
        seg.last_input = now
        return item

    def trailer_deadline(self) -> float | None:
        """When the open segment's trailer is given up on (None: no segment is open)."""
        if self._input is not None:
            return self._input.last_input + self._trailer_timeout_s
        return None

    def on_trailer_timeout(self) -> AudioSegmentEnd | None:
        """The open segment's trailer did not come in time: close it ourselves."""
        seg = self._input
        if seg is None:
            return None
        self.stats.trailer_timeouts += 1
        logger.warning("playback segment trailer timed out", extra={"segment": seg.number})
        self._close_input()
        return AudioSegmentEnd()

    def _close_input(self) -> None:
        seg = self._input
        assert seg is not None
        self._input = None
        seg.closed = True
        seg.closed_at = self.clock.now()
        self._changed.set()

    # -- output: what the generator renders -------------------------------------------------

    def clearing(self) -> asyncio.Task[None] | None:
        """The clear of the generator still in flight, if any."""
        task = self._clear_task
        return task if task is not None and not task.done() else None

    def on_output(self, item: rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(item, rtc.VideoFrame) or self.clearing() is not None:
            return  # while a clear is in flight, any audio out is audio it drops
        if isinstance(item, AudioSegmentEnd):
            seg = next((s for s in self._ledger if s.closed), None)
            if seg is None:
                logger.warning("playback segment end with no segment pending")
                return
            self._finish(seg, interrupted=False)
            return
        if not self._ledger:
            return  # a slice of audio that was cleared meanwhile
        self._last_output = self.clock.now()
        seg = self._ledger[0]
        if not seg.started:
            seg.started = True
            self._outbox.put_nowait(_Notice("started"))
        seg.played_s += item.duration

    def _finish(self, seg: _Segment, *, interrupted: bool) -> None:
        """Its lk.playback_finished (never a started: one that never played is skipped)."""
        if seg.finished:
            return
        seg.finished = True
        self._ledger.remove(seg)
        if self._input is seg:
            self._input = None
        self._outbox.put_nowait(
            _Notice("finished", playback_position=seg.played_s, interrupted=interrupted)
        )
        self.stats.finished += 1
        if interrupted:
            self.stats.interrupted += 1
        self._changed.set()

    # -- clear ------------------------------------------------------------------------------

    def _on_clear_buffer(self) -> None:
        self._clear(answer_always=True)

    def _clear(self, *, answer_always: bool) -> None:
        """Book the clear at once; the generator is cleared, then the answers go out."""
        self.stats.clears += 1
        self._clear_task = self._tasks.spawn(self._clear_generator(), name="clear_generator")
        self._outbox.put_nowait(self._clear_task)  # the answers wait for it
        pending = list(self._ledger)
        for seg in pending:
            self._finish(seg, interrupted=True)
        # streams the sender opened whose audio never reached the runner (still queued, or
        # dropped by the receiver's clear): each is owed its answer too
        unseen = max(0, self._streams_opened() - self.stats.finished)
        if answer_always and not pending and not unseen:
            unseen = 1  # always answer a clear: a surplus answer is ignored, a missing one hangs
            self.stats.unanswerable_clears += 1
        for _ in range(unseen):
            self._answer_unseen(interrupted=True)
        logger.info("playback cleared", extra={"segments": len(pending), "unseen": unseen})

    def _streams_opened(self) -> int:
        """Streams the receiver has accepted, where it counts them (else what we have seen)."""
        if isinstance(self._inner_recv, ProtocolAudioReceiver):
            return self._inner_recv.streams_received
        return self.stats.finished + len(self._ledger)

    def _answer_unseen(self, *, interrupted: bool) -> None:
        """The finish of a segment none of whose audio reached the runner (never started)."""
        self._outbox.put_nowait(_Notice("finished", interrupted=interrupted))
        self.stats.finished += 1
        self.stats.interrupted += int(interrupted)

    async def _clear_generator(self) -> None:
        result = self._inner_gen.clear_buffer()
        if asyncio.iscoroutine(result):
            await result

    async def _send_notices(self) -> None:
        """One ordered queue to the sender; a clear's answers wait for the clear itself."""
        while True:
            item = await self._outbox.get()
            try:
                if isinstance(item, asyncio.Task):
                    await asyncio.wait({item})
                    continue
                result: None | Coroutine[None, None, None]
                if item.kind == "started":
                    result = self._inner_recv.notify_playback_started()
                else:
                    result = self._inner_recv.notify_playback_finished(
                        playback_position=item.playback_position, interrupted=item.interrupted
                    )
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("playback notification failed")
            finally:
                self._outbox.task_done()

    def _playout_deadline(self, seg: _Segment) -> float | None:
        """Closed, then no audio out for the grace period: progress keeps a segment alive."""
        if seg.closed_at is None:
            return None
        last = seg.closed_at if self._last_output is None else max(seg.closed_at, self._last_output)
        return last + self._playout_grace_s

    async def _watch_playout(self) -> None:
        """Finish (interrupted) a closed segment whose playout has stalled."""
        while True:
            self._changed.clear()
            now = self.clock.now()
            deadlines = {seg: self._playout_deadline(seg) for seg in self._ledger}
            for seg, deadline in deadlines.items():
                if deadline is not None and deadline <= now:
                    self.stats.playout_timeouts += 1
                    logger.warning(
                        "playback segment playout timed out", extra={"segment": seg.number}
                    )
                    self._finish(seg, interrupted=True)
            pending = [d for seg, d in deadlines.items() if d is not None and not seg.finished]
            wait_s = min(pending) - now if pending else IDLE_WATCH_S
            await self.clock.wait(self._changed, wait_s)
