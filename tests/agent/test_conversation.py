"""Conversation mode end to end in-process: fake STT/LLM/TTS (livekit-agents interfaces), a real
AgentSession, QueueAudioOutput, AvatarRunner with real sources, and the published video read
back through a real VideoStream."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.io import PlaybackFinishedEvent

from agent.config import AgentSettings
from agent.conversation import (
    Conversation,
    MissingProviderKeysError,
    Providers,
    check_conversation_keys,
    parse_speak_message,
)
from agent.runner import create_avatar_runner
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.agent.audio_support import tone_bursts
from tests.agent.fake_providers import FakeLLM, FakeMic, FakeSTT, FakeTTS
from tests.agent.fakes import FakeRemoteParticipant, FakeRoom


def test_missing_keys_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DEEPGRAM_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ELEVEN_API_KEY",
        "ELEVENLABS_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-test")
    with pytest.raises(MissingProviderKeysError) as err:
        check_conversation_keys(AgentSettings())
    assert err.value.names == ["OPENAI_API_KEY", "ELEVEN_API_KEY"]
    assert "dg-test" not in str(err.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")  # a local LLM: no key
    monkeypatch.setenv("ELEVEN_API_KEY", "el-test")
    check_conversation_keys(AgentSettings())


def test_speak_messages_are_parsed_strictly() -> None:
    assert parse_speak_message(b'{"type":"speak","text":"hi"}') == "hi"
    for bad in (b"hi", b'{"type":"chat","text":"hi"}', b'{"type":"speak"}', b"\xff", b"[]"):
        assert parse_speak_message(bad) is None


async def test_reply_speak_and_interruption(face: FaceAsset, options: RendererOptions) -> None:
    room = FakeRoom()
    room.add_remote(FakeRemoteParticipant(identity="user-ses_test00000000"))
    fake_llm = FakeLLM("Hello! I am your avatar.")
    fake_tts = FakeTTS(sample_rate=options.sample_rate)
    conversation = Conversation(
        providers=Providers(stt=FakeSTT(["hi there"]), llm=fake_llm, tts=fake_tts, vad=None),
        instructions="Be brief.",
        sample_rate=options.sample_rate,
    )
    mic = FakeMic(sample_rate=options.sample_rate)
    conversation.session.input.audio = mic
    finished: asyncio.Queue[PlaybackFinishedEvent] = asyncio.Queue()
    conversation.audio_output.on("playback_finished", finished.put_nowait)

    generator = LipSyncVideoGenerator(face=face, options=options)
    runner = create_avatar_runner(
        room,  # type: ignore[arg-type]
        audio_recv=conversation.audio_output,
        generator=generator,
    )
    await runner.start()
    await conversation.start(room=None, client_identity=None)
    conversation.listen_for_speak(room)  # type: ignore[arg-type]
    try:
        # 1. a user utterance -> STT -> LLM -> TTS -> rendered and published
        mic.say(tone_bursts(options.sample_rate, seconds=0.6, on_s=0.6, off_s=0))
        event = await asyncio.wait_for(finished.get(), 20)
        assert not event.interrupted
        assert any("hi there" in str(c.items) for c in fake_llm.chats)
        assert fake_tts.texts == ["Hello! I am your avatar."]
        assert generator.stats.speech_frames >= 20 and generator.stats.segments == 1
        assert len(room.local_participant.published) == 2

        # 2. a speak data message is said as-is
        text = "Welcome to the kiosk."
        room.receive_data(
            json.dumps({"type": "speak", "text": text}).encode(), sender="user-ses_test00000000"
        )
        event = await asyncio.wait_for(finished.get(), 20)
        assert fake_tts.texts[-1] == text and not event.interrupted
        assert generator.stats.segments == 2

        # 3. an interruption mid-reply clears the renderer and reports interrupted=True
        video = next(
            p.track
            for p in room.local_participant.published
            if isinstance(p.track, rtc.LocalVideoTrack)
        )
        frames: list[np.ndarray] = []

        async def read() -> None:
            stream = rtc.VideoStream(video, format=rtc.VideoBufferType.RGB24)
            try:
                async for ev in stream:
                    frames.append(np.frombuffer(ev.frame.data, np.uint8).copy())
            finally:
                await stream.aclose()

        reader = asyncio.create_task(read())
        conversation.speak("A long answer that will be cut off by the user. " * 4)
        speech_before = generator.stats.speech_frames
        while generator.stats.speech_frames < speech_before + 10:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        conversation.session.interrupt()
        event = await asyncio.wait_for(finished.get(), 10)
        assert event.interrupted
        assert generator.stats.interruptions == 1
        await asyncio.sleep(0.5)
        spoken_after = generator.stats.speech_frames
        await asyncio.sleep(0.3)
        assert generator.stats.speech_frames == spoken_after, "no speech after the interruption"
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        rest = face.image.reshape(-1).astype(np.int16)
        assert float(np.abs(frames[-1].astype(np.int16) - rest).mean()) < 3, "mouth closed"
    finally:
        await conversation.aclose()
        await runner.aclose()
        await generator.aclose()
