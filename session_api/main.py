"""create_app(): the FastAPI app; its lifespan owns the database, storage, queue and worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from session_api.clock import Clock, utcnow
from session_api.config import Settings, get_settings
from session_api.datadir import open_data_dir
from session_api.demo import install_demo
from session_api.docs_page import install_docs
from session_api.errors import install_error_handlers
from session_api.head_requests import HeadAsGetMiddleware
from session_api.jobs.worker import RenderFn
from session_api.metrics import Metrics, MetricsMiddleware
from session_api.metrics_listener import MetricsListener
from session_api.openapi import install_openapi
from session_api.routes import files, jobs, meta, realtime
from session_api.security_headers import SecurityHeadersMiddleware
from session_api.services import Services, open_services
from session_api.webhooks import pending_count


def create_app(
    settings: Settings | None = None,
    *,
    worker: bool | None = None,
    migrate: bool = True,
    background: bool = True,
    render: RenderFn | None = None,
    clock: Clock = utcnow,
) -> FastAPI:
    """The API. `worker` (default: settings.embedded_worker) runs the job worker in-process.

    `clock` drives realtime session times and the reaper (tests inject one).
    """
    settings = settings or get_settings()
    run_worker = settings.embedded_worker if worker is None else worker
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The data dir's permissions, its signing secret and the temp-dir sweep come first.
        ready, scratch = open_data_dir(settings)
        try:
            services = await open_services(
                ready,
                migrate=migrate,
                worker=run_worker,
                background=background,
                render=render,
                metrics=metrics,
                clock=clock,
            )
            app.state.services = services
            try:
                async with _metrics_listener(services):
                    yield
            finally:
                await services.aclose()
        finally:
            scratch.close()

    app = FastAPI(
        title="Atlas API (self-hosted)",
        version="8.0",
        lifespan=lifespan,
        docs_url=None,  # session_api.docs_page: Swagger UI from the installed package, no CDN
        redoc_url=None,
    )
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    app.include_router(meta.router)
    app.include_router(jobs.router)
    app.include_router(files.router)
    app.include_router(realtime.router)
    install_demo(app)  # /demo, and its session broker with ATLAS_DEMO=1
    return app


@asynccontextmanager
async def _metrics_listener(services: Services) -> AsyncIterator[None]:
    """/metrics on ATLAS_METRICS_PORT while the app runs (none when it is unset)."""
    port = services.settings.metrics_port
    if port is None:
        yield
        return

    async def refresh() -> None:
        depth = await services.queue.depth()
        for name, count in depth.items():
            services.metrics.queue_depth.labels(status=name).set(count)
        services.metrics.webhooks_pending.set(await pending_count(services.db))

    listener = MetricsListener.start(
        services.metrics, refresh, host=services.settings.metrics_host, port=port
    )
    try:
        yield
    finally:
        await listener.aclose()
