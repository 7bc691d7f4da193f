"""The JSON contracts the worker reads: dispatch metadata and room metadata.

See docs/architecture.md, "Contracts between the API and the worker".

Dispatch metadata (set by the API, or by atlas.plugin.AvatarSession):

    {"session_id": "ses_…", "mode": "passthrough" | "conversation" | "plugin",
     "face": {"url": "https://…"} | {"storage_key": "faces/…"}, plus "version": int,
     "max_duration_seconds": int, "options": {…}}

Room metadata (written by the API for a face swap; other keys are ignored):

    {"face": {"url" | "storage_key": …, "version": int}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Mode = Literal["passthrough", "conversation", "plugin"]

SESSION_ID_PATTERN = r"^ses_[A-Za-z0-9_-]{8,}$"
# livekit-agents' ATTRIBUTE_PUBLISH_ON_BEHALF (a test keeps the two equal)
PUBLISH_ON_BEHALF = "lk.publish_on_behalf"


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
    # plugin mode: the agent whose audio we render, and the avatar participant's identity and
    # name (the job joins as that participant, publishing on the agent's behalf)
    sender_identity: str | None = None
    avatar_identity: str | None = None
    avatar_name: str | None = None
    # sent by AvatarSession before the job joined as the avatar itself; unused, never logged
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
    def _plugin_needs_identities(self) -> DispatchMetadata:
        if self.mode != "plugin":
            return self
        sender, avatar = self.options.sender_identity, self.options.avatar_identity
        if not sender or not avatar:
            raise ValueError("plugin mode needs options.sender_identity and avatar_identity")
        if sender == avatar:  # joining as the agent's identity would disconnect the agent
            raise ValueError("plugin mode needs an avatar_identity other than the sender's")
        return self


@dataclass(frozen=True)
class AvatarParticipant:
    """What a plugin-mode job accepts with (livekit-agents' JobRequest.accept arguments)."""

    identity: str
    name: str
    attributes: dict[str, str]


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


def avatar_participant(raw: str) -> AvatarParticipant | None:
    """The participant a plugin-mode job joins as: the avatar's identity and name, publishing on
    behalf of the sending agent (livekit-agents' `lk.publish_on_behalf`, which clients and the
    agent's RoomIO read as "this is the agent's face and voice"). None for the other modes and
    for metadata that does not parse (the job takes livekit-agents' default identity and fails
    as usual)."""
    try:
        meta = parse_dispatch_metadata(raw)
    except MetadataError:
        return None
    options = meta.options
    if meta.mode != "plugin" or not options.avatar_identity or not options.sender_identity:
        return None
    return AvatarParticipant(
        identity=options.avatar_identity,
        name=options.avatar_name or "",
        attributes={PUBLISH_ON_BEHALF: options.sender_identity},
    )


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
