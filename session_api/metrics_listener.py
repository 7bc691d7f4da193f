"""/metrics on its own listener (ATLAS_METRICS_PORT), never on the public API port.

The metrics show latency by route, queue depth and the webhook backlog: for the scraper, not
for the internet. This is a small WSGI server (the standard library's) on a thread; at each
scrape it refreshes the queue and webhook gauges on the app's event loop, then renders the
app's registry.
"""

from __future__ import annotations

import asyncio
import logging
import socketserver
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST

from session_api.metrics import Metrics

logger = logging.getLogger("session_api")

Refresh = Callable[[], Coroutine[Any, Any, None]]
REFRESH_TIMEOUT_S = 5.0
METRICS_PATH = "/metrics"


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        return None


class MetricsListener:
    """Serves GET /metrics on host:port until close()."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @classmethod
    def start(cls, metrics: Metrics, refresh: Refresh, *, host: str, port: int) -> MetricsListener:
        loop = asyncio.get_running_loop()
        app = _metrics_app(metrics, refresh, loop)
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        logger.info("metrics listening", extra={"host": host, "port": server.server_address[1]})
        return cls(server, thread)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
        await asyncio.to_thread(self._thread.join)


def _metrics_app(
    metrics: Metrics, refresh: Refresh, loop: asyncio.AbstractEventLoop
) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        future = asyncio.run_coroutine_threadsafe(refresh(), loop)
        try:
            future.result(REFRESH_TIMEOUT_S)
        except Exception:  # a scrape still answers, with the gauges as last read
            future.cancel()
            logger.warning("metrics refresh failed")
        body = metrics.render()
        start_response(
            "200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app
