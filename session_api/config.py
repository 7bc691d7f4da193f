"""Settings from the environment (prefix ATLAS_), read when asked for, never at import."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"
_PLACEHOLDERS = frozenset({"", DEV_SECRET, "change-me", "changeme", "secret", "CHANGE_ME"})


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error never echoes the values it was given (secrets).
    model_config = SettingsConfigDict(
        env_prefix="ATLAS_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    env: Literal["dev", "prod"] = "dev"
    data_dir: Path = Path("./atlas-data")
    database_url: str | None = None
    storage_url: str | None = None
    # Optional S3 endpoint override (SeaweedFS, MinIO...); AWS_ENDPOINT_URL_S3 also works.
    s3_endpoint_url: str | None = None
    redis_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    # Unset: a random secret kept in <data dir>/secret_key (session_api.datadir) signs links.
    secret_key: SecretStr = SecretStr(DEV_SECRET)
    # /metrics is served only on this separate port (session_api.metrics_listener), for the
    # scraper; unset, no metrics are served. ATLAS_METRICS_HOST: the address it listens on.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"

    # Offline jobs (docs/architecture.md, "Offline jobs: the queue")
    max_upload_bytes: int = 50 * 1024 * 1024
    # Audio is refused at submit when it lasts longer (declared or decoded) or is sampled below
    # 8 kHz; the renderer stops at this length too (session_api.media, renderer.offline).
    max_audio_seconds: float = Field(default=600.0, gt=0)
    # 150 MB slots of photo decoding per API process; a big photo takes two (session_api.media).
    image_decode_concurrency: int = Field(default=2, ge=1)
    # An upload whose client sends nothing for this long, or takes longer in all, is dropped.
    upload_idle_timeout_s: float = Field(default=30.0, gt=0)
    upload_timeout_s: float = Field(default=600.0, gt=0)
    # Connections `atlas serve` holds at once; beyond it, requests are answered 503.
    max_connections: int = Field(default=256, ge=1)
    job_timeout_s: float = 300.0
    job_max_attempts: int = 3
    lease_s: float = 30.0
    heartbeat_s: float = 5.0
    poll_interval_s: float = 0.5
    result_ttl_s: int = 24 * 3600
    cleanup_interval_s: float = 300.0
    worker_concurrency: int = 1
    # Jobs one key may have processing at once over all workers (fair queueing across keys).
    queue_per_key_concurrency: int | None = Field(default=4, ge=1)
    # `atlas serve` runs a worker in-process unless this is false (then run `atlas worker`).
    embedded_worker: bool = True
    # Temp dirs left by a killed process are swept at start; while other processes share the
    # data dir, only those idle this long (uploads and renders are bounded well below it).
    tmp_stale_after_s: float = Field(default=3600.0, gt=0)

    # Rate limits
    default_rpm: int = 30

    # Webhooks
    webhook_timeout_s: float = 10.0
    webhook_retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0)
    # Networks a webhook may reach although private (for tests and trusted internal receivers).
    webhook_allow_networks: list[str] = Field(default_factory=list)
    # CA bundle to verify webhook receivers with (None: the system store).
    webhook_ca_file: str | None = None

    db_busy_timeout_s: float = 5.0

    # Realtime (docs/architecture.md, "Realtime sessions and the LiveKit wiring").
    # LiveKit's standard names, no prefix.
    livekit_url: str | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_URL", "livekit_url")
    )
    livekit_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_API_KEY", "livekit_api_key")
    )
    livekit_api_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("LIVEKIT_API_SECRET", "livekit_api_secret")
    )
    # The URL clients connect to, when it differs from the one the API reaches LiveKit at.
    livekit_public_url: str | None = None
    livekit_timeout_s: float = 5.0
    realtime_agent_name: str = "atlas-avatar"
    # Sessions (starting or active) at once, over all API processes: the GPU slots.
    realtime_capacity: int = Field(default=8, ge=0)
    realtime_retry_after_s: int = 30
    # Default and ceiling of max_duration_seconds; a key may carry a lower ceiling.
    realtime_max_duration_s: int = Field(default=3600, ge=10)
    realtime_price_conversation: Decimal = Decimal("10")  # $ per hour, prorated per second
    realtime_price_passthrough: Decimal = Decimal("6")
    # A session whose client has not joined, or has left, ends this long after (the worker's
    # empty timeout, sent with each dispatch): the client may rejoin until then, and the bill
    # leaves the wait out.
    realtime_empty_timeout_s: int = Field(default=30, gt=0)
    # LiveKit closes an empty room only this much later (its empty and departure timeouts), so
    # the worker's own end comes first: LiveKit counts the avatar as a dependent participant,
    # and its 20 s default would close the room inside the rejoin window.
    realtime_room_timeout_margin_s: int = Field(default=30, ge=5)
    realtime_token_margin_s: int = 300  # the client token outlives max duration by this much
    realtime_face_max_bytes: int = 10 * 1024 * 1024
    realtime_face_timeout_s: float = 10.0
    realtime_face_allow_networks: list[str] = Field(default_factory=list)
    realtime_face_ca_file: str | None = None
    # How the worker is told where the face is: a storage key (shared file storage) or a URL.
    realtime_face_ref: Literal["auto", "storage_key", "url"] = "auto"
    realtime_swaps_per_minute: int = Field(default=10, ge=1)
    realtime_reaper_interval_s: float = Field(default=1.0, gt=0)
    # a reaper sweep asks LiveKit about at most this many rooms' workers (one call each)
    realtime_reconcile_rooms_per_sweep: int = Field(default=16, ge=1)
    # A worker gone from its room without a word is ended (`agent_lost`) by the reaper only
    # this long after a sweep first found it gone: LiveKit's participant_left webhook, which
    # tells when it was last heard from, comes first; the reaper could only bill to its sweep.
    realtime_agent_lost_grace_s: float = Field(default=5.0, ge=0)
    # a create waits this long for an avatar worker to join the room, then answers no_capacity
    realtime_join_timeout_s: float = Field(default=15.0, gt=0)
    # a dispatch no worker took by then is made again: LiveKit drops a job it offered while no
    # worker could take it (none registered yet). Twice livekit-server's 3 s job-request
    # deadline: before that a worker may still be answering, and deleting the dispatch then
    # would end a job just assigned.
    realtime_redispatch_after_s: float = Field(default=6.0, gt=0)
    realtime_start_timeout_s: float = 60.0  # a create that never finished is failed after this

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        secret = self.secret_key.get_secret_value()
        if self.env != "dev" and secret.strip() in _PLACEHOLDERS:
            raise ValueError("ATLAS_SECRET_KEY must be set to a real secret outside dev")
        if self.env != "dev" and len(secret) < 16:
            raise ValueError("ATLAS_SECRET_KEY must be at least 16 characters outside dev")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'atlas.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return f"file://{(self.data_dir / 'storage').resolve()}"

    @property
    def storage_kind(self) -> Literal["file", "s3"]:
        scheme = urlsplit(self.resolved_storage_url).scheme
        if scheme not in {"file", "s3"}:
            raise ValueError(f"ATLAS_STORAGE_URL must be file:// or s3://, got {scheme}://")
        return "s3" if scheme == "s3" else "file"

    @property
    def livekit_missing(self) -> list[str]:
        """The LiveKit variables realtime needs but the environment lacks."""
        values = {
            "LIVEKIT_URL": self.livekit_url,
            "LIVEKIT_API_KEY": self.livekit_api_key,
            "LIVEKIT_API_SECRET": (
                self.livekit_api_secret.get_secret_value() if self.livekit_api_secret else None
            ),
        }
        return [name for name, value in values.items() if not value]

    @property
    def is_embedded(self) -> bool:
        """True on the laptop defaults: SQLite and local files."""
        return self.resolved_database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
