"""Response bodies, field for field as the Atlas API v8.0 documents them."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel

_ASCII_DIGITS = re.compile(r"[0-9]+")


def iso_z(value: datetime | None) -> str | None:
    """'2026-03-25T16:47:07Z', the spec's timestamp format."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_offset(value: datetime | None) -> str | None:
    """'2026-03-31T16:47:07+00:00', the format of webhook payloads."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat()


def whole_seconds(value: object) -> int | None:
    """A JSON integer, or a string of ASCII digits only (a form field); None for anything else.

    int() alone takes "٣٠" (Arabic-Indic digits), "1_000" and " 60 ".
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _ASCII_DIGITS.fullmatch(value):
        return int(value)
    return None


class JobAccepted(BaseModel):
    job_id: str
    status: str
    message: str


class JobInput(BaseModel):
    text_preview: str | None = None
    language: str | None = None
    chars: int | None = None
    audio_size: int
    image_size: int


class JobOutput(BaseModel):
    duration: float | None = None
    size_bytes: int | None = None
    sample_rate: int | None = None
    has_result: bool | None = None


class JobTiming(BaseModel):
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    latency_ms: int | None


class JobDetail(BaseModel):
    job_id: str
    type: str
    status: str
    queue_position: int
    progress: int
    input: JobInput
    output: JobOutput
    error: str | None
    error_code: str | None
    timing: JobTiming
    url: str | None = None
    expires_in: int | None = None
    result_url: str | None = None


class JobSummary(BaseModel):
    job_id: str
    type: str
    status: str
    created_at: str | None
    completed_at: str | None
    latency_ms: int | None
    output_duration: float | None
    input_chars: int | None = None
    error_code: str | None


class JobList(BaseModel):
    jobs: list[JobSummary]
    count: int
    limit: int
    offset: int


class JobResult(BaseModel):
    url: str
    content_type: str
    expires_in: int


class RateLimitInfo(BaseModel):
    requests_per_minute: int
    remaining: int
    resets_in: str


class MonthlyCapInfo(BaseModel):
    limit: int | None
    used: int


class Me(BaseModel):
    authenticated: bool
    key_prefix: str
    name: str
    tier: str
    requests_used: int
    rate_limit: RateLimitInfo
    monthly_cap: MonthlyCapInfo
    billing: str


class Services(BaseModel):
    avatar_generation: str
    voice_synthesis: str | None = None


class SystemStatus(BaseModel):
    status: str
    services: Services


class Health(BaseModel):
    status: str
    services: dict[str, str]


class RealtimeSessionCreated(BaseModel):
    session_id: str
    livekit_url: str
    token: str
    room: str
    mode: str
    max_duration_seconds: int
    pricing: str


class RealtimeSessionStatus(BaseModel):
    session_id: str
    status: str  # active | ended | failed
    room: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float
    # beyond the spec: the bill so far (ended: final) and, for failed sessions, why
    estimated_cost: str
    error_code: str | None = None


class RealtimeFaceUpdated(BaseModel):
    session_id: str
    status: str
    message: str


class RealtimeSessionEnded(BaseModel):
    session_id: str
    status: str
    duration_seconds: float
    estimated_cost: str
