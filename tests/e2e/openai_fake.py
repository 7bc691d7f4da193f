"""A local OpenAI-compatible server for the end-to-end tests: the paid services, faked on loopback.

livekit-plugins-openai's real code paths talk to it through `OPENAI_BASE_URL`:

- POST /v1/audio/transcriptions (STT): answers the next scripted transcript, and records how
  much audio (WAV) it was sent, so a test can tell that the user's speech reached it;
- POST /v1/chat/completions (LLM, `stream: true`): the next scripted reply as server-sent
  chat.completion.chunk events, a few words per chunk, then `[DONE]`;
- POST /v1/audio/speech (TTS, `response_format: pcm`): raw 24 kHz 16-bit mono PCM. The voice
  is committed fixture audio (tests/fixtures/speech.wav, espeak-ng, resampled), looped to
  `SECONDS_PER_CHAR` per character of the text, so its length is known. A text containing
  `STALL` gets only `STALL_S` of audio, then the response hangs until the client gives up or
  `release_stalls()` is called: speech that has started streaming but cannot play yet.

It runs in its own thread with its own event loop, so the test's loop and blocking calls do not
hold it up. Every request is recorded (`requests`), nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from aiohttp import web

from tests.processes import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RATE = 24000
SECONDS_PER_CHAR = 0.06
STALL_S = 0.06  # below the avatar receiver's 100 ms frame: nothing of it can render
STALL_LIMIT_S = 30.0


def fixture_voice() -> np.ndarray:
    """tests/fixtures/speech.wav at 24 kHz, int16 mono."""
    with wave.open(str(FIXTURES / "speech.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        rate = w.getframerate()
    out = soxr.resample(pcm.astype(np.float32) / 32768, rate, RATE)
    return np.clip(np.rint(out * 32768), -32768, 32767).astype(np.int16)


def speech_pcm(text: str, voice: np.ndarray) -> np.ndarray:
    samples = int(max(0.3, len(text) * SECONDS_PER_CHAR) * RATE)
    reps = samples // voice.size + 1
    return np.tile(voice, reps)[:samples]


@dataclass
class Recorded:
    path: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeOpenAI:
    def __init__(self) -> None:
        self.transcripts: list[str] = []
        self.replies: list[str] = []
        self.default_reply = "I am the avatar, and I have nothing more to say."
        self.requests: list[Recorded] = []
        self.heard_s: list[float] = []  # seconds of audio in each transcription request
        self.spoken: list[str] = []  # texts synthesised
        self._voice = fixture_voice()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self.port = free_port()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """What points livekit-plugins-openai (and our worker's settings) at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "sk-fake-local"}

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def release_stalls(self) -> None:
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._release, self._stop = asyncio.Event(), asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/audio/speech", self._speech)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    # -- endpoints --------------------------------------------------------------------------

    async def _transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload: Any = form.get("file")
        data = upload.file.read() if upload is not None else b""
        with wave.open(io.BytesIO(data)) as w:
            self.heard_s.append(w.getnframes() / w.getframerate())
        text = self.transcripts.pop(0) if self.transcripts else ""
        self.requests.append(Recorded("transcriptions", {"model": form.get("model"), "text": text}))
        return web.json_response({"text": text})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Recorded("chat", body))
        reply = self.replies.pop(0) if self.replies else self.default_reply
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(_pieces(reply)):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            await response.write(_sse(_chunk(body, delta)))
        await response.write(_sse(_chunk(body, {}, finish="stop")))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = str(body.get("input", ""))
        self.requests.append(Recorded("speech", body))
        self.spoken.append(text)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        if "STALL" in text:
            await response.write(self._voice[: int(STALL_S * RATE)].tobytes())
            assert self._release is not None
            try:
                await asyncio.wait_for(self._release.wait(), STALL_LIMIT_S)
            except TimeoutError:
                pass
            return response
        pcm = speech_pcm(text, self._voice)
        step = RATE // 5  # 200 ms per write, as a streaming TTS would send it
        for start in range(0, pcm.size, step):
            await response.write(pcm[start : start + step].tobytes())
        await response.write_eof()
        return response


def _pieces(text: str, words: int = 3) -> Iterator[str]:
    parts = text.split(" ")
    for i in range(0, len(parts), words):
        yield " ".join(parts[i : i + words]) + (" " if i + words < len(parts) else "")


def _chunk(body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()
