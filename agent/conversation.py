"""Conversation mode: an AgentSession (STT -> LLM -> TTS, VAD) whose voice is the avatar's.

The session's audio output is a QueueAudioOutput, which AvatarRunner reads as its
AudioReceiver: replies are rendered and published with the face, and an interruption
(AgentSession clears the output) reaches LipSyncVideoGenerator.clear_buffer at once, then
playback_finished(interrupted=True) goes back to the session.

Room I/O stays livekit-agents' own: the client's microphone in, transcriptions out, text chat
in on the standard `lk.chat` text stream. On top, a data packet
`{"type": "speak", "text": "..."}` makes the avatar say the text as-is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, stt, tts, vad
from livekit.agents.voice.avatar import QueueAudioOutput
from livekit.agents.voice.room_io import RoomOptions

from agent.config import AgentSettings
from agent.metadata import SessionOptions

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
    """Deepgram, OpenAI (or any OpenAI-compatible base URL), ElevenLabs, from settings."""
    check_conversation_keys(settings)
    from livekit.plugins import deepgram, elevenlabs, openai

    def secret(value: Any) -> Any:
        return value.get_secret_value() if value is not None else None

    stt_kwargs: dict[str, Any] = {"model": settings.stt_model}
    stt_kwargs["language"] = options.language or settings.stt_language
    llm_kwargs: dict[str, Any] = {"model": settings.llm_model}
    if settings.openai_base_url:
        llm_kwargs["base_url"] = settings.openai_base_url
    llm_kwargs["api_key"] = secret(settings.openai_api_key) or "not-needed"
    tts_kwargs: dict[str, Any] = {"api_key": secret(settings.eleven_api_key)}
    voice = options.voice_id or settings.tts_voice_id
    if voice:
        tts_kwargs["voice_id"] = voice
    if settings.tts_model:
        tts_kwargs["model"] = settings.tts_model
    return Providers(
        stt=deepgram.STT(api_key=secret(settings.deepgram_api_key), **stt_kwargs),
        llm=openai.LLM(**llm_kwargs),
        tts=elevenlabs.TTS(**tts_kwargs),
        vad=vad_model,
    )


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
        self.audio_output = QueueAudioOutput(sample_rate=sample_rate)
        kwargs: dict[str, Any] = {"stt": providers.stt, "llm": providers.llm, "tts": providers.tts}
        if providers.vad is not None:
            kwargs["vad"] = providers.vad
        self.session: AgentSession[None] = AgentSession(**kwargs)
        self.session.output.audio = self.audio_output
        self._agent = Agent(instructions=instructions)
        self._greeting = greeting
        self._room: rtc.Room | None = None

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
        if self._greeting:
            self.session.say(self._greeting)

    def listen_for_speak(self, room: rtc.Room) -> None:
        """Say the text of `{"type": "speak", "text": ...}` data packets from the room."""
        self._room = room
        room.on("data_received", self._on_data_received)

    def speak(self, text: str) -> None:
        """Say `text` as-is (no LLM)."""
        self.session.say(text[:MAX_SPEAK_CHARS])

    def _on_data_received(self, packet: rtc.DataPacket) -> None:
        text = parse_speak_message(packet.data)
        if text is not None:
            logger.info("speak message received", extra={"chars": len(text)})
            self.speak(text)

    async def aclose(self) -> None:
        if self._room is not None:
            self._room.off("data_received", self._on_data_received)
        await self.session.aclose()


def parse_speak_message(data: bytes) -> str | None:
    """The text of a `{"type": "speak", "text": ...}` packet, or None for anything else."""
    try:
        message = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or message.get("type") != "speak":
        return None
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    return text
