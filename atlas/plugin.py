"""Use our avatar from any LiveKit agent, like the Tavus, Simli or Bey plugins:

    from atlas.plugin import AvatarSession

    session = AgentSession(
        ...,
        # upstream's advice for avatars: the avatar's audio output cannot pause, so a "false"
        # interruption could never be resumed (livekit-agents warns and ignores it)
        turn_handling={"interruption": {"resume_false_interruption": False}},
    )
    avatar = AvatarSession(face_url="https://example.com/face.jpg")
    await avatar.start(session, room=ctx.room)  # before session.start(...)

start() dispatches our worker (`atlas-avatar`, mode `plugin`) into the agent's room with the
face and the avatar participant's identity, and replaces the agent session's audio output with
livekit-agents' DataStreamAudioOutput: the agent's speech goes to the avatar as byte streams on
`lk.audio_stream`, interruptions as the `lk.clear_buffer` RPC, and the avatar reports
`lk.playback_started` / `lk.playback_finished` (agent.playback guarantees one of each per
segment). The avatar publishes lip-synced video and the audio it speaks.

One participant of ours joins the room: the worker's job itself, which accepts the dispatch
as the avatar (identity `avatar_identity`, kind agent, attribute `lk.publish_on_behalf` = the
agent's identity, so clients show the avatar's tracks as the agent's). livekit-server mints
that job's room token; no token or key of the caller's is handed to the worker.

Credentials come from the arguments or LiveKit's standard variables (LIVEKIT_URL,
LIVEKIT_API_KEY, LIVEKIT_API_SECRET): the ones the agent's own worker already has. They are
used here only to create the dispatch, and never leave this process.

This module lives in `atlas`, not `agent`, and imports nothing from `agent`: LiveKit's
quickstarts name the entrypoint file `agent.py`, and a script's own directory comes first on
sys.path, so in such a project `import agent` finds that file, never our package. The dispatch
metadata below is therefore built here as plain JSON; tests/agent/test_plugin.py parses it with
the worker's own contract (agent.metadata) so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from typing import Any, Literal, Protocol

from livekit import api, rtc
from livekit.agents import AgentSession, get_job_context, utils
from livekit.agents.voice.avatar import AvatarSession as BaseAvatarSession
from livekit.agents.voice.avatar import DataStreamAudioOutput

logger = logging.getLogger("atlas.plugin")

# The worker's agent_name (agent.config.AGENT_NAME; a test keeps the two equal).
AGENT_NAME = "atlas-avatar"

DEFAULT_AVATAR_IDENTITY = "atlas-avatar-agent"
DEFAULT_AVATAR_NAME = "Atlas avatar"
# The agent's own voice once the avatar has gone (what RoomIO publishes by default).
FALLBACK_SAMPLE_RATE = 24000


class AtlasAvatarError(Exception):
    """The avatar could not be started (configuration or dispatch). Holds no secrets."""


class AgentDispatcher(Protocol):
    """Creates an explicit dispatch of a named agent into a room (AgentDispatchService)."""

    async def create_dispatch(self, *, room: str, agent_name: str, metadata: str) -> None: ...

    async def aclose(self) -> None: ...


class LiveKitAgentDispatcher:
    """AgentDispatcher over livekit-api's AgentDispatchService.CreateDispatch."""

    def __init__(self, *, url: str, api_key: str, api_secret: str) -> None:
        self._url, self._key, self._secret = url, api_key, api_secret
        self._api: api.LiveKitAPI | None = None

    async def create_dispatch(self, *, room: str, agent_name: str, metadata: str) -> None:
        if self._api is None:  # built on first use: it needs a running event loop
            self._api = api.LiveKitAPI(self._url, self._key, self._secret)
        await self._api.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=agent_name, room=room, metadata=metadata)
        )

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None


# The worker's limits on the dispatch (agent/metadata.py; tests/agent/test_plugin.py keeps the
# two equal): a dispatch outside them would only fail in the worker, far from the mistake.
MAX_DURATION_LIMIT_S = 24 * 3600


def _check_inputs(
    *,
    face_url: str | None,
    face_storage_key: str | None,
    avatar_identity: str,
    max_duration_seconds: float,
    empty_timeout_seconds: float | None,
) -> None:
    """Refuse, here in the caller's process, what the worker would refuse."""
    if (face_url is None) == (face_storage_key is None):
        raise AtlasAvatarError("give exactly one of face_url or face_storage_key")
    if face_url is not None and not (
        isinstance(face_url, str) and face_url.startswith(("https://", "http://"))
    ):
        raise AtlasAvatarError("face_url must be an http(s) URL")
    if face_storage_key is not None and not (
        isinstance(face_storage_key, str) and face_storage_key.strip()
    ):
        raise AtlasAvatarError("face_storage_key must be a non-empty string")
    if not (isinstance(avatar_identity, str) and avatar_identity.strip()):
        raise AtlasAvatarError("avatar_identity must be a non-empty string")
    if not _number_in(max_duration_seconds, 0, MAX_DURATION_LIMIT_S):
        raise AtlasAvatarError(
            f"max_duration_seconds must be a number > 0 and <= {MAX_DURATION_LIMIT_S}"
        )
    if empty_timeout_seconds is not None and not _number_in(empty_timeout_seconds, 0, None):
        raise AtlasAvatarError("empty_timeout_seconds must be a number > 0")


def _number_in(value: object, above: float, at_most: float | None) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if value != value or value in (float("inf"), float("-inf")):  # NaN, infinities
        return False
    return value > above and (at_most is None or value <= at_most)


def new_session_id() -> str:
    return "ses_" + secrets.token_urlsafe(18)  # 24 url-safe characters


class AvatarSession(BaseAvatarSession[Literal["metrics_collected"]]):
    """Our lip-sync avatar for a LiveKit agent session (the LiveKit avatar protocol).

    Build the AgentSession with `resume_false_interruption` off (upstream's advice for every
    avatar plugin; see the module docstring): the avatar's audio output cannot pause."""

    def __init__(
        self,
        *,
        face_url: str | None = None,
        face_storage_key: str | None = None,
        avatar_identity: str = DEFAULT_AVATAR_IDENTITY,
        avatar_name: str = DEFAULT_AVATAR_NAME,
        agent_name: str = AGENT_NAME,
        max_duration_seconds: float = 3600,
        empty_timeout_seconds: float | None = None,
        livekit_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        dispatcher: AgentDispatcher | None = None,
    ) -> None:
        """The face: an HTTPS `face_url`, or a `face_storage_key` in the worker's face store.
        `empty_timeout_seconds`: the avatar leaves when this agent has been gone that long.
        `dispatcher`: creates the dispatch in place of livekit-api with the credentials (which
        are then not needed)."""
        super().__init__()
        _check_inputs(
            face_url=face_url,
            face_storage_key=face_storage_key,
            avatar_identity=avatar_identity,
            max_duration_seconds=max_duration_seconds,
            empty_timeout_seconds=empty_timeout_seconds,
        )
        face = {"url": face_url} if face_url is not None else {"storage_key": face_storage_key}
        self._face: dict[str, Any] = {**face, "version": 1}
        self._avatar_identity = avatar_identity
        self._avatar_name = avatar_name
        self._agent_name = agent_name
        self._max_duration_s = max_duration_seconds
        self._empty_timeout_s = empty_timeout_seconds
        self._url = livekit_url or os.environ.get("LIVEKIT_URL")
        self._key = api_key or os.environ.get("LIVEKIT_API_KEY")
        self._secret = api_secret or os.environ.get("LIVEKIT_API_SECRET")
        self._dispatcher = dispatcher
        self._session_id = new_session_id()
        self._session: AgentSession[Any] | None = None
        self._agent_room: rtc.Room | None = None
        self._fallback_task: asyncio.Task[None] | None = None
        self._own_voice: Any = None  # the agent's own audio output once the avatar has gone

    @property
    def avatar_identity(self) -> str:
        return self._avatar_identity

    @property
    def provider(self) -> str:
        return "atlas"

    @property
    def session_id(self) -> str:
        return self._session_id

    async def start(self, agent_session: AgentSession[Any], room: rtc.Room) -> None:
        """Dispatch the avatar into `room` (connected) and route the session's audio to it."""
        dispatcher = self._dispatcher or self._default_dispatcher()
        self._dispatcher = dispatcher
        sender = _local_identity(room)
        if sender == self._avatar_identity:  # the avatar's join would disconnect the agent
            raise AtlasAvatarError("avatar_identity must differ from the agent's own identity")
        await super().start(agent_session, room)
        metadata = self.dispatch_metadata(sender_identity=sender)
        extra = {"session_id": self._session_id, "room": room.name}
        logger.info("dispatching the avatar", extra=extra)
        try:
            await dispatcher.create_dispatch(
                room=room.name, agent_name=self._agent_name, metadata=metadata
            )
        except api.TwirpError as exc:
            raise AtlasAvatarError(f"dispatching the avatar failed: {exc.code}") from exc
        # the agent's speech waits until the avatar's video is up (no words before the face)
        agent_session.output.replace_audio_tail(
            DataStreamAudioOutput(
                room,
                destination_identity=self._avatar_identity,
                wait_remote_track=rtc.TrackKind.KIND_VIDEO,
                wait_playback_start=True,  # the avatar reports real playback starts
            )
        )
        self._session, self._agent_room = agent_session, room
        room.on("participant_disconnected", self._on_participant_disconnected)

    def _default_dispatcher(self) -> LiveKitAgentDispatcher:
        """CreateDispatch with the caller's own credentials, the only use made of them."""
        if not (self._url and self._key and self._secret):
            raise AtlasAvatarError(
                "LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set "
                "(or passed as livekit_url, api_key, api_secret, or give a dispatcher)"
            )
        return LiveKitAgentDispatcher(url=self._url, api_key=self._key, api_secret=self._secret)

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self._avatar_identity and self._fallback_task is None:
            self._fallback_task = asyncio.create_task(self._speak_without_the_avatar())

    async def _speak_without_the_avatar(self) -> None:
        """The avatar has gone (its max duration, or a failure): the agent speaks on its own
        audio track from now on, instead of streaming to nobody and never hearing back."""
        assert self._session is not None and self._agent_room is not None
        logger.warning(
            "the avatar left; the agent publishes its own voice", extra={"room": self._room_name}
        )
        # livekit-agents' own RoomIO audio output (private in 1.8.9; the plugin e2e scenario,
        # tests/e2e/test_plugin.py, fails if it moves)
        from livekit.agents.voice.room_io._output import _ParticipantAudioOutput

        output = _ParticipantAudioOutput(
            self._agent_room,
            sample_rate=FALLBACK_SAMPLE_RATE,
            num_channels=1,
            track_publish_options=rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        await output.start()
        self._own_voice = output
        self._session.output.replace_audio_tail(output)

    def dispatch_metadata(self, *, sender_identity: str) -> str:
        """The worker's dispatch metadata (mode plugin; agent/README.md, "Contracts"). The job
        joins the room as the avatar participant named here; it carries no credentials."""
        options: dict[str, Any] = {
            "sender_identity": sender_identity,
            "avatar_identity": self._avatar_identity,
            "avatar_name": self._avatar_name,
        }
        if self._empty_timeout_s is not None:
            options["empty_timeout_seconds"] = self._empty_timeout_s
        meta = {
            "session_id": self._session_id,
            "mode": "plugin",
            "face": self._face,
            "max_duration_seconds": self._max_duration_s,
            "options": options,
        }
        return json.dumps(meta)

    @property
    def _room_name(self) -> str:
        return self._agent_room.name if self._agent_room is not None else ""

    async def aclose(self) -> None:
        if self._agent_room is not None:
            self._agent_room.off("participant_disconnected", self._on_participant_disconnected)
        if self._fallback_task is not None:
            await utils.aio.cancel_and_wait(self._fallback_task)
        if self._own_voice is not None:
            await self._own_voice.aclose()
        await super().aclose()
        if self._dispatcher is not None:
            await self._dispatcher.aclose()


def _local_identity(room: rtc.Room) -> str:
    job = get_job_context(required=False)
    identity = job.local_participant_identity if job is not None else ""
    identity = identity or room.local_participant.identity
    if not identity:
        raise AtlasAvatarError("connect the agent's room before starting the avatar")
    return identity
