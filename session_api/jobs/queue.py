"""The jobs table is the queue: claim, lease, heartbeat, retry, finish.

Claims are fair across API keys: the next job goes to the key with the fewest jobs processing,
then the one served least recently, then the one waiting longest; within a key, jobs run in
order. A key never has more than `per_key_concurrency` jobs processing at once, so one key's
backlog cannot fill every worker. Claims are serialized (BEGIN IMMEDIATE on SQLite, a
transaction advisory lock on PostgreSQL), so those counts are exact under concurrent workers.

A claimed job carries a lease that the worker renews; when a lease runs out (the worker died),
the job goes back to pending until it has used its attempts, and then fails with
generation_failed.

See docs/architecture.md, "Offline jobs: the queue".
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from session_api.clock import Clock, utcnow
from session_api.db.models import Job, KeyUsage, WebhookDelivery
from session_api.db.session import Database
from session_api.errors import MonthlyCapExceeded
from session_api.jobs.fairness import next_key, position_in_order

FAILED_MESSAGE = "Processing failed. Please try again."
# One compiled statement for the hottest read (GET /v1/jobs/{id}); the id is a bound parameter.
_JOB_BY_ID = select(Job.__table__).where(Job.__table__.c.id == bindparam("id"))
_CLAIM_LOCK = 0x61746C61  # "atla": pg_advisory_xact_lock id that serializes claims
GENERATION_FAILED = "generation_failed"


def new_job_id() -> str:
    return secrets.token_hex(8)


def month_of(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    key_id: int
    audio_key: str
    image_key: str
    audio_size: int
    image_size: int
    callback_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimedJob:
    id: str
    key_id: int
    attempt: int
    audio_key: str
    image_key: str


# Builds the webhook body for a finished job (it needs a presigned URL, so it is async upstream).
WebhookBody = str


class JobQueue:
    def __init__(
        self,
        *,
        db: Database,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        clock: Clock = utcnow,
        failed_webhook: Callable[[Job], WebhookBody] | None = None,
        per_key_concurrency: int | None = None,
    ) -> None:
        self.db = db
        self.per_key_concurrency = per_key_concurrency
        self.failed_webhook = failed_webhook
        self.lease = timedelta(seconds=lease_s)
        self.max_attempts = max_attempts
        self.clock = clock

    # --- submit ------------------------------------------------------------------------------
    async def submit(self, job_id: str, new: NewJob, *, monthly_cap: int | None) -> Job:
        """Insert a pending job, counting it against the key's monthly cap atomically."""
        now = self.clock()
        async with self.db.write() as session:
            await self._count_usage(session, new.key_id, now, monthly_cap)
            job = Job(
                id=job_id,
                key_id=new.key_id,
                type="video",
                status="pending",
                created_at=now,
                attempts=0,
                progress=0,
                audio_key=new.audio_key,
                image_key=new.image_key,
                audio_size=new.audio_size,
                image_size=new.image_size,
                callback_url=new.callback_url,
            )
            session.add(job)
        return job

    async def _count_usage(
        self, session: AsyncSession, key_id: int, now: datetime, cap: int | None
    ) -> None:
        month = month_of(now)
        exists = await session.get(KeyUsage, (key_id, month))
        if exists is None:
            session.add(KeyUsage(key_id=key_id, month=month, requests=0))
            await session.flush()
        conditions = [KeyUsage.key_id == key_id, KeyUsage.month == month]
        if cap is not None:
            conditions.append(KeyUsage.requests < cap)
        result = await session.execute(
            update(KeyUsage).where(*conditions).values(requests=KeyUsage.requests + 1)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise MonthlyCapExceeded()

    async def usage(self, key_id: int) -> int:
        async with self.db.session() as session:
            row = await session.get(KeyUsage, (key_id, month_of(self.clock())))
            return row.requests if row else 0

    # --- reads -------------------------------------------------------------------------------
    async def get(self, job_id: str, *, key_id: int) -> Job | None:
        row = await self.db.read(
            lambda conn: conn.execute(_JOB_BY_ID, {"id": job_id}).mappings().first()
        )
        if row is None or row["key_id"] != key_id:
            return None
        return Job(**row)  # detached: the routes only read it

    async def list_for_key(self, *, key_id: int, limit: int, offset: int) -> tuple[list[Job], int]:
        async with self.db.session() as session:
            rows = await session.execute(
                select(Job)
                .where(Job.key_id == key_id)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(limit)
                .offset(offset)
            )
            count = await session.scalar(
                select(func.count()).select_from(Job).where(Job.key_id == key_id)
            )
        return list(rows.scalars()), int(count or 0)

    async def queue_position(self, job: Job) -> int:
        """Pending jobs the fair scheduler will start before this one (0 once not pending)."""
        if job.status != "pending":
            return 0
        async with self.db.session() as session:
            return await position_in_order(session, self.clock(), job.id)

    async def depth(self) -> dict[str, int]:
        async with self.db.session() as session:
            rows = await session.execute(select(Job.status, func.count()).group_by(Job.status))
        counts = {"pending": 0, "processing": 0, "completed": 0, "failed": 0}
        counts.update({status: int(n) for status, n in rows.all()})
        return counts

    # --- worker side -------------------------------------------------------------------------
    async def claim(self, worker_id: str) -> ClaimedJob | None:
        await self.recover_expired()
        now = self.clock()
        async with self.db.write() as session:
            if not self.db.is_sqlite:
                await session.execute(select(func.pg_advisory_xact_lock(_CLAIM_LOCK)))
            key_id = await next_key(session, now, per_key_cap=self.per_key_concurrency)
            if key_id is None:
                return None
            job = (
                await session.execute(
                    select(Job)
                    .where(Job.status == "pending", Job.key_id == key_id)
                    .order_by(Job.created_at, Job.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if job is None:
                return None
            job.status = "processing"
            job.attempts += 1
            job.lease_owner = worker_id
            job.lease_expires_at = now + self.lease
            job.progress = 0
            if job.started_at is None:
                job.started_at = now
            return ClaimedJob(
                id=job.id,
                key_id=job.key_id,
                attempt=job.attempts,
                audio_key=job.audio_key,
                image_key=job.image_key,
            )

    async def heartbeat(self, job_id: str, worker_id: str, *, progress: int) -> bool:
        """Renew the lease; False when this worker no longer owns the job."""
        now = self.clock()
        async with self.db.write() as session:
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == "processing")
                .values(lease_expires_at=now + self.lease, progress=max(0, min(progress, 99)))
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def complete(
        self,
        job_id: str,
        worker_id: str,
        *,
        output_key: str,
        output_size: int,
        duration: float,
        result_ttl_s: int,
        webhook: Callable[[Job], WebhookBody] | None = None,
    ) -> bool:
        now = self.clock()
        async with self.db.write() as session:
            job = await self._owned(session, job_id, worker_id)
            if job is None:
                return False
            job.status = "completed"
            job.completed_at = now
            job.progress = 100
            job.output_key = output_key
            job.output_size = output_size
            job.output_duration = duration
            job.result_expires_at = now + timedelta(seconds=result_ttl_s)
            self._release(job)
            if job.callback_url and webhook is not None:
                session.add(_delivery(job, webhook(job), now))
        return True

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        *,
        retry: bool,
        error: str = FAILED_MESSAGE,
        error_code: str = GENERATION_FAILED,
    ) -> str | None:
        """Retry (back to pending) or fail the job; returns the new status, None if not owned."""
        now = self.clock()
        async with self.db.write() as session:
            job = await self._owned(session, job_id, worker_id)
            if job is None:
                return None
            self._release(job)
            if retry and job.attempts < self.max_attempts:
                job.status = "pending"
                job.progress = 0
                return "pending"
            self._mark_failed(job, now, error, error_code)
            self._announce_failure(session, job, now)
            return "failed"

    async def release(self, job_id: str, worker_id: str) -> bool:
        """Hand a claimed job back untouched (its worker is shutting down): pending again at its
        place in the queue, and the attempt not counted. False if this worker no longer owns it."""
        async with self.db.write() as session:
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == worker_id, Job.status == "processing")
                .values(
                    status="pending",
                    lease_owner=None,
                    lease_expires_at=None,
                    progress=0,
                    attempts=Job.attempts - 1,
                )
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def recover_expired(self) -> list[str]:
        """Jobs whose lease ran out go back to pending, or fail after max attempts."""
        now = self.clock()
        async with self.db.write() as session:
            jobs = (
                await session.execute(
                    select(Job)
                    .where(Job.status == "processing", Job.lease_expires_at < now)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
            touched = []
            for job in jobs:
                self._release(job)
                if job.attempts < self.max_attempts:
                    job.status = "pending"
                    job.progress = 0
                else:
                    self._mark_failed(job, now, FAILED_MESSAGE, GENERATION_FAILED)
                    self._announce_failure(session, job, now)
                touched.append(job.id)
        return touched

    async def expired_results(self, *, limit: int = 100) -> list[tuple[str, str]]:
        """(job_id, output_key) of completed jobs whose result is past its 24 h."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(Job.id, Job.output_key)
                .where(
                    Job.status == "completed",
                    Job.output_key.is_not(None),
                    Job.result_expires_at < self.clock(),
                )
                .limit(limit)
            )
        return [(job_id, key) for job_id, key in rows.all() if key is not None]

    async def forget_output(self, job_id: str) -> None:
        async with self.db.write() as session:
            await session.execute(update(Job).where(Job.id == job_id).values(output_key=None))

    # --- helpers -----------------------------------------------------------------------------
    @staticmethod
    async def _owned(session: AsyncSession, job_id: str, worker_id: str) -> Job | None:
        job = (
            await session.execute(select(Job).where(Job.id == job_id).with_for_update())
        ).scalar_one_or_none()
        if job is None or job.status != "processing" or job.lease_owner != worker_id:
            return None
        return job

    def _announce_failure(self, session: AsyncSession, job: Job, now: datetime) -> None:
        if job.callback_url and self.failed_webhook is not None:
            session.add(_delivery(job, self.failed_webhook(job), now))

    @staticmethod
    def _release(job: Job) -> None:
        job.lease_owner = None
        job.lease_expires_at = None

    @staticmethod
    def _mark_failed(job: Job, now: datetime, error: str, error_code: str) -> None:
        job.status = "failed"
        job.completed_at = now
        job.error = error
        job.error_code = error_code


def _delivery(job: Job, body: str, now: datetime) -> WebhookDelivery:
    assert job.callback_url is not None
    return WebhookDelivery(
        job_id=job.id,
        key_id=job.key_id,
        url=job.callback_url,
        body=body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
