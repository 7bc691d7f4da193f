"""Conversation mode: an AgentSession (STT -> LLM -> TTS, VAD) whose voice is the avatar's.

The session's audio output is a QueueAudioOutput, which AvatarRunner reads (through
PlaybackGuard, agent/runner.py) as its AudioReceiver: replies are rendered and published with
the face, and an interruption (AgentSession clears the output) reaches
LipSyncVideoGenerator.clear_buffer at once, then playback_finished(interrupted=True) goes back
to the session. The output waits for the avatar's own playback_started
(`wait_playback_start=True`): the session's "speaking" state and its transcript (livekit-agents'
TranscriptSynchronizer paces words from that moment) follow the audio leaving the renderer, not
the TTS filling a queue. The greeting waits until someone has subscribed to the avatar's voice,
so neither its words nor its transcript go into an empty room.

Room I/O stays livekit-agents' own: the client's microphone in, transcriptions out, text chat
in on the standard `lk.chat` text stream. On top, data packets from the client:
`{"type": "speak", "text": "..."}` makes the avatar say the text as-is, and
`{"type": "interrupt"}` stops what it is saying (a "stop" button: the same as the user talking
over it).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, stt, tts, vad
from livekit.agents.voice.avatar import QueueAudioOutput
from livekit.agents.voice.room_io import RoomOptions
from pydantic import SecretStr

from agent.config import AgentSettings
from agent.metadata import SessionOptions
from agent.tasks import TaskOwner

logger = logging.getLogger("agent")

MAX_SPEAK_CHARS = 2000


class MissingProviderKeysError(RuntimeError):
    """Conversation mode was asked for but provider keys are missing (names them, not values)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__("conversation mode needs these environment variables: " + ", ".join(names))
        self.names = names


def check_conversation_keys(settings: AgentSettings) -> None:
    missing = settings.missing_conversation_keys()
    if missing:
        raise MissingProviderKeysError(missing)


@dataclass(frozen=True, slots=True)
class Providers:
    stt: stt.STT[Any]
    llm: llm.LLM[Any]
    tts: tts.TTS[Any]
    vad: vad.VAD | None


def default_providers(
    settings: AgentSettings, options: SessionOptions, *, vad_model: vad.VAD | None
) -> Providers:
    """STT (Deepgram or OpenAI), the OpenAI LLM (or any OpenAI-compatible base URL) and TTS
    (ElevenLabs or OpenAI), as `ATLAS_STT_PROVIDER` / `ATLAS_TTS_PROVIDER` choose."""
    check_conversation_keys(settings)
    return Providers(
        stt=_stt(settings, options),
        llm=_openai().LLM(model=settings.llm_model, **_openai_client_kwargs(settings)),
        tts=_tts(settings, options),
        vad=vad_model,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def register_provider_plugins() -> None:
    """Import the provider plugins on the main thread: livekit-agents refuses to register a
    plugin from any other, and with the thread job executor sessions start on job threads."""
    import importlib

    for name in ("openai", "deepgram", "elevenlabs", "silero"):
        importlib.import_module(f"livekit.plugins.{name}")


def _openai() -> Any:
    from livekit.plugins import openai

    return openai


def _openai_client_kwargs(settings: AgentSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"api_key": _secret(settings.openai_api_key) or "not-needed"}
    if settings.openai_base_url:
        kwargs["base_url"] = settings.openai_base_url
    return kwargs


def _stt(settings: AgentSettings, options: SessionOptions) -> stt.STT[Any]:
    kwargs: dict[str, Any] = {"language": options.language or settings.stt_language}
    if settings.stt_model:
        kwargs["model"] = settings.stt_model
    if settings.stt_provider == "openai":
        stt_: stt.STT[Any] = _openai().STT(**kwargs, **_openai_client_kwargs(settings))
        return stt_
    from livekit.plugins import deepgram

    kwargs.setdefault("model", "nova-3")
    return deepgram.STT(api_key=_secret(settings.deepgram_api_key) or NOT_GIVEN, **kwargs)


def _tts(settings: AgentSettings, options: SessionOptions) -> tts.TTS[Any]:
    voice = options.voice_id or settings.tts_voice_id
    kwargs: dict[str, Any] = {"model": settings.tts_model} if settings.tts_model else {}
    if settings.tts_provider == "openai":
        if voice:
            kwargs["voice"] = voice
        # pcm: 24 kHz 16-bit mono, nothing to decode
        kwargs["response_format"] = "pcm"
        tts_: tts.TTS[Any] = _openai().TTS(**kwargs, **_openai_client_kwargs(settings))
        return tts_
    from livekit.plugins import elevenlabs

    if voice:
        kwargs["voice_id"] = voice
    return elevenlabs.TTS(api_key=_secret(settings.eleven_api_key) or NOT_GIVEN, **kwargs)


def instructions_for(options: SessionOptions, default: str) -> str:
    parts = [options.instructions or default]
    if options.persona:
        parts.append(f"Persona: {options.persona}")
    return "\n\n".join(parts)


class Conversation:
    """Owns the AgentSession and the QueueAudioOutput that feeds the avatar."""

    def __init__(
        self,
        *,
        providers: Providers,
        instructions: str,
        sample_rate: int,
        greeting: str | None = None,
    ) -> None:
        # playback_started comes from the avatar (PlaybackGuard), not from the queue filling
        self.audio_output = QueueAudioOutput(sample_rate=sample_rate, wait_playback_start=True)
        kwargs: dict[str, Any] = {"stt": providers.stt, "llm": providers.llm, "tts": providers.tts}
        if providers.vad is not None:
            kwargs["vad"] = providers.vad
        self.session: AgentSession[None] = AgentSession(**kwargs)
        self.session.output.audio = self.audio_output
        self._agent = Agent(instructions=instructions)
        self._greeting = greeting
        self._room: rtc.Room | None = None
        self._tasks = TaskOwner("conversation")

    async def start(self, *, room: rtc.Room | None, client_identity: str | None) -> None:
        """Start the session; with a room, use its standard I/O (mic, transcripts, lk.chat)."""
        if room is None:
            await self.session.start(self._agent)
        else:
            room_options = RoomOptions(
                audio_output=False,  # our voice leaves with the face, through AvatarRunner
                close_on_disconnect=False,  # a client reconnect must not end the session
                participant_identity=client_identity or NOT_GIVEN,
            )
            await self.session.start(self._agent, room=room, room_options=room_options)
            self.listen_for_speak(room)

    def greet_when_heard(self, room: rtc.Room) -> None:
        """Say the greeting once a participant has subscribed to the avatar's audio track
        (AvatarRunner publishes it with the first frame, after start())."""
        if self._greeting:
            self._tasks.spawn(self._greet(room, self._greeting), name="greet")

    async def _greet(self, room: rtc.Room, greeting: str) -> None:
        published = asyncio.Event()

        def on_published(*_: object) -> None:
            published.set()

        room.on("local_track_published", on_published)
        try:
            while (voice := _voice_publication(room)) is None:
                await published.wait()
                published.clear()
        finally:
            room.off("local_track_published", on_published)
        await voice.wait_for_subscription()
        logger.info("greeting the client")
        self.session.say(greeting)

    def listen_for_speak(self, room: rtc.Room) -> None:
        """Follow the room's `speak` and `interrupt` data packets."""
        self._room = room
        room.on("data_received", self._on_data_received)

    def speak(self, text: str) -> None:
        """Say `text` as-is (no LLM)."""
        self.session.say(text[:MAX_SPEAK_CHARS])

    def interrupt(self) -> None:
        """Stop the speech playing now (and the reply being generated), as a barge-in does."""
        try:
            self.session.interrupt()
        except RuntimeError as exc:  # not running, or a speech that may not be interrupted
            logger.info("interrupt ignored", extra={"reason": str(exc)})

    def _on_data_received(self, packet: rtc.DataPacket) -> None:
        message = parse_client_message(packet.data)
        if isinstance(message, Speak):
            logger.info("speak message received", extra={"chars": len(message.text)})
            self.speak(message.text)
        elif isinstance(message, Interrupt):
            logger.info("interrupt message received")
            self.interrupt()

    async def aclose(self) -> None:
        await self._tasks.aclose()
        if self._room is not None:
            self._room.off("data_received", self._on_data_received)
        await self.session.aclose()


def _voice_publication(room: rtc.Room) -> rtc.LocalTrackPublication | None:
    for publication in room.local_participant.track_publications.values():
        if publication.kind == rtc.TrackKind.KIND_AUDIO:
            return publication
    return None


@dataclass(frozen=True, slots=True)
class Speak:
    text: str


@dataclass(frozen=True, slots=True)
class Interrupt:
    pass


def parse_client_message(data: bytes) -> Speak | Interrupt | None:
    """A `{"type": "speak", "text": ...}` or `{"type": "interrupt"}` packet; None for anything
    else (other apps' packets share the room)."""
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict):
        return None
    if message.get("type") == "interrupt":
        return Interrupt()
    text = message.get("text")
    if message.get("type") != "speak" or not isinstance(text, str) or not text.strip():
        return None
    return Speak(text)
