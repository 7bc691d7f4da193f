"""Conversation mode end to end in-process: fake STT/LLM/TTS (livekit-agents interfaces), a real
AgentSession, QueueAudioOutput, AvatarRunner with real sources, and the published video read
back through a real VideoStream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.io import PlaybackFinishedEvent

from agent.config import AgentSettings
from agent.conversation import (
    Conversation,
    Interrupt,
    MissingProviderKeysError,
    Providers,
    Speak,
    check_conversation_keys,
    default_providers,
    parse_client_message,
)
from agent.metadata import SessionOptions
from agent.runner import create_guarded_runner
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.agent.audio_support import tone_bursts
from tests.agent.fake_providers import FakeLLM, FakeMic, FakeSTT, FakeTTS
from tests.agent.fakes import FakePublication, FakeRemoteParticipant, FakeRoom

HANG_S = 30.0  # a guard against hanging, never a timing assertion


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


def test_client_messages_are_parsed_strictly() -> None:
    assert parse_client_message(b'{"type":"speak","text":"hi"}') == Speak("hi")
    assert parse_client_message(b'{"type":"interrupt"}') == Interrupt()
    for bad in (b"hi", b'{"type":"chat","text":"hi"}', b'{"type":"speak"}', b"\xff", b"[]"):
        assert parse_client_message(bad) is None


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait for a condition the pipeline reaches by itself (HANG_S only guards a hang)."""
    async with asyncio.timeout(HANG_S):
        while not predicate():  # noqa: ASYNC110 (stats counters have no event to wait on)
            await asyncio.sleep(0.01)


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
    # what the renderer had put out when the session heard "playback started"
    rendered_at_start: list[int] = []
    playing = asyncio.Event()

    def on_started(_: object) -> None:
        rendered_at_start.append(generator.stats.speech_frames)
        playing.set()

    conversation.audio_output.on("playback_started", on_started)

    generator = LipSyncVideoGenerator(face=face, options=options)
    runner, _guard = create_guarded_runner(
        room,  # type: ignore[arg-type]
        receiver=conversation.audio_output,
        generator=generator,
    )
    await runner.start()
    await conversation.start(room=None, client_identity=None)
    conversation.listen_for_speak(room)  # type: ignore[arg-type]
    try:
        # 1. a user utterance -> STT -> LLM -> TTS -> rendered and published
        mic.say(tone_bursts(options.sample_rate, seconds=0.6, on_s=0.6, off_s=0))
        event = await asyncio.wait_for(finished.get(), HANG_S)
        assert not event.interrupted
        assert any("hi there" in str(c.items) for c in fake_llm.chats)
        assert fake_tts.texts == ["Hello! I am your avatar."]
        assert generator.stats.speech_frames >= 20 and generator.stats.segments == 1
        assert len(room.local_participant.published) == 2
        # playback (and so "speaking" and the transcript) started with the avatar's audio,
        # not when the TTS filled the queue (the queue would report it before any render)
        assert rendered_at_start and rendered_at_start[0] >= 1

        # 2. a speak data message is said as-is
        text = "Welcome to the kiosk."
        room.receive_data(
            json.dumps({"type": "speak", "text": text}).encode(), sender="user-ses_test00000000"
        )
        event = await asyncio.wait_for(finished.get(), HANG_S)
        assert fake_tts.texts[-1] == text and not event.interrupted
        assert generator.stats.segments == 2

        # 3. an interrupt packet mid-reply (the client's "stop") clears the renderer and
        # reports interrupted=True
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
        playing.clear()
        conversation.speak("A long answer that will be cut off by the user. " * 4)
        await asyncio.wait_for(playing.wait(), HANG_S)  # the avatar is saying it
        room.receive_data(
            json.dumps({"type": "interrupt"}).encode(), sender="user-ses_test00000000"
        )
        event = await asyncio.wait_for(finished.get(), HANG_S)
        assert event.interrupted
        assert generator.stats.interruptions >= 1  # the session may clear more than once
        # the next 10 frames the renderer puts out are all silent ones
        spoken_after, rendered_after = generator.stats.speech_frames, generator.stats.frames
        await eventually(lambda: generator.stats.frames >= rendered_after + 10)
        assert generator.stats.speech_frames == spoken_after, "no speech after the interruption"
        await eventually(lambda: len(frames) >= 10)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        rest = face.image.reshape(-1).astype(np.int16)
        assert float(np.abs(frames[-1].astype(np.int16) - rest).mean()) < 3, "mouth closed"
    finally:
        await conversation.aclose()
        await runner.aclose()
        await generator.aclose()


async def test_the_greeting_waits_until_someone_subscribes_to_the_voice(
    face: FaceAsset, options: RendererOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Said at once, the greeting (and its transcript) went into a room nobody listened to."""
    waiting, subscribed = asyncio.Event(), asyncio.Event()

    async def wait_for_subscription(_: FakePublication) -> None:
        waiting.set()
        await subscribed.wait()

    monkeypatch.setattr(FakePublication, "wait_for_subscription", wait_for_subscription)
    room = FakeRoom()
    fake_tts = FakeTTS(sample_rate=options.sample_rate)
    conversation = Conversation(
        providers=Providers(stt=FakeSTT([]), llm=FakeLLM("unused"), tts=fake_tts, vad=None),
        instructions="Be brief.",
        sample_rate=options.sample_rate,
        greeting="Hello, I am here.",
    )
    conversation.session.input.audio = FakeMic(sample_rate=options.sample_rate)
    finished: asyncio.Queue[PlaybackFinishedEvent] = asyncio.Queue()
    conversation.audio_output.on("playback_finished", finished.put_nowait)
    generator = LipSyncVideoGenerator(face=face, options=options)
    runner, _guard = create_guarded_runner(
        room,  # type: ignore[arg-type]
        receiver=conversation.audio_output,
        generator=generator,
    )
    await conversation.start(room=None, client_identity=None)
    # before the runner publishes anything (it publishes with its first frame)
    conversation.greet_when_heard(room)  # type: ignore[arg-type]
    await runner.start()
    try:
        await asyncio.wait_for(waiting.wait(), HANG_S)
        assert fake_tts.texts == [] and generator.stats.speech_frames == 0
        subscribed.set()  # the client subscribes to the avatar's voice
        event = await asyncio.wait_for(finished.get(), HANG_S)
        assert fake_tts.texts == ["Hello, I am here."] and not event.interrupted
        assert generator.stats.segments == 1
    finally:
        await conversation.aclose()
        await runner.aclose()
        await generator.aclose()


def test_openai_stt_and_tts_are_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment with one OpenAI(-compatible) endpoint needs no Deepgram or ElevenLabs key."""
    for name in ("DEEPGRAM_API_KEY", "ELEVEN_API_KEY", "ELEVENLABS_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ATLAS_STT_PROVIDER", "openai")
    monkeypatch.setenv("ATLAS_TTS_PROVIDER", "openai")
    monkeypatch.setenv("ATLAS_TTS_VOICE_ID", "alloy")
    settings = AgentSettings()
    assert settings.missing_conversation_keys() == []
    providers = default_providers(settings, SessionOptions(language="de"), vad_model=None)
    assert type(providers.stt).__module__ == "livekit.plugins.openai.stt"
    assert type(providers.tts).__module__ == "livekit.plugins.openai.tts"
    assert providers.stt.provider == "127.0.0.1:9"  # pointed at the configured base URL
    assert providers.stt.model == "gpt-4o-mini-transcribe"
    assert providers.tts.sample_rate == 24000
    monkeypatch.setenv("ATLAS_TTS_PROVIDER", "elevenlabs")
    assert AgentSettings().missing_conversation_keys() == ["ELEVEN_API_KEY"]
