"""Prometheus metrics on a registry owned by the app (nothing global, nothing at import)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_latency = Histogram(
            "atlas_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "atlas_jobs",
            "Jobs by status (pending is the queue depth)",
            ["status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "atlas_job_duration_seconds",
            "Time a worker spent on one job attempt, by outcome",
            ["outcome"],
            buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.webhooks_pending = Gauge(
            "atlas_webhook_deliveries_pending",
            "Webhook deliveries not yet done",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request under its route template."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(
                method=scope["method"], route=template, status=str(status)
            ).observe(time.perf_counter() - started)
