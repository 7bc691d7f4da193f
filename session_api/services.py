"""Everything the app holds for its lifetime, built in the lifespan and closed with aclose()."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from renderer.options import RendererOptions
from session_api.auth import KeyCache
from session_api.clock import Clock, utcnow
from session_api.config import Settings
from session_api.db.migrate import upgrade
from session_api.db.session import Database
from session_api.jobs.queue import JobQueue
from session_api.jobs.worker import JobWorker, RenderFn, ResultCleaner
from session_api.metrics import Metrics
from session_api.ratelimit import RateLimiter

if TYPE_CHECKING:
    from session_api.realtime import RealtimeService
    from session_api.reaper import Reaper
from session_api.storage import Storage, UrlSigner, create_storage
from session_api.webhooks import WebhookSender, failed_body

logger = logging.getLogger("session_api")


class TaskOwner:
    """Owns background tasks: each is named, kept, and cancelled and awaited on aclose()."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            # With its traceback and name: nothing else ever awaits these tasks.
            logger.error("background task died", exc_info=exc, extra={"task": task.get_name()})

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def renderer_options() -> RendererOptions:
    """The renderer's own ATLAS_RENDERER_* settings (shared with the agent)."""
    from renderer.settings import RendererSettings

    return RendererSettings().to_options()


@dataclass(kw_only=True)
class Services:
    settings: Settings
    db: Database
    storage: Storage
    limiter: RateLimiter
    queue: JobQueue
    metrics: Metrics
    signer: UrlSigner
    upload_dir: Path
    options: RendererOptions
    worker: JobWorker | None = None
    sender: WebhookSender | None = None
    cleaner: ResultCleaner | None = None
    # Realtime: None when LiveKit is not configured (the endpoints then answer 503).
    realtime: RealtimeService | None = None
    reaper: Reaper | None = None
    tasks: TaskOwner = field(default_factory=TaskOwner)
    key_cache: KeyCache = field(default_factory=KeyCache)

    async def aclose(self) -> None:
        for closer in (self.worker, self.sender, self.cleaner, self.reaper):
            if closer is not None:
                await closer.aclose()
        await self.tasks.aclose()
        if self.realtime is not None:
            await self.realtime.aclose()
        await self.limiter.aclose()
        await self.storage.aclose()
        await self.db.aclose()


def build_worker(services: Services, *, render: RenderFn | None = None) -> JobWorker:
    s = services.settings
    return JobWorker(
        queue=services.queue,
        storage=services.storage,
        public_url=s.public_url,
        concurrency=s.worker_concurrency,
        timeout_s=s.job_timeout_s,
        heartbeat_s=s.heartbeat_s,
        poll_interval_s=s.poll_interval_s,
        result_ttl_s=s.result_ttl_s,
        options=services.options,
        render=render,
        metrics=services.metrics,
        work_dir=services.upload_dir,
        max_audio_s=s.max_audio_seconds,
    )


async def open_services(
    settings: Settings,
    *,
    migrate: bool = True,
    worker: bool = False,
    background: bool = True,
    render: RenderFn | None = None,
    metrics: Metrics | None = None,
    clock: Clock = utcnow,
) -> Services:
    """Connect everything; with `background`, start the webhook sender and result cleanup."""
    if settings.is_embedded or settings.storage_kind == "file":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(url=settings.resolved_database_url, busy_timeout_s=settings.db_busy_timeout_s)
    try:
        if migrate:
            await upgrade(db)
    except BaseException:
        await db.aclose()
        raise
    upload_dir = settings.data_dir / "tmp"
    with contextlib.suppress(OSError):
        upload_dir.mkdir(parents=True, exist_ok=True)
    services = Services(
        settings=settings,
        db=db,
        storage=create_storage(settings),
        limiter=RateLimiter(redis_url=settings.redis_url),
        queue=JobQueue(
            db=db,
            lease_s=settings.lease_s,
            max_attempts=settings.job_max_attempts,
            failed_webhook=failed_body,
            per_key_concurrency=settings.queue_per_key_concurrency,
        ),
        metrics=metrics or Metrics(),
        signer=UrlSigner(settings.secret_key.get_secret_value().encode()),
        upload_dir=upload_dir,
        options=renderer_options(),
    )
    if background:
        services.sender = WebhookSender(
            db=db,
            timeout_s=settings.webhook_timeout_s,
            retry_delays_s=settings.webhook_retry_delays_s,
            allow_networks=settings.webhook_allow_networks,
            ca_file=settings.webhook_ca_file,
        )
        services.cleaner = ResultCleaner(
            queue=services.queue, storage=services.storage, interval_s=settings.cleanup_interval_s
        )
        services.tasks.start(services.sender.run(), name="webhooks")
        services.tasks.start(services.cleaner.run(), name="result-cleanup")
    if worker:
        services.worker = build_worker(services, render=render)
        services.tasks.start(services.worker.run(), name="job-worker")
    if not settings.livekit_missing:
        start_realtime(services, background=background, clock=clock)
    return services


def start_realtime(services: Services, *, background: bool, clock: Clock) -> None:
    """The realtime service on LiveKit and, with `background`, its reaper task."""
    from session_api.faces import FaceChecker, FaceFetcher
    from session_api.livekit import LiveKit
    from session_api.realtime import RealtimeService
    from session_api.reaper import Reaper

    s = services.settings
    assert s.livekit_url and s.livekit_api_key and s.livekit_api_secret
    services.realtime = RealtimeService(
        settings=s,
        db=services.db,
        storage=services.storage,
        livekit=LiveKit(
            url=s.livekit_url,
            api_key=s.livekit_api_key,
            api_secret=s.livekit_api_secret.get_secret_value(),
            timeout_s=s.livekit_timeout_s,
        ),
        checker=FaceChecker(options=services.options, concurrency=s.image_decode_concurrency),
        fetcher=FaceFetcher(
            max_bytes=s.realtime_face_max_bytes,
            timeout_s=s.realtime_face_timeout_s,
            allow_networks=s.realtime_face_allow_networks,
            ca_file=s.realtime_face_ca_file,
        ),
        clock=clock,
    )
    if background:
        services.reaper = Reaper(
            service=services.realtime,
            interval_s=s.realtime_reaper_interval_s,
            start_timeout_s=s.realtime_start_timeout_s,
        )
        services.tasks.start(services.reaper.run(), name="realtime-reaper")
