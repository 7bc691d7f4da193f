"""Worker settings from the environment (pydantic-settings); built on first use, never at import.

Our own settings take the `ATLAS_` prefix; LiveKit and provider credentials keep the ecosystem's
standard names (LIVEKIT_URL, DEEPGRAM_API_KEY, OPENAI_API_KEY, OPENAI_BASE_URL, ELEVEN_API_KEY).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from renderer.options import RendererOptions
from renderer.settings import load_renderer_options

# The synchroniser's queues, in frames. AvatarRunner sizes both the AudioSource queue and the
# video queue from one duration. Chosen end to end through livekit-server (bench/sync_buffer.py,
# BENCHMARKS.md "A/V sync queue"; 2 sessions at once, 6 rounds for 1 and 2 frames, 2 for 3):
# - other core busy: 1 frame ran dry 5.4 times and 27 ms a minute of speech, 2 frames 4.3 times
#   and 19 ms, 3 frames 9.1 times and 121 ms: under 0.1% of speech either way, nothing heard;
# - viewer A/V lag (positive: mouth after voice): 1 frame -20..+5 ms (median of each run),
#   2 frames -15..+30 (three runs of four at +20 or later), 3 frames +40..+50. Sound before
#   the lips is the direction viewers notice first (ITU-R BT.1359: +45 ms), so the extra
#   frame spends sync margin and buys no measurable audio.
# - glass-to-glass medians overlap (1 frame 160-220 ms, 2 frames 170-240 ms).
SYNC_QUEUE_FRAMES = 1
# The avatar video's bitrate ceiling by default (bits/s): a 512² face at 25 fps, no blocking.
VIDEO_MAX_BITRATE = 2_000_000

AGENT_NAME = "atlas-avatar"


class AgentSettings(BaseSettings):
    # hide_input_in_errors: a validation error never echoes the values it was given (API keys).
    model_config = SettingsConfigDict(
        env_prefix="ATLAS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # The name the worker registers under (explicit dispatch); the API's
    # ATLAS_REALTIME_AGENT_NAME must match it.
    agent_name: str = AGENT_NAME

    # -- capacity and session lifetime -------------------------------------------------------
    # Streams one worker serves at once.
    agent_max_streams: int = Field(default=4, ge=1)
    # "thread": every session of the worker in one process, sharing the models, the render
    # backend (and its cross-session inference batches) and one WebRTC stack; a session that
    # fails ends alone (docs/architecture.md, "Process model"). "process": one process per
    # session, livekit-agents' default: stronger isolation (a crash in native code takes one
    # session), at ~150 MB and a copy of every model per session.
    agent_job_executor: Literal["thread", "process"] = "thread"
    # The worker also counts as full when its own CPU use (all its threads and children)
    # reaches this share of ATLAS_AGENT_CPU_CORES (default: the cgroup's quota, else the
    # cores it may run on).
    agent_cpu_target: float = Field(default=0.9, gt=0, le=1)
    agent_cpu_cores: float | None = Field(default=None, gt=0)
    # The LiveKit server's `agents.target_load` (0.7 unless its config says otherwise): the
    # server offers a job only to a worker whose reported load is below it. The worker reports
    # this value x active / max streams, so it is offered jobs until every stream is taken. A
    # plain active / max (0.75 with 3 of 4 taken) had the server refuse the fourth session.
    agent_load_threshold: float = Field(default=0.7, gt=0, le=1)
    # End the session when the client has not joined within this long, or left this long ago.
    agent_empty_timeout_s: float = Field(default=30.0, gt=0)
    # Upper bound on any session, whatever the dispatch asks for.
    agent_max_duration_s: float = Field(default=3600.0, gt=0)
    # The worker's health/readiness HTTP port (livekit-agents' /, /worker); 0 picks a free one.
    agent_http_host: str = ""
    agent_http_port: int = Field(default=8081, ge=0, le=65535)
    # Prometheus metrics (agent/metrics.py) at this port's /metrics, served by livekit-agents
    # (k8s/ sets 8082). Unset: not served, so several workers on one host never collide.
    agent_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    # At a session's end, how long the API may take to record it and delete the room before
    # the worker deletes the room itself (agent/status.py).
    agent_room_handoff_s: float = Field(default=5.0, ge=0)
    # livekit-agents' initialize_process_timeout: a process whose prewarm (landmarker, render
    # backend, Silero VAD) takes longer takes no jobs. Measured ("models loaded" in the log):
    # 2.1-5.1 s for two processes loading at once on a busy 2-core machine (load average 5),
    # 11.3 s at load average 11: past livekit-agents' 10 s default, which leaves a worker
    # that never takes a job.
    agent_prewarm_timeout_s: float = Field(default=60.0, gt=0)
    # AvatarRunner's A/V synchroniser queues (audio and video), in frames (agent/runner.py).
    agent_sync_frames: int = Field(default=SYNC_QUEUE_FRAMES, ge=1, le=10)
    # The avatar's video codec and encoder (agent/runner.py). VP8 in software by default:
    # every browser decodes it. On NVIDIA nodes "h264" with "nvenc" moves encoding, a quarter
    # of a session's CPU, off the CPU; "auto" picks a hardware encoder when the SDK finds one.
    agent_video_codec: Literal["vp8", "h264", "vp9", "av1"] = "vp8"
    agent_video_encoder: Literal["auto", "software", "hardware", "nvenc", "vaapi"] = "auto"
    # The ceiling of the avatar's video bitrate (bits/s); WebRTC's congestion control goes below
    # it on a weak link.
    agent_video_max_bitrate: int = Field(default=VIDEO_MAX_BITRATE, ge=100_000, le=20_000_000)

    # -- rendering: the renderer's own ATLAS_RENDERER_* settings (renderer_options below) -------

    # -- faces --------------------------------------------------------------------------------
    data_dir: Path = Path("atlas-data")
    # Where `storage_key` faces live: file://DIR (default <data_dir>/storage).
    storage_url: str | None = None
    face_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    face_fetch_timeout_s: float = Field(default=10.0, gt=0)
    # Plain http:// face URLs are refused unless this is set (local development only).
    face_allow_http: bool = False

    # -- conversation mode --------------------------------------------------------------------
    # Which service hears and which speaks; the LLM is always OpenAI's API (or any server that
    # speaks it, at OPENAI_BASE_URL). "openai" STT/TTS use that same key and base URL.
    stt_provider: Literal["deepgram", "openai"] = "deepgram"
    tts_provider: Literal["elevenlabs", "openai"] = "elevenlabs"
    stt_model: str | None = None  # the provider's default: nova-3, gpt-4o-mini-transcribe
    stt_language: str = "en"
    llm_model: str = "gpt-4o-mini"
    tts_voice_id: str | None = None
    tts_model: str | None = None
    default_instructions: str = (
        "You are a friendly assistant with a face. Answer briefly, in plain spoken sentences."
    )

    # -- standard names (no prefix) -----------------------------------------------------------
    livekit_url: str | None = Field(default=None, validation_alias="LIVEKIT_URL")
    livekit_api_key: str | None = Field(default=None, validation_alias="LIVEKIT_API_KEY")
    livekit_api_secret: SecretStr | None = Field(
        default=None, validation_alias="LIVEKIT_API_SECRET"
    )
    deepgram_api_key: SecretStr | None = Field(default=None, validation_alias="DEEPGRAM_API_KEY")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    eleven_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ELEVEN_API_KEY", "ELEVENLABS_API_KEY")
    )

    def renderer_options(self) -> RendererOptions:
        """ATLAS_RENDERER_*, read as `atlas render` and the job worker read them."""
        return load_renderer_options()

    def storage_root(self) -> Path:
        """The local directory that `storage_key` faces resolve under."""
        url = self.storage_url
        if url is None:
            return self.data_dir / "storage"
        if url.startswith("file://"):
            return Path(url.removeprefix("file://"))
        raise ValueError("ATLAS_STORAGE_URL must be file://DIR for the agent's face store")

    def missing_conversation_keys(self) -> list[str]:
        """The provider keys conversation mode needs but the environment lacks."""
        missing = []
        if self.stt_provider == "deepgram" and self.deepgram_api_key is None:
            missing.append("DEEPGRAM_API_KEY")
        # a local OpenAI-compatible server (OPENAI_BASE_URL) may need no key
        if self.openai_api_key is None and self.openai_base_url is None:
            missing.append("OPENAI_API_KEY")
        if self.tts_provider == "elevenlabs" and self.eleven_api_key is None:
            missing.append("ELEVEN_API_KEY")
        return missing


@lru_cache(maxsize=1)
def get_settings() -> AgentSettings:
    return AgentSettings()
