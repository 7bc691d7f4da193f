"""Fake paid providers implementing livekit-agents' own interfaces (stt.STT, llm.LLM, tts.TTS).

- FakeSTT hears loudness: a loud stretch followed by 0.3 s of quiet becomes the next scripted
  transcript (START_OF_SPEECH, FINAL_TRANSCRIPT, END_OF_SPEECH), like a real streaming STT.
- FakeLLM answers every chat with a fixed reply and records the chat contexts it was given.
- FakeTTS speaks any text as voiced tone bursts, `seconds_per_char` long, and records texts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectOptions, llm, stt, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.voice.io import AudioInput

from tests.agent.audio_support import tone_bursts

QUIET_S = 0.3
LOUD_RMS = 500.0


class FakeSTT(stt.STT):
    def __init__(self, transcripts: list[str]) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self.transcripts = list(transcripts)

    async def _recognize_impl(
        self,
        buffer: Any,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        return _final(self.transcripts.pop(0) if self.transcripts else "")

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> stt.RecognizeStream:
        return _FakeRecognizeStream(stt=self, conn_options=conn_options)


def _final(text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(
        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
        alternatives=[stt.SpeechData(language="en", text=text, confidence=1.0)],
    )


class _FakeRecognizeStream(stt.RecognizeStream):
    async def _run(self) -> None:
        assert isinstance(self._stt, FakeSTT)
        speaking, quiet_s = False, 0.0
        async for item in self._input_ch:
            if not isinstance(item, rtc.AudioFrame):
                continue
            pcm = np.frombuffer(item.data, np.int16).astype(np.float32)
            loud = pcm.size > 0 and float(np.sqrt(np.mean(pcm**2))) > LOUD_RMS
            if loud and not speaking:
                speaking, quiet_s = True, 0.0
                self._event_ch.send_nowait(
                    stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
                )
            elif speaking:
                quiet_s = 0.0 if loud else quiet_s + item.duration
                if quiet_s >= QUIET_S:
                    speaking = False
                    text = self._stt.transcripts.pop(0) if self._stt.transcripts else ""
                    self._event_ch.send_nowait(_final(text))
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH)
                    )


class FakeLLM(llm.LLM):
    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply
        self.chats: list[llm.ChatContext] = []

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        **_: Any,
    ) -> llm.LLMStream:
        self.chats.append(chat_ctx.copy())
        return _FakeLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _FakeLLMStream(llm.LLMStream):
    async def _run(self) -> None:
        assert isinstance(self._llm, FakeLLM)
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=utils.shortuuid("fake_"),
                delta=llm.ChoiceDelta(role="assistant", content=self._llm.reply),
            )
        )


class FakeTTS(tts.TTS):
    def __init__(self, *, sample_rate: int = 24000, seconds_per_char: float = 0.05) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self.seconds_per_char = seconds_per_char
        self.texts: list[str] = []

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.texts.append(text)
        return _FakeChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _FakeChunkedStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, FakeTTS)
        rate = self._tts.sample_rate
        output_emitter.initialize(
            request_id=utils.shortuuid("tts_"),
            sample_rate=rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        seconds = max(0.2, len(self.input_text) * self._tts.seconds_per_char)
        pcm = tone_bursts(rate, seconds=seconds, on_s=0.3, off_s=0.1)
        output_emitter.push(pcm.tobytes())
        output_emitter.flush()


class FakeMic(AudioInput):
    """An AudioInput fed by the test at real time, silence when nothing is queued."""

    def __init__(self, *, sample_rate: int = 24000) -> None:
        super().__init__(label="FakeMic")
        self._rate = sample_rate
        self._queue: asyncio.Queue[np.ndarray] = asyncio.Queue()

    def say(self, pcm: np.ndarray) -> None:
        step = self._rate // 100
        for start in range(0, pcm.size, step):
            self._queue.put_nowait(pcm[start : start + step])

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.01)
        try:
            chunk = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            chunk = np.zeros(self._rate // 100, np.int16)
        return rtc.AudioFrame(chunk.tobytes(), self._rate, 1, chunk.size)
