"""ProtocolAudioReceiver: livekit-agents' DataStreamAudioReceiver with what PlaybackGuard needs.

The avatar protocol's receiving end (topic lk.audio_stream, RPC lk.clear_buffer, answers
lk.playback_started / lk.playback_finished), plus:

- it counts the sender's streams it accepts (`streams_received`), so that a clear answers
  every segment the sender has pending, also those none of whose audio came through;
- a clear also drops the streams queued behind the current one: the sender counts them
  interrupted, so they must never play (1.8.9 clears only the current stream);
- closing it first sends the answers still queued (bounded by `CLOSE_FLUSH_S`): 1.8.9 closes
  its RPC channel and cancels the sender at once, so the last lk.playback_finished of a
  session (the one answering the end's interruption) was lost and the agent waited on it.

All three work on the base class's private members `_stream_readers`, `_rpc_send_ch`,
`_send_task` and `_main_atask` (pinned by tests/agent/test_plugin.py: a rename upstream fails
those tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import DataStreamAudioReceiver

logger = logging.getLogger("agent")

# How long closing waits for the queued answers to reach the sender (RPC round trips).
CLOSE_FLUSH_S = 5.0


class _CountingList(list[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.appended = 0

    def append(self, item: Any) -> None:
        self.appended += 1
        super().append(item)


class ProtocolAudioReceiver(DataStreamAudioReceiver):
    def __init__(self, room: rtc.Room, *, sender_identity: str | None = None) -> None:
        super().__init__(room, sender_identity=sender_identity)
        self._stream_readers = _CountingList()
        self._answers_sent = asyncio.Event()

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

    async def _send_task(self) -> None:
        try:
            await super()._send_task()
        finally:
            self._answers_sent.set()  # the channel is closed and drained (or sending failed)

    async def aclose(self) -> None:
        self._rpc_send_ch.close()  # no more answers; the ones queued still go out
        if self._main_atask is not None and not self._main_atask.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answers_sent.wait(), CLOSE_FLUSH_S)
        await super().aclose()
