"""The views of a PlaybackGuard that AvatarRunner drives: its AudioReceiver and VideoGenerator.

Both only call into the guard (agent/playback.py), which owns the reading, the ledger and the
notifications; the guard builds them and never calls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from livekit import rtc
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd, VideoGenerator

if TYPE_CHECKING:
    from agent.playback import PlaybackGuard


class GuardedReceiver(AudioReceiver):
    """The AudioReceiver AvatarRunner reads: a view of the guard. It never emits clear_buffer
    (the guard clears the generator itself) and ignores the runner's notify_* calls (the
    guard sends them)."""

    def __init__(self, guard: PlaybackGuard) -> None:
        super().__init__()
        self._guard = guard

    async def start(self) -> None:
        await self._guard.start()

    def notify_playback_started(self) -> None:
        return None

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[rtc.AudioFrame | AudioSegmentEnd]:
        return self

    async def __anext__(self) -> rtc.AudioFrame | AudioSegmentEnd:
        return await self._guard.next_input()

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
