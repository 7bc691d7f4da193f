"""The LiveKit Agents worker: agent_name `atlas-avatar`, explicit dispatch only.

- prewarm (once per job process): loads the face landmarker, the render backend and Silero VAD;
- load: the share of ATLAS_AGENT_MAX_STREAMS taken, scaled to LiveKit's target load, so the
  server offers jobs until every stream is taken and routes them elsewhere after;
- entrypoint: starts the job's task and returns. The task connects, validates the dispatch
  metadata, fetches and prepares the face, builds the mode's audio source (passthrough,
  conversation or the avatar data-stream protocol), publishes through AvatarRunner, and runs
  LiveSession until the session ends; then it shuts the job down. A job that fails before the
  session runs tells the API and the client (agent/status.py) and the room is deleted;
- on_session_end (a shutdown: the worker drains or stops) ends a running session through
  LiveSession, which deletes the room and logs the summary. livekit-agents runs it after the
  entrypoint has returned and before it disconnects the room; a shutdown callback would run
  only after the room is gone, and an entrypoint still running would be cancelled first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess
from livekit.agents.voice.avatar import AudioReceiver, AvatarRunner

from agent.admission import Admission, CpuGauge, available_cores
from agent.config import AgentSettings, get_settings
from agent.conversation import (
    Conversation,
    MissingProviderKeysError,
    default_providers,
    instructions_for,
    register_provider_plugins,
)
from agent.faces import (
    FaceFetchError,
    FaceSource,
    FileFaceSource,
    HttpFaceSource,
    RoutingFaceSource,
)
from agent.metadata import DispatchMetadata, MetadataError, parse_dispatch_metadata
from agent.metrics import worker_metrics
from agent.models import ProcessModels, process_models
from agent.ownership import room_admin_for
from agent.passthrough import ParticipantAudioReceiver
from agent.playback import PlaybackGuard
from agent.runner import (
    create_avatar_runner,
    create_guarded_runner,
    create_protocol_runner,
    video_publishing,
)
from agent.session import LiveSession
from agent.status import SessionReporter
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset
from renderer.errors import RendererInputError

logger = logging.getLogger("agent")


def prewarm(proc: JobProcess) -> None:
    """livekit-agents' set-up function, once per job process or thread: the process's shared
    models (loaded by the first call only; agent/models.py)."""
    settings = get_settings()
    models = process_models(settings.renderer_options())
    models.warm()
    proc.userdata["models"] = models


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
    threads = settings.agent_job_executor == "thread"
    if threads:  # sessions start on job threads, where plugins cannot register
        register_provider_plugins()
    admission = Admission(
        max_streams=settings.agent_max_streams,
        threshold=settings.agent_load_threshold,
        cpu=CpuGauge(cores=settings.agent_cpu_cores or available_cores(), children=not threads),
        cpu_target=settings.agent_cpu_target,
    )
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD if threads else JobExecutorType.PROCESS,
        setup_fnc=prewarm,
        load_fnc=lambda server: reported(admission.load(server)),
        load_threshold=settings.agent_load_threshold,
        # an idle job thread is a thread and a socket pair (the models are the process's):
        # keep one ready per stream, so a burst of creates starts at once; a process is
        # ~550 MB, so at most two of those
        num_idle_processes=settings.agent_max_streams
        if threads
        else min(settings.agent_max_streams, 2),
        initialize_process_timeout=settings.agent_prewarm_timeout_s,
        host=settings.agent_http_host,
        port=settings.agent_http_port,
        prometheus_port=settings.agent_metrics_port,
        ws_url=settings.livekit_url,
        api_key=settings.livekit_api_key,
        api_secret=(
            settings.livekit_api_secret.get_secret_value() if settings.livekit_api_secret else None
        ),
    )
    server.rtc_session(
        entrypoint,
        agent_name=settings.agent_name,
        on_session_end=on_session_end,
        on_request=admission.bind(server),
    )
    return server


def reported(load: float) -> float:
    worker_metrics().load.set(load)
    return load


# The running job of this process (one per process), for on_session_end.
_JOBS: dict[str, _Job] = {}


async def entrypoint(ctx: JobContext) -> None:
    job = _Job(ctx=ctx, settings=get_settings())
    _JOBS[ctx.job.id] = job
    job.start()
    # return once connected (or failed): livekit-agents expects the entrypoint to connect
    await job.connected.wait()


async def on_session_end(ctx: JobContext) -> None:
    job = _JOBS.pop(ctx.job.id, None)
    if job is not None:
        await job.stop()


class JobFailed(Exception):
    """The session cannot start; `code` is what the API and the client are told."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Job:
    """Everything one session owns, closed in reverse order."""

    def __init__(self, *, ctx: JobContext, settings: AgentSettings):
        self.ctx, self.settings = ctx, settings
        self.meta: DispatchMetadata | None = None
        self.faces = build_face_source(settings)
        self.admin = room_admin_for(ctx, settings)  # deletes only rooms our API created
        self._closers: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._session: LiveSession | None = None
        self._reporter: SessionReporter | None = None
        self.connected = asyncio.Event()  # set once connected, or once the job is over

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name="atlas-session")

    async def stop(self) -> None:
        """End the session now (a shutdown) and wait until it has ended and closed."""
        if self._task is None:
            return
        if self._session is not None:
            self._session.request_end("shutdown")
        else:
            self._task.cancel()  # still starting: nothing live to end
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._task)

    async def _main(self) -> None:
        extra = {"job_id": self.ctx.job.id}
        try:
            await self._run()
        except JobFailed as exc:
            logger.error("session failed", extra={**extra, "code": exc.code, "error": str(exc)})
            await self._fail(exc.code, str(exc))
        except asyncio.CancelledError:
            # the worker process went away (livekit-agents cancels the job): a live session
            # still ends properly; one still starting is a failure
            if self._session is not None:
                await self._session.end_now("shutdown")
            else:
                logger.info("session start cancelled by a shutdown", extra=extra)
                await self._fail(
                    "shutdown", "The avatar worker shut down before the session started."
                )
        except Exception:
            logger.exception("session failed", extra=extra)
            await self._fail("internal_error", "The avatar worker failed.")
        finally:
            self.connected.set()
            _JOBS.pop(self.ctx.job.id, None)
            await self.aclose()
            self.ctx.shutdown(reason="session ended")

    async def _fail(self, code: str, message: str) -> None:
        """Tell the API (attributes) and the client (a data packet), then the room goes."""
        if self._reporter is None:  # never connected: nobody to tell, the room still goes
            if self.meta is None or self.meta.mode != "plugin":
                with contextlib.suppress(Exception):
                    await self.admin.delete_room(self.ctx.job.room.name)
            return
        await self._reporter.failed(code, message)
        if self.meta is None or self.meta.mode != "plugin":
            await self._reporter.hand_off_room()

    async def _run(self) -> None:
        meta = self._parse()
        settings = self.settings
        room = await self._connect()
        self.connected.set()
        if meta.mode != "plugin":
            self._reporter = SessionReporter(
                room=room,
                admin=self.admin,
                client_identity=meta.client_identity,
                handoff_s=settings.agent_room_handoff_s,
            )
        self._check_keys(meta)
        options = settings.renderer_options()
        try:
            image = await self.faces.fetch(meta.face)
            face = await asyncio.to_thread(FaceAsset.prepare, image, options=options)
        except FaceFetchError as exc:
            raise JobFailed("face_fetch_failed", "The face image could not be fetched.") from exc
        except RendererInputError as exc:
            raise JobFailed("face_unusable", f"The face image cannot be used: {exc}") from exc
        # built off the loop: the backend's per-face work (~50-200 ms) would block it
        generator = await asyncio.to_thread(
            lambda: LipSyncVideoGenerator(
                face=face,
                options=options,
                backend=self._models().backend,  # the process's: batches across its sessions
                metrics=worker_metrics(),
            )
        )
        self._closers.append(generator.aclose)

        plugin = meta.mode == "plugin"
        guard: PlaybackGuard | None = None
        conversation: Conversation | None = None
        runner: AvatarRunner
        if plugin:
            # the avatar protocol: any agent's audio, every clear answered, one
            # playback_started / playback_finished per segment
            runner, guard = create_protocol_runner(
                room,
                generator=generator,
                sender_identity=meta.options.sender_identity,
                sync_frames=settings.agent_sync_frames,
                publishing=video_publishing(settings),
            )
        else:
            receiver, conversation = await self._audio_source(room, generator)
            if conversation is None:
                runner = create_avatar_runner(
                    room,
                    audio_recv=receiver,
                    generator=generator,
                    sync_frames=settings.agent_sync_frames,
                    publishing=video_publishing(settings),
                )
            else:  # the session hears playback from the avatar's output (PlaybackGuard)
                runner, guard = create_guarded_runner(
                    room,
                    receiver=receiver,
                    generator=generator,
                    sync_frames=settings.agent_sync_frames,
                    publishing=video_publishing(settings),
                )
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
        if self._reporter is not None:
            await self._reporter.live()
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
            reporter=self._reporter,
        )
        self._session = session
        metrics = worker_metrics()
        metrics.sessions_live.inc()
        try:
            summary = await session.run()
            metrics.sessions_ended.labels(reason=summary.reason).inc()
        finally:
            metrics.sessions_live.dec()

    def _models(self) -> ProcessModels:
        models = self.ctx.proc.userdata.get("models")
        if isinstance(models, ProcessModels):
            return models
        return process_models(self.settings.renderer_options())

    def _parse(self) -> DispatchMetadata:
        try:
            self.meta = parse_dispatch_metadata(self.ctx.job.metadata)
        except MetadataError as exc:
            raise JobFailed("invalid_job", "The session's dispatch metadata is invalid.") from exc
        logger.info(
            "session starting",
            extra={"session_id": self.meta.session_id, "mode": self.meta.mode},
        )
        return self.meta

    def _check_keys(self, meta: DispatchMetadata) -> None:
        if meta.mode != "conversation":
            return
        from agent.conversation import check_conversation_keys

        try:
            check_conversation_keys(self.settings)
        except MissingProviderKeysError as exc:
            raise JobFailed("missing_provider_keys", str(exc)) from exc

    async def _connect(self) -> rtc.Room:
        assert self.meta is not None
        if self.meta.mode != "plugin":
            await self.ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
            return self.ctx.room
        # the job's own connection is the avatar: the request function accepted it with the
        # avatar's identity and lk.publish_on_behalf (agent/admission.py), so the room holds
        # one participant of ours. It hears the agent through byte streams: no subscriptions.
        await self.ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
        identity = self.ctx.room.local_participant.identity
        if identity != self.meta.options.avatar_identity:  # the agent would stream to nobody
            raise JobFailed("invalid_job", "The job did not join as the avatar participant.")
        return self.ctx.room

    async def _audio_source(
        self, room: rtc.Room, generator: LipSyncVideoGenerator
    ) -> tuple[AudioReceiver, Conversation | None]:
        meta, settings = self.meta, self.settings
        assert meta is not None
        if meta.mode == "passthrough":
            receiver = ParticipantAudioReceiver(
                room,
                participant_identity=meta.client_identity,
                sample_rate=generator.options.sample_rate,
            )
            self._closers.append(receiver.aclose)
            return receiver, None
        providers = default_providers(settings, meta.options, vad_model=self._models().vad())
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
        if self._reporter is not None:
            self._reporter.aclose()
        await self.faces.aclose()
        await self.admin.aclose()
