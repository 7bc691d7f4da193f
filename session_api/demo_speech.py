"""Text to speech for the demo page's passthrough mode: the page sends text, gets a WAV back and
publishes it like any audio file (`publishAudio`), so the avatar lip-syncs a voice.

It calls an OpenAI-compatible `/audio/speech` (OPENAI_BASE_URL, OPENAI_API_KEY: the same service
and names the agent's `ATLAS_TTS_PROVIDER=openai` uses) and wraps its raw PCM in a WAV header.
Off when neither variable is set.
"""

from __future__ import annotations

import io
import wave

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from session_api.errors import ApiError, InvalidInput

OPENAI_URL = "https://api.openai.com/v1"
PCM_RATE = 24_000  # OpenAI's `pcm`: 24 kHz, 16-bit, mono
MAX_TEXT_CHARS = 1000  # a sentence or a paragraph: this is a demo, and the operator pays


class SpeechSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ATLAS_", extra="ignore", hide_input_in_errors=True
    )

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    tts_model: str = "gpt-4o-mini-tts"  # ATLAS_TTS_MODEL, as the agent reads it
    tts_voice_id: str = "alloy"  # ATLAS_TTS_VOICE_ID
    tts_timeout_s: float = Field(default=30.0, gt=0)

    @property
    def enabled(self) -> bool:
        return self.openai_api_key is not None or self.openai_base_url is not None


class SpeechOff(ApiError):
    status, code = 404, "not_found"
    default_message = (
        "Text to speech is not set up: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local "
        "OpenAI-compatible server) for atlas serve."
    )


class SpeechFailed(ApiError):
    status, code = 503, "temporarily_unavailable"
    default_message = "The text-to-speech service did not answer; try again."


def check_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("text must be a non-empty string.")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInput(f"text must be at most {MAX_TEXT_CHARS} characters.")
    return value.strip()


async def synthesize(settings: SpeechSettings, text: str) -> bytes:
    """`text` spoken, as a WAV file. Raises SpeechOff or SpeechFailed (ApiErrors)."""
    if not settings.enabled:
        raise SpeechOff()
    base = (settings.openai_base_url or OPENAI_URL).rstrip("/")
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "none"
    body = {
        "model": settings.tts_model,
        "voice": settings.tts_voice_id,
        "input": text,
        "response_format": "pcm",
    }
    try:
        async with httpx.AsyncClient(timeout=settings.tts_timeout_s, trust_env=False) as client:
            response = await client.post(
                f"{base}/audio/speech", json=body, headers={"Authorization": f"Bearer {key}"}
            )
    except httpx.HTTPError as exc:
        raise SpeechFailed() from exc
    if response.status_code != 200 or not response.content:
        raise SpeechFailed(f"The text-to-speech service answered HTTP {response.status_code}.")
    return pcm_to_wav(response.content)


def pcm_to_wav(pcm: bytes, rate: int = PCM_RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm[: len(pcm) // 2 * 2])
    return out.getvalue()
