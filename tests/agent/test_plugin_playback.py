"""PlaybackGuard's bookkeeping, driven step by step with an injected clock.

A scripted AudioReceiver and an echoing VideoGenerator (both implementing livekit-agents'
interfaces) stand in for the sender and the renderer; a small pump does what AvatarRunner's two
loops do. What the sender hears is what the guard passes to the receiver's notify_* methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, VideoGenerator

from agent.playback import PlaybackGuard
from tests.fake_clock import FakeClock

RATE = 24000
TRAILER_S, GRACE_S = 5.0, 1.0


def frame(ms: int = 100) -> rtc.AudioFrame:
    samples = RATE * ms // 1000
    return rtc.AudioFrame(np.full(samples, 1000, np.int16).tobytes(), RATE, 1, samples)


class ScriptedReceiver(AudioReceiver):
    """Hands out what the test sends; records what the guard notifies."""

    def __init__(self) -> None:
        super().__init__()
        self.items: asyncio.Queue[rtc.AudioFrame | AudioSegmentEnd | None] = asyncio.Queue()
        self.notices: list[tuple[str, float, bool]] = []
        self.notified = asyncio.Event()

    def send(self, *items: rtc.AudioFrame | AudioSegmentEnd) -> None:
        for item in items:
            self.items.put_nowait(item)

    def notify_playback_started(self) -> None:
        self.notices.append(("started", 0.0, False))
        self.notified.set()

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        self.notices.append(("finished", playback_position, interrupted))
        self.notified.set()

    def finished(self) -> list[tuple[float, bool]]:
        return [(round(pos, 6), intr) for kind, pos, intr in self.notices if kind == "finished"]

    def __aiter__(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        return self

    async def __anext__(self) -> rtc.AudioFrame | AudioSegmentEnd:
        item = await self.items.get()
        if item is None:
            raise StopAsyncIteration
        return item


class EchoGenerator(VideoGenerator):
    """Renders pushed audio straight out; `release()` lets it out one item at a time, and
    `swallow_ends` loses every segment end (a renderer that never reports one)."""

    def __init__(self, *, swallow_ends: bool = False) -> None:
        self.queue: asyncio.Queue[rtc.AudioFrame | AudioSegmentEnd] = asyncio.Queue()
        self.gate = asyncio.Semaphore(0)
        self.swallow_ends = swallow_ends
        self.clears = 0

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd) and self.swallow_ends:
            return
        self.queue.put_nowait(frame)

    def clear_buffer(self) -> Coroutine[None, None, None]:
        async def clear() -> None:
            self.clears += 1
            while not self.queue.empty():
                self.queue.get_nowait()

        return clear()

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self.gate.release()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        while True:
            await self.gate.acquire()
            yield await self.queue.get()


class Pump:
    """AvatarRunner's two loops: receiver -> generator.push_audio, and the generator drained."""

    def __init__(self, guard: PlaybackGuard) -> None:
        self.guard = guard
        self.out: list[Any] = []
        self.pushed = 0
        self._tasks = [
            asyncio.create_task(self._read()),
            asyncio.create_task(self._drain()),
        ]

    async def _read(self) -> None:
        async for item in self.guard.receiver:
            await self.guard.generator.push_audio(item)
            self.pushed += 1

    async def _drain(self) -> None:
        async for item in self.guard.generator:
            self.out.append(item)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


@pytest.fixture
async def rig(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ScriptedReceiver, EchoGenerator, PlaybackGuard, Pump, FakeClock]]:
    clock = FakeClock()
    receiver = ScriptedReceiver()
    generator = EchoGenerator(swallow_ends=getattr(request, "param", False))
    guard = PlaybackGuard(
        receiver=receiver,
        generator=generator,
        trailer_timeout_s=TRAILER_S,
        playout_grace_s=GRACE_S,
        clock=clock,
    )
    await guard.receiver.start()
    pump = Pump(guard)
    yield receiver, generator, guard, pump, clock
    await pump.aclose()
    await guard.receiver.aclose()


Rig = tuple[ScriptedReceiver, EchoGenerator, PlaybackGuard, Pump, FakeClock]


async def test_two_queued_segments_each_get_started_and_finished(rig: Rig) -> None:
    receiver, generator, guard, _pump, _clock = rig
    receiver.send(frame(), frame(), AudioSegmentEnd(), frame(), AudioSegmentEnd())
    await settle()
    assert receiver.notices == []  # nothing has played yet
    generator.release(3)  # segment 1: two slices and its end
    await settle()
    assert receiver.notices == [("started", 0.0, False), ("finished", 0.2, False)]
    generator.release(2)
    await settle()
    assert receiver.finished() == [(0.2, False), (0.1, False)]
    assert [kind for kind, *_ in receiver.notices] == ["started", "finished"] * 2
    assert guard.pending_segments == 0


async def test_clear_finishes_every_pending_segment_once(rig: Rig) -> None:
    receiver, generator, guard, _pump, _clock = rig
    receiver.send(frame(), frame(), AudioSegmentEnd(), frame(), AudioSegmentEnd(), frame())
    await settle()
    generator.release(1)  # segment 1 is playing; 2 is queued; 3 is arriving
    await settle()
    receiver.emit("clear_buffer")
    await settle()
    assert generator.clears == 1 and generator.queue.empty()
    assert receiver.finished() == [(0.1, True), (0.0, True), (0.0, True)]
    # each segment heard started before its finished
    assert [kind for kind, *_ in receiver.notices] == ["started", "finished"] * 3
    # the cleared stream's trailer is not a new segment; the next segment plays normally
    receiver.send(AudioSegmentEnd(), frame(), AudioSegmentEnd())
    await settle()
    generator.release(2)
    await settle()
    assert receiver.finished()[3:] == [(0.1, False)]
    assert guard.stats.finished == 4 and guard.pending_segments == 0


async def test_a_clear_with_nothing_pending_is_still_answered(rig: Rig) -> None:
    receiver, _generator, guard, _pump, _clock = rig
    receiver.emit("clear_buffer")
    await settle()
    assert receiver.finished() == [(0.0, True)]
    assert guard.stats.unanswerable_clears == 1


async def test_a_lost_trailer_times_out_and_the_segment_still_finishes(rig: Rig) -> None:
    receiver, generator, guard, pump, clock = rig
    receiver.send(frame(), frame())  # ... and its trailer never comes
    await settle()
    await clock.advance(TRAILER_S - 0.5)
    assert pump.pushed == 2 and guard.stats.trailer_timeouts == 0
    await clock.advance(1.0)
    await settle()
    assert guard.stats.trailer_timeouts == 1
    assert pump.pushed == 3  # the guard handed the runner the segment's end itself
    generator.release(3)
    await settle()
    assert receiver.finished() == [(0.2, False)]
    # a trailer arriving late is not a second segment
    receiver.send(AudioSegmentEnd())
    await settle()
    assert guard.stats.segments == 1 and receiver.finished() == [(0.2, False)]


@pytest.mark.parametrize("rig", [True], indirect=True)
async def test_a_segment_end_the_renderer_never_reports_finishes_by_its_deadline(
    rig: Rig,
) -> None:
    receiver, generator, guard, _pump, clock = rig
    receiver.send(frame(), frame(), AudioSegmentEnd())
    await settle()
    generator.release(2)
    await settle()
    assert receiver.finished() == []
    # due: 0.2 s of audio queued plus the grace
    await clock.advance(0.2 + GRACE_S - 0.1)
    assert receiver.finished() == []
    await clock.advance(0.2)
    await settle()
    assert receiver.finished() == [(0.2, True)]
    assert guard.stats.playout_timeouts == 1
    await clock.advance(60)
    assert len(receiver.finished()) == 1  # exactly once


async def test_interrupt_from_our_side_answers_pending_segments(rig: Rig) -> None:
    receiver, generator, guard, _pump, _clock = rig
    receiver.send(frame(), AudioSegmentEnd())
    await settle()
    await guard.interrupt()
    assert receiver.finished() == [(0.0, True)]
    assert generator.clears == 1
    await guard.interrupt()  # nothing pending: nothing more to say
    assert receiver.finished() == [(0.0, True)]
