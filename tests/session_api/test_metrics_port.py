"""/metrics is off the public port: served only on ATLAS_METRICS_PORT, a listener of its own."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from session_api.config import Settings

from .api_support import auth


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


async def test_metrics_are_served_on_their_own_port_only(
    make_settings: Callable[..., Settings], open_api: Callable[..., Any]
) -> None:
    port = free_port()
    async with open_api(make_settings(metrics_port=port)) as api:
        key = await api.new_key()
        await api.client.get("/v1/me", headers=auth(key.key))
        public = await api.client.get("/metrics")
        assert public.status_code == 404 and public.json()["error"] == "not_found"
        # scraped from a thread: the refresh runs on this (free) event loop
        status, text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'atlas_jobs{status="pending"} 0.0' in text
        assert "atlas_webhook_deliveries_pending 0.0" in text
        assert 'atlas_http_request_duration_seconds_count{method="GET",route="/v1/me"' in text
        other, _ = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/v1/me")
        assert other == 404
    # the listener closes with the app
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=30).close()


async def test_without_a_metrics_port_no_metrics_are_served(
    make_settings: Callable[..., Settings], open_api: Callable[..., Any]
) -> None:
    async with open_api(make_settings()) as api:
        assert (await api.client.get("/metrics")).status_code == 404
