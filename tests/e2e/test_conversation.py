"""Scenario 9, conversation: the real STT -> LLM -> TTS path, heard by a client, on real servers.

`atlas serve` and `atlas agent start` run against a real livekit-server. The worker's
conversation mode uses livekit-plugins-openai's real STT (transcriptions), LLM (streamed chat
completions) and TTS (speech), all pointed by OPENAI_BASE_URL at tests/e2e/openai_fake.py on
loopback (its TTS voice is the committed espeak-ng fixture). A client creates a session over
HTTP, joins with the returned token and shows that:

1. the greeting waits for the client: nothing is synthesised while nobody listens, and after
   the client subscribes it hears the whole greeting, with its transcript;
2. a `{"type": "speak"}` data packet is spoken as-is, with its transcript;
3. the client's speech interrupts a long reply: the avatar falls silent long before the reply's
   end, and the next turn is answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from livekit import rtc

from tests.e2e.conversation_stack import Listener, Stack, base_env, start_stack
from tests.e2e.openai_fake import SECONDS_PER_CHAR, FakeOpenAI
from tests.livekit_server import LiveKitServer
from tests.processes import Procs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GREETING = "Hello, I am your avatar. Ask me anything you like."
SPEAK = "Welcome to the kiosk, the doors open at nine."
LONG_REPLY = " ".join(["Once upon a time there was a face that loved to talk."] * 8)
SHORT_REPLY = "All right, I will stop."
# A greeting said at once would be playing by then; ours must still be waiting for us.
EARLY_GREETING_WINDOW_S = 2.0


def expected_s(text: str) -> float:
    return len(text) * SECONDS_PER_CHAR


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture
def stack(
    tmp_path: Path, livekit_server: LiveKitServer, fake_openai: FakeOpenAI
) -> Iterator[Stack]:
    env = {
        **base_env(tmp_path, livekit_server),
        **fake_openai.env(),
        "ATLAS_STT_PROVIDER": "openai",
        "ATLAS_TTS_PROVIDER": "openai",
    }
    procs = Procs(tmp_path)
    try:
        yield start_stack(procs, env)
    finally:
        procs.stop_all()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    client = Listener()
    yield client
    await client.aclose()


class Mic:
    """The client's microphone: real-time 10 ms frames, silence unless told to say something
    (one feeding task, so frames are never captured concurrently)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.source = rtc.AudioSource(rate, 1)
        self.track = rtc.LocalAudioTrack.create_audio_track("mic", self.source)
        self._queue: list[np.ndarray] = []
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._feed())

    async def say(self, pcm: np.ndarray) -> None:
        """Queue `pcm` and return once it has all been captured."""
        step = self.rate // 100
        self._drained.clear()
        self._queue.extend(pcm[i : i + step] for i in range(0, pcm.size, step))
        await self._drained.wait()

    async def _feed(self) -> None:
        silence = np.zeros(self.rate // 100, np.int16)
        while True:
            chunk = self._queue.pop(0) if self._queue else silence
            if not self._queue:
                self._drained.set()
            chunk = np.ascontiguousarray(chunk)
            frame = rtc.AudioFrame(chunk.tobytes(), self.rate, 1, chunk.size)
            await self.source.capture_frame(frame)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def test_greeting_speak_and_interruption(
    stack: Stack,
    fake_openai: FakeOpenAI,
    listener: Listener,
    speech: tuple[np.ndarray, int],
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        created = await http.post(
            f"{stack.base_url}/v1/realtime/session",
            headers=stack.auth,
            files={"face": ("face.jpg", (FIXTURES / "face.jpg").read_bytes(), "image/jpeg")},
            data={"mode": "conversation", "greeting": GREETING, "max_duration_seconds": "300"},
        )
    assert created.status_code == 200, created.text
    session = created.json()

    # -- 1. the greeting waits until someone hears it --------------------------------------
    await listener.join(session["livekit_url"], session["token"], auto_subscribe=False)

    def avatar() -> str | None:
        for identity, participant in listener.room.remote_participants.items():
            if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
                return identity
        return None

    # AvatarRunner publishes the voice, then waits for a subscriber before the video
    await listener.wait_for(
        lambda: (who := avatar()) is not None and len(listener.publications(who)) >= 1,
        "the avatar published its voice",
    )
    identity = avatar()
    assert identity is not None
    await asyncio.sleep(EARLY_GREETING_WINDOW_S)
    assert fake_openai.spoken == [], "the greeting was synthesised before anyone listened"

    listener.subscribe_all(identity)
    subscribed_at = listener.subscribed_at
    assert subscribed_at is not None

    def transcript_of(text: str) -> list[float]:
        return [at for at, _attrs, said in listener.transcripts if said.strip() == text]

    await listener.wait_for(lambda: bool(transcript_of(GREETING)), "the greeting's transcript")
    await listener.wait_for(
        lambda: listener.voice_seconds() >= 0.5 * expected_s(GREETING),
        "the whole greeting heard",
    )
    assert " ".join(fake_openai.spoken) == GREETING  # synthesised sentence by sentence
    assert transcript_of(GREETING)[0] > subscribed_at
    onsets = listener.voice_onsets()
    assert onsets and onsets[0] > subscribed_at

    # -- 2. a speak packet is said as-is ---------------------------------------------------
    await listener.wait_for(
        lambda: bool(listener.loud) and not any(loud for _, loud in listener.loud[-50:]),
        "the greeting is over",
    )
    sent_at = time.monotonic()
    await listener.room.local_participant.publish_data(
        json.dumps({"type": "speak", "text": SPEAK}), reliable=True
    )
    await listener.wait_for(lambda: bool(transcript_of(SPEAK)), "the speak text's transcript")
    await listener.wait_for(
        lambda: listener.voice_seconds(since=sent_at) >= 0.5 * expected_s(SPEAK),
        "the speak text heard",
    )
    assert SPEAK in fake_openai.spoken and not fake_openai.requests_to("chat")  # no LLM

    # -- 3. the client's speech interrupts a long reply ------------------------------------
    fake_openai.transcripts += ["Tell me a long story.", "Stop, please."]
    fake_openai.replies += [LONG_REPLY, SHORT_REPLY]
    pcm, rate = speech
    utterance = pcm[: int(1.5 * rate)]
    mic = Mic(rate)
    await listener.room.local_participant.publish_track(
        mic.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    mic.start()
    try:
        await mic.say(np.zeros(rate // 2, np.int16))
        asked_at = time.monotonic()
        await mic.say(utterance)
        await listener.wait_for(
            lambda: listener.voice_seconds(since=asked_at) >= 1.0, "the long reply is playing"
        )
        await mic.say(utterance)  # the user talks over it
        await listener.wait_for(lambda: bool(transcript_of(SHORT_REPLY)), "the next answer")
    finally:
        await mic.aclose()

    # the long reply was cut: all the voice since the question (the part of the long reply
    # heard, and the short answer) is far less than the long reply lasts
    heard = listener.voice_seconds(since=asked_at)
    assert heard < 0.5 * expected_s(LONG_REPLY), f"{heard:.1f} s heard since the question"
    assert fake_openai.heard_s and min(fake_openai.heard_s) >= 1.0  # the user's speech
    user_turns = [r.body["text"] for r in fake_openai.requests_to("transcriptions")]
    assert user_turns[:2] == ["Tell me a long story.", "Stop, please."]
