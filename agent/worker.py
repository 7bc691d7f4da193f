"""The LiveKit Agents worker: agent_name `atlas-avatar`, explicit dispatch only.

- prewarm (once per job process): loads the face landmarker, the render backend and Silero VAD;
- load: active streams / ATLAS_AGENT_MAX_STREAMS, so LiveKit routes jobs elsewhere when full;
- entrypoint: validates the dispatch metadata, fetches and prepares the face, builds the mode's
  audio source (passthrough, conversation or the avatar data-stream protocol), publishes through
  AvatarRunner, and runs LiveSession until the session ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobProcess
from livekit.agents.voice.avatar import AudioReceiver, AvatarRunner

from agent.config import AGENT_NAME, AgentSettings, get_settings
from agent.conversation import (
    Conversation,
    MissingProviderKeysError,
    default_providers,
    instructions_for,
)
from agent.faces import (
    FaceFetchError,
    FaceSource,
    FileFaceSource,
    HttpFaceSource,
    RoutingFaceSource,
)
from agent.livekit_api import LiveKitRoomAdmin
from agent.metadata import DispatchMetadata, MetadataError, parse_dispatch_metadata
from agent.passthrough import ParticipantAudioReceiver
from agent.playback import PlaybackGuard
from agent.runner import create_avatar_runner, create_guarded_runner, create_protocol_runner
from agent.session import LiveSession
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset
from renderer.backends import Backend, create_backend
from renderer.errors import RendererInputError
from renderer.landmarks import shared_landmarker

logger = logging.getLogger("agent")


def prewarm(proc: JobProcess) -> None:
    """Load models once per process, before any job arrives."""
    settings = get_settings()
    shared_landmarker()
    proc.userdata["backend"] = create_backend(settings.renderer_options())
    try:
        from livekit.plugins import silero

        proc.userdata["vad"] = silero.VAD.load()
    except Exception:
        logger.warning("silero VAD could not be loaded; conversation turns use the STT")


def load(server: AgentServer) -> float:
    """Active streams against capacity: 1.0 means full (the load threshold)."""
    return len(server.active_jobs) / get_settings().agent_max_streams


def build_face_source(settings: AgentSettings) -> FaceSource:
    urls = HttpFaceSource(
        max_bytes=settings.face_max_bytes,
        timeout_s=settings.face_fetch_timeout_s,
        allow_http=settings.face_allow_http,
    )
    storage: FaceSource | None = None
    try:
        storage = FileFaceSource(root=settings.storage_root(), max_bytes=settings.face_max_bytes)
    except ValueError:
        logger.warning("ATLAS_STORAGE_URL is not file://; storage_key faces are unavailable")
    return RoutingFaceSource(urls=urls, storage=storage)


def create_server(settings: AgentSettings | None = None) -> AgentServer:
    settings = settings or get_settings()
    server = AgentServer(
        setup_fnc=prewarm,
        load_fnc=load,
        load_threshold=1.0,
        num_idle_processes=min(settings.agent_max_streams, 2),
        port=settings.agent_http_port,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=(
            settings.livekit_api_secret.get_secret_value() if settings.livekit_api_secret else None
        ),
    )
    server.rtc_session(entrypoint, agent_name=AGENT_NAME)
    return server


async def entrypoint(ctx: JobContext) -> None:
    settings = get_settings()
    try:
        meta = parse_dispatch_metadata(ctx.job.metadata)
        if meta.mode == "conversation":
            from agent.conversation import check_conversation_keys

            check_conversation_keys(settings)
    except (MetadataError, MissingProviderKeysError) as exc:
        logger.error("job refused", extra={"job_id": ctx.job.id, "error": str(exc)})
        ctx.shutdown(reason="invalid job")
        return
    extra = {"session_id": meta.session_id, "mode": meta.mode}
    logger.info("session starting", extra=extra)
    job = _Job(ctx=ctx, meta=meta, settings=settings)
    try:
        await job.run()
    except (FaceFetchError, RendererInputError) as exc:
        logger.error("session failed: face", extra={**extra, "error": str(exc)})
    finally:
        await job.aclose()
        ctx.shutdown(reason="session ended")


class _Job:
    """Everything one session owns, closed in reverse order."""

    def __init__(self, *, ctx: JobContext, meta: DispatchMetadata, settings: AgentSettings):
        self.ctx, self.meta, self.settings = ctx, meta, settings
        self.faces = build_face_source(settings)
        secret = settings.livekit_api_secret
        self.admin = LiveKitRoomAdmin(
            url=settings.livekit_url,
            api_key=settings.livekit_api_key,
            api_secret=secret.get_secret_value() if secret else None,
        )
        self._closers: list[Any] = []
        self._own_room: rtc.Room | None = None

    async def run(self) -> None:
        meta, settings = self.meta, self.settings
        options = settings.renderer_options()
        image = await self.faces.fetch(meta.face)
        face = await asyncio.to_thread(FaceAsset.prepare, image, options=options)
        backend: Backend | None = self.ctx.proc.userdata.get("backend")
        generator = LipSyncVideoGenerator(face=face, options=options, backend=backend)
        self._closers.append(generator.aclose)

        room = await self._connect()
        plugin = meta.mode == "plugin"
        guard: PlaybackGuard | None = None
        conversation: Conversation | None = None
        runner: AvatarRunner
        if plugin:
            # the avatar protocol: any agent's audio, every clear answered, one
            # playback_started / playback_finished per segment
            runner, guard = create_protocol_runner(
                room, generator=generator, sender_identity=meta.options.sender_identity
            )
        else:
            receiver, conversation = await self._audio_source(room, generator)
            if conversation is None:
                runner = create_avatar_runner(room, audio_recv=receiver, generator=generator)
            else:  # the session hears playback from the avatar's output (PlaybackGuard)
                runner, guard = create_guarded_runner(room, receiver=receiver, generator=generator)
        empty_timeout_s = meta.options.empty_timeout_seconds or settings.agent_empty_timeout_s
        try:
            # publishes with the first (idle) frame, before any words; in plugin mode it first
            # waits for the sending agent, which must come within the empty timeout
            await asyncio.wait_for(runner.start(), timeout=empty_timeout_s if plugin else None)
        except TimeoutError:
            logger.warning(
                "session ended: the sending agent never joined",
                extra={"session_id": meta.session_id},
            )
            return
        self._closers.append(runner.aclose)
        if conversation is not None:
            conversation.greet_when_heard(room)  # the voice track is published now

        async def stop_pipeline() -> None:
            # say nothing more: drop queued speech; the frame in hand finishes
            if conversation is not None:
                conversation.session.interrupt()
            if guard is not None:
                await guard.interrupt()  # the sending agent hears playback_finished
            else:
                await generator.clear_buffer()

        session = LiveSession(
            room=room,
            session_id=meta.session_id,
            # plugin mode: the room belongs to the sending agent; end when it is gone
            client_identity=meta.options.sender_identity if plugin else meta.client_identity,
            generator=generator,
            face_source=self.faces,
            room_admin=self.admin,
            face_version=meta.face.version,
            max_duration_s=min(meta.max_duration_seconds, settings.agent_max_duration_s),
            empty_timeout_s=empty_timeout_s,
            on_end=stop_pipeline,
            delete_room=not plugin,  # in plugin mode the room belongs to the other agent
        )
        self.ctx.add_shutdown_callback(self._on_job_shutdown(session))
        await session.run()

    def _on_job_shutdown(self, session: LiveSession) -> Any:
        async def callback(*_: Any) -> None:
            session.request_end("shutdown")

        return callback

    async def _connect(self) -> rtc.Room:
        if self.meta.mode != "plugin":
            await self.ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
            return self.ctx.room
        token = self.meta.options.avatar_token
        if not token or not self.settings.livekit_url:
            raise MetadataError("plugin mode needs options.avatar_token and LIVEKIT_URL")
        # the job's own connection (livekit-agents warns, and may not finalise the job, without
        # it); it subscribes to nothing: the avatar speaks through the room joined below
        await self.ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
        room = rtc.Room()
        await room.connect(self.settings.livekit_url, token)
        self._own_room = room
        return room

    async def _audio_source(
        self, room: rtc.Room, generator: LipSyncVideoGenerator
    ) -> tuple[AudioReceiver, Conversation | None]:
        meta, settings = self.meta, self.settings
        if meta.mode == "passthrough":
            receiver = ParticipantAudioReceiver(
                room,
                participant_identity=meta.client_identity,
                sample_rate=generator.options.sample_rate,
            )
            self._closers.append(receiver.aclose)
            return receiver, None
        providers = default_providers(
            settings, meta.options, vad_model=self.ctx.proc.userdata.get("vad")
        )
        conversation = Conversation(
            providers=providers,
            instructions=instructions_for(meta.options, settings.default_instructions),
            sample_rate=generator.options.sample_rate,
            greeting=meta.options.greeting,
        )
        self._closers.append(conversation.aclose)
        await conversation.start(room=room, client_identity=meta.client_identity)
        return conversation.audio_output, conversation

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:
                logger.exception("closing a session resource failed")
        self._closers.clear()
        if self._own_room is not None:
            await self._own_room.disconnect()
        await self.faces.aclose()
        await self.admin.aclose()
