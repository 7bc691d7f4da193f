"""The JSON contracts the worker reads: dispatch metadata and room metadata.

See docs/architecture.md, "Contracts between the API and the worker".

Dispatch metadata (set by the API, or by agent.plugin.AvatarSession):

    {"session_id": "ses_…", "mode": "passthrough" | "conversation" | "plugin",
     "face": {"url": "https://…"} | {"storage_key": "faces/…"}, plus "version": int,
     "max_duration_seconds": int, "options": {…}}

Room metadata (written by the API for a face swap; other keys are ignored):

    {"face": {"url" | "storage_key": …, "version": int}}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Mode = Literal["passthrough", "conversation", "plugin"]

SESSION_ID_PATTERN = r"^ses_[A-Za-z0-9_-]{8,}$"


class MetadataError(ValueError):
    """Dispatch metadata is missing, not JSON, or breaks the contract. Safe to log."""


class FaceRef(BaseModel):
    """Where the face photo is: exactly one of an HTTPS url or a storage key."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    url: str | None = None
    storage_key: str | None = None
    version: int = Field(default=1, ge=0)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> FaceRef:
        if (self.url is None) == (self.storage_key is None):
            raise ValueError("face needs exactly one of url or storage_key")
        return self


class SessionOptions(BaseModel):
    """Per-session options. Unknown keys are kept for forward compatibility."""

    model_config = ConfigDict(frozen=True, extra="allow")

    # conversation mode
    instructions: str | None = None
    persona: str | None = None
    greeting: str | None = None
    voice_id: str | None = None
    language: str | None = None
    # ends the session when the client has not joined / has left for this long
    empty_timeout_seconds: float | None = Field(default=None, gt=0)
    # plugin mode: the agent whose audio we render, and the token we join with
    sender_identity: str | None = None
    avatar_identity: str | None = None
    avatar_token: str | None = Field(default=None, repr=False)


class DispatchMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    session_id: str = Field(pattern=SESSION_ID_PATTERN)
    mode: Mode
    face: FaceRef
    max_duration_seconds: float = Field(gt=0, le=24 * 3600)
    options: SessionOptions = Field(default_factory=SessionOptions)

    @property
    def room_name(self) -> str:
        return room_name_for(self.session_id)

    @property
    def client_identity(self) -> str:
        return client_identity_for(self.session_id)

    @model_validator(mode="after")
    def _plugin_needs_sender(self) -> DispatchMetadata:
        if self.mode == "plugin" and not self.options.sender_identity:
            raise ValueError("plugin mode needs options.sender_identity")
        return self


def room_name_for(session_id: str) -> str:
    return f"atlas-rt-{session_id}"


def client_identity_for(session_id: str) -> str:
    return f"user-{session_id}"


def parse_dispatch_metadata(raw: str) -> DispatchMetadata:
    """Parse and validate; raises MetadataError with a message that holds no user values."""
    if not raw:
        raise MetadataError("dispatch metadata is empty")
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MetadataError("dispatch metadata is not JSON") from exc
    try:
        return DispatchMetadata.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"]) or "<root>" for err in exc.errors()})
        raise MetadataError(f"dispatch metadata is invalid: {', '.join(fields)}") from exc


def parse_room_face(raw: str) -> FaceRef | None:
    """The face reference in room metadata, or None if there is none (or it is malformed)."""
    if not raw:
        return None
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "face" not in data:
        return None
    try:
        return FaceRef.model_validate(data["face"])
    except ValidationError:
        return None
