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
- lk.playback_started: with the segment's first audio slice leaving the generator.
  lk.playback_finished {playback_position, interrupted: false}: with its AudioSegmentEnd.
- lk.clear_buffer: the generator is cleared first, then every unfinished segment is finished
  with interrupted: true (one lk.playback_finished each; the one playing carries its position).
  When no segment is pending (its stream has not arrived yet, or it just finished) the clear is
  still answered with one lk.playback_finished {interrupted: true}; a sender ignores a surplus
  one, whereas a missing one wedges it.
- A segment whose trailer never comes (no audio for `trailer_timeout_s`) is closed by the guard
  and rendered out as usual. A closed segment still unfinished when its audio, and the audio
  queued ahead of it, should long have played (`playout_grace_s` late) is finished with
  interrupted: true. So every segment is finished exactly once, whatever is lost.

Every notification goes out through the wrapped receiver's notify_* in one ordered queue; the
answer to a clear waits for the generator to have dropped its audio, and audio that arrives
after a clear waits for it too.

Audio taken from the receiver before a clear but not yet handed to the runner is dropped with
it. ProtocolAudioReceiver (livekit-agents' DataStreamAudioReceiver, plus: a clear also drops the
streams queued behind the current one, which 1.8.9 would otherwise play after the clear) is the
receiver for the avatar protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import utils
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AudioSegmentEnd,
    DataStreamAudioReceiver,
    VideoGenerator,
)

from agent.clock import Clock, LoopClock

logger = logging.getLogger("agent")

# The same fallback livekit-agents' DataStreamAudioReceiver uses for a lost trailer: audio is
# pushed faster than real time, but an LLM may pause mid-reply for a few seconds.
TRAILER_TIMEOUT_S = 10.0
# How late a segment's playout may run (render stalls, network) before it is declared over.
PLAYOUT_GRACE_S = 3.0
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
    deadline: float | None = None  # once closed: when its playout must be over


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
        self._clear_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[_Notice | asyncio.Task[None]] = asyncio.Queue()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sender: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self.stats = GuardStats()
        self.receiver = GuardedReceiver(self, receiver)
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
        self._sender = self._spawn(self._send_notices())
        self._spawn(self._watch_playout())

    async def interrupt(self) -> None:
        """Drop all queued audio and finish every pending segment (interrupted), e.g. when the
        session ends; returns once the notifications are handed to the receiver."""
        if self._closed:
            return
        self._clear(answer_always=False)
        if self._sender is not None and not self._sender.done():
            await self._outbox.join()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inner_recv.off("clear_buffer", self._on_clear_buffer)
        self.receiver.cancel_pending()
        await utils.aio.cancel_and_wait(*self._tasks)
        await self._inner_recv.aclose()

    # -- input: the sender's audio ----------------------------------------------------------

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
        # its playout is due once the audio queued ahead of it and its own have played
        queued = sum(s.received_s - s.played_s for s in self._ledger if s.number <= seg.number)
        seg.deadline = self.clock.now() + queued + self._playout_grace_s
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
        seg = self._ledger[0]
        if not seg.started:
            seg.started = True
            self._outbox.put_nowait(_Notice("started"))
        seg.played_s += item.duration

    def _finish(self, seg: _Segment, *, interrupted: bool) -> None:
        if seg.finished:
            return
        seg.finished = True
        self._ledger.remove(seg)
        if self._input is seg:
            self._input = None
        if not seg.started:  # the sender always hears both, in order
            seg.started = True
            self._outbox.put_nowait(_Notice("started"))
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
        self._clear_task = self._spawn(self._clear_generator())
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
        """Started and finished for a segment none of whose audio reached the runner."""
        self._outbox.put_nowait(_Notice("started"))
        self._outbox.put_nowait(_Notice("finished", interrupted=interrupted))
        self.stats.finished += 1
        self.stats.interrupted += int(interrupted)

    async def _clear_generator(self) -> None:
        result = self._inner_gen.clear_buffer()
        if asyncio.iscoroutine(result):
            await result

    # -- background -------------------------------------------------------------------------

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

    async def _watch_playout(self) -> None:
        """Finish (interrupted) a closed segment whose playout is long overdue."""
        while True:
            self._changed.clear()
            now = self.clock.now()
            overdue = [s for s in self._ledger if s.deadline is not None and s.deadline <= now]
            for seg in overdue:
                self.stats.playout_timeouts += 1
                logger.warning("playback segment playout timed out", extra={"segment": seg.number})
                self._finish(seg, interrupted=True)
            deadlines = [s.deadline for s in self._ledger if s.deadline is not None]
            wait_s = min(deadlines) - now if deadlines else IDLE_WATCH_S
            await self.clock.wait(self._changed, wait_s)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class GuardedReceiver(AudioReceiver):
    """The AudioReceiver AvatarRunner reads: the sender's audio, booked by the guard. It never
    emits clear_buffer (the guard clears the generator itself) and ignores the runner's
    notify_* calls (the guard sends them)."""

    def __init__(self, guard: PlaybackGuard, inner: AudioReceiver) -> None:
        super().__init__()
        self._guard = guard
        self._inner = inner
        self._iter: AsyncIterator[rtc.AudioFrame | AudioSegmentEnd] | None = None
        # the next item from the receiver, with the guard's clear count when it was taken
        self._next: asyncio.Future[tuple[rtc.AudioFrame | AudioSegmentEnd, int]] | None = None
        self._arrived = asyncio.Event()
        self._closed = False

    async def start(self) -> None:
        await self._guard.start()

    def notify_playback_started(self) -> None:
        return None

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        return self

    async def __anext__(self) -> rtc.AudioFrame | AudioSegmentEnd:
        guard = self._guard
        item: rtc.AudioFrame | AudioSegmentEnd | None
        while True:
            if self._closed:
                raise StopAsyncIteration
            pending = self._next
            if pending is None:
                if self._iter is None:
                    self._iter = self._inner.__aiter__()
                pending = self._next = asyncio.ensure_future(self._receive(self._iter))
                self._arrived.clear()
                pending.add_done_callback(self._on_arrived)
            if not pending.done():
                deadline = guard.trailer_deadline()
                if deadline is None:
                    await asyncio.wait({pending})
                else:
                    await guard.clock.wait(self._arrived, deadline - guard.clock.now())
            if pending.done():
                self._next = None
                if pending.cancelled():
                    continue  # closed meanwhile
                received, clears = pending.result()  # StopAsyncIteration ends the runner
                # taken before a clear that has happened since: audio that clear dropped
                item = guard.on_input(received) if clears == guard.stats.clears else None
            else:
                deadline = guard.trailer_deadline()
                if deadline is None or guard.clock.now() < deadline:
                    continue
                item = guard.on_trailer_timeout()
            if item is not None:
                return item

    async def _receive(
        self, source: AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]
    ) -> tuple[rtc.AudioFrame | AudioSegmentEnd, int]:
        item = await source.__anext__()
        return item, self._guard.stats.clears  # counted in the same step as the item is taken

    def _on_arrived(self, _: object) -> None:
        self._arrived.set()

    def cancel_pending(self) -> None:
        self._closed = True
        if self._next is not None:
            self._next.cancel()
            self._next = None

    async def aclose(self) -> None:
        await self._guard.aclose()


class GuardedGenerator(VideoGenerator):
    """The VideoGenerator AvatarRunner drives: the wrapped generator, with its output booked."""

    def __init__(self, guard: PlaybackGuard, inner: VideoGenerator) -> None:
        self._guard = guard
        self._inner = inner

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if (clearing := self._guard.clearing()) is not None:
            await asyncio.shield(clearing)  # a clear never overtakes audio that came after it
        await self._inner.push_audio(frame)

    async def clear_buffer(self) -> None:
        await self._guard.interrupt()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        async for item in self._inner:
            self._guard.on_output(item)
            yield item


class _CountingList(list[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.appended = 0

    def append(self, item: Any) -> None:
        self.appended += 1
        super().append(item)


class ProtocolAudioReceiver(DataStreamAudioReceiver):
    """livekit-agents' DataStreamAudioReceiver (topic lk.audio_stream, RPC lk.clear_buffer),
    plus two things the guard needs:

    - it counts the sender's streams it accepts (`streams_received`), so that a clear answers
      every segment the sender has pending, also those none of whose audio came through;
    - a clear also drops the streams queued behind the current one: the sender counts them
      interrupted, so they must never play (1.8.9 clears only the current stream).

    Both work on the base class's reader queue, `_stream_readers` (pinned by
    tests/agent/test_plugin.py: a rename upstream fails those tests)."""

    def __init__(self, room: rtc.Room, *, sender_identity: str | None = None) -> None:
        super().__init__(room, sender_identity=sender_identity)
        self._stream_readers = _CountingList()

    @property
    def streams_received(self) -> int:
        readers = self._stream_readers
        return readers.appended if isinstance(readers, _CountingList) else 0

    async def start(self) -> None:
        await super().start()
        self.on("clear_buffer", self._drop_queued_streams)  # before any other listener

    def _drop_queued_streams(self) -> None:
        dropped = len(self._stream_readers)
        self._stream_readers.clear()
        if dropped:
            logger.info("queued audio streams dropped by a clear", extra={"streams": dropped})
