"""Durable, signed webhook deliveries with SSRF protection.

A delivery is a row written in the same transaction that finishes the job, so it survives a
restart. Each attempt and each redirect goes through session_api.ssrf.send_pinned (public
addresses only, checked after DNS, the connection pinned to the checked address). Attempts time
out after 10 s in all (redirects included) and are retried after 5, 30 and 120 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urljoin

import httpx
from sqlalchemy import func, or_, select

from session_api.clock import Clock, utcnow
from session_api.db.models import ApiKey, Job, WebhookDelivery
from session_api.db.session import Database
from session_api.fetch import FetchTimedOut, deadline
from session_api.schemas import iso_offset
from session_api.ssrf import (
    MAX_REDIRECTS,
    Resolver,
    UrlRefused,
    parse_networks,
    send_pinned,
    system_resolver,
)

logger = logging.getLogger("session_api")


def sign(secret: str, timestamp: int, body: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def completed_body(job: Job, *, url: str, expires_in: int, public_url: str) -> str:
    payload = {
        "event": "job.completed",
        "job_id": job.id,
        "type": job.type,
        "status": "completed",
        "url": url,
        "expires_in": expires_in,
        "result_url": f"{public_url.rstrip('/')}/v1/jobs/{job.id}/result",
        "created_at": iso_offset(job.created_at),
        "completed_at": iso_offset(job.completed_at),
    }
    return json.dumps(payload, separators=(",", ":"))


def failed_body(job: Job) -> str:
    payload = {
        "event": "job.failed",
        "job_id": job.id,
        "type": job.type,
        "status": "failed",
        "error_code": job.error_code,
        "created_at": iso_offset(job.created_at),
        "completed_at": iso_offset(job.completed_at),
    }
    return json.dumps(payload, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    delivered: bool
    permanent: bool  # no point retrying (refused destination)
    detail: str


class WebhookSender:
    def __init__(
        self,
        *,
        db: Database,
        timeout_s: float = 10.0,
        retry_delays_s: Sequence[float] = (5.0, 30.0, 120.0),
        allow_networks: Sequence[str] = (),
        ca_file: str | None = None,
        resolver: Resolver = system_resolver,
        clock: Clock = utcnow,
        poll_interval_s: float = 1.0,
        lease_s: float = 60.0,
    ) -> None:
        self.db = db
        self.timeout_s = timeout_s
        self.retry_delays = tuple(retry_delays_s)
        self.allow = parse_networks(allow_networks)
        self.resolver = resolver
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.lease = timedelta(seconds=lease_s)
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            trust_env=False,
        )
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Deliver due webhooks until aclose()."""
        while not self._stop.is_set():
            try:
                await self.deliver_due()
            except Exception:
                logger.exception("webhook loop error")
            try:
                await asyncio.wait_for(self._stop.wait(), self.poll_interval_s)
            except TimeoutError:
                pass

    async def deliver_due(self, *, limit: int = 20) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        claimed = await self._claim_due(limit)
        for delivery_id, url, body, secret in claimed:
            outcome = await self.attempt(url, body, secret)
            await self._record(delivery_id, outcome)
        return len(claimed)

    async def _claim_due(self, limit: int) -> list[tuple[int, str, str, str]]:
        now = self.clock()
        async with self.db.write() as session:
            rows = (
                await session.execute(
                    select(WebhookDelivery, ApiKey.webhook_secret)
                    .join(ApiKey, ApiKey.id == WebhookDelivery.key_id)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        or_(
                            WebhookDelivery.lease_expires_at.is_(None),
                            WebhookDelivery.lease_expires_at < now,
                        ),
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )
            ).all()
            claimed = []
            for delivery, secret in rows:
                delivery.lease_expires_at = now + self.lease
                claimed.append((delivery.id, delivery.url, delivery.body, secret))
        return claimed

    async def _record(self, delivery_id: int, outcome: AttemptOutcome) -> None:
        now = self.clock()
        async with self.db.write() as session:
            delivery = await session.get(WebhookDelivery, delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            delivery.lease_expires_at = None
            delivery.last_error = None if outcome.delivered else outcome.detail[:200]
            if outcome.delivered:
                delivery.status = "delivered"
                delivery.delivered_at = now
            elif outcome.permanent or delivery.attempts > len(self.retry_delays):
                delivery.status = "failed"
            else:
                delay = self.retry_delays[delivery.attempts - 1]
                delivery.next_attempt_at = now + timedelta(seconds=delay)
        logger.info(
            "webhook attempt",
            extra={"delivery_id": delivery_id, "delivered": outcome.delivered},
        )

    async def attempt(self, url: str, body: str, secret: str) -> AttemptOutcome:
        """One delivery attempt, redirects included, within `timeout_s` in all."""
        try:
            async with deadline(self.timeout_s):
                return await self._attempt(url, body, secret)
        except FetchTimedOut:
            return AttemptOutcome(False, False, "timed out")

    async def _attempt(self, url: str, body: str, secret: str) -> AttemptOutcome:
        timestamp = int(self.clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "atlas-webhooks/1",
            "X-Atlas-Timestamp": str(timestamp),
            "X-Atlas-Signature": sign(secret, timestamp, body),
        }
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await self._post_checked(url, body, headers)
            except UrlRefused as exc:
                return AttemptOutcome(False, True, str(exc))
            except (httpx.HTTPError, OSError) as exc:
                return AttemptOutcome(False, False, type(exc).__name__)
            if 200 <= response.status_code < 300:
                return AttemptOutcome(True, False, str(response.status_code))
            location = response.headers.get("location")
            if response.is_redirect and location:
                url = urljoin(url, location)
                continue
            return AttemptOutcome(False, False, f"HTTP {response.status_code}")
        return AttemptOutcome(False, False, "too many redirects")

    async def _post_checked(self, url: str, body: str, headers: dict[str, str]) -> httpx.Response:
        return await send_pinned(
            self._client,
            "POST",
            url,
            allow=self.allow,
            resolver=self.resolver,
            headers=headers,
            content=body.encode(),
        )

    async def aclose(self) -> None:
        self._stop.set()
        await self._client.aclose()


async def pending_count(db: Database) -> int:
    async with db.session() as session:
        n = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == "pending")
        )
    return int(n or 0)
