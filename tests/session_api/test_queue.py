"""The jobs table as a queue, on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from session_api.auth import create_key
from session_api.db.migrate import upgrade
from session_api.db.models import Job, WebhookDelivery
from session_api.db.session import Database
from session_api.jobs.queue import JobQueue, NewJob, new_job_id
from session_api.jobs.worker import JobWorker
from session_api.storage import LocalStorage, UrlSigner
from session_api.webhooks import failed_body
from tests.fake_clock import FakeClock


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(url=db_url)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.aclose()


async def add_jobs(queue: JobQueue, key_id: int, n: int, callback: str | None = None) -> list[str]:
    ids = []
    for _ in range(n):
        job_id = new_job_id()
        new = NewJob(
            key_id=key_id,
            audio_key=f"jobs/{job_id}/audio.wav",
            image_key=f"jobs/{job_id}/image.jpg",
            audio_size=1,
            image_size=1,
            callback_url=callback,
        )
        await queue.submit(job_id, new, monthly_cap=None)
        ids.append(job_id)
    return ids


async def test_four_workers_process_each_of_100_jobs_exactly_once(
    db: Database, db_url: str
) -> None:
    key = await create_key(db, name="q")
    ids = await add_jobs(JobQueue(db=db), key.id, 100)
    processed: Counter[str] = Counter()

    async def worker(name: str) -> None:
        own = Database(url=db_url)  # its own connections, as a separate process would have
        queue = JobQueue(db=own)
        try:
            while (job := await queue.claim(name)) is not None:
                processed[job.id] += 1
                await asyncio.sleep(0)
                done = await queue.complete(
                    job.id, name, output_key="o", output_size=1, duration=1.0, result_ttl_s=60
                )
                assert done
        finally:
            await own.aclose()

    await asyncio.gather(*(worker(f"w{i}") for i in range(4)))
    assert sorted(processed) == sorted(ids)
    assert set(processed.values()) == {1}
    async with db.session() as session:
        jobs = list((await session.execute(select(Job))).scalars())
    assert {j.status for j in jobs} == {"completed"}
    assert {j.attempts for j in jobs} == {1}


async def test_expired_lease_is_retried_then_fails_after_three_attempts(db: Database) -> None:
    clock = FakeClock()
    queue = JobQueue(db=db, lease_s=30, max_attempts=3, clock=clock, failed_webhook=failed_body)
    key = await create_key(db, name="q")
    [job_id] = await add_jobs(queue, key.id, 1, callback="https://example.com/hook")
    for attempt in (1, 2, 3):
        claimed = await queue.claim(f"dead-{attempt}")
        assert claimed is not None and claimed.id == job_id and claimed.attempt == attempt
        clock.advance(10)
        assert await queue.heartbeat(job_id, f"dead-{attempt}", progress=40)
        assert await queue.claim("other") is None  # leased: nobody else gets it
        clock.advance(31)  # the worker died: no more heartbeats
        assert await queue.recover_expired() == [job_id]
    job = await queue.get(job_id, key_id=key.id)
    assert job is not None
    assert job.status == "failed" and job.error_code == "generation_failed"
    assert job.attempts == 3
    assert await queue.claim("late") is None
    # The dead worker cannot finish it any more.
    assert not await queue.complete(
        job_id, "dead-3", output_key="o", output_size=1, duration=1.0, result_ttl_s=60
    )
    async with db.session() as session:
        deliveries = list((await session.execute(select(WebhookDelivery))).scalars())
    assert len(deliveries) == 1 and '"event":"job.failed"' in deliveries[0].body


async def test_lost_lease_cannot_heartbeat_or_complete(db: Database) -> None:
    clock = FakeClock()
    queue = JobQueue(db=db, lease_s=5, clock=clock)
    key = await create_key(db, name="q")
    [job_id] = await add_jobs(queue, key.id, 1)
    assert (await queue.claim("a")) is not None
    clock.advance(6)
    claimed = await queue.claim("b")  # a's lease expired: recovered and claimed again
    assert claimed is not None and claimed.attempt == 2
    assert not await queue.heartbeat(job_id, "a", progress=50)
    assert await queue.fail(job_id, "a", retry=True) is None
    assert await queue.complete(
        job_id, "b", output_key="o", output_size=1, duration=1.0, result_ttl_s=60
    )


async def test_queue_position_counts_pending_jobs_ahead(db: Database) -> None:
    clock = FakeClock()
    queue = JobQueue(db=db, clock=clock)
    key = await create_key(db, name="q")
    ids = []
    for _ in range(3):
        ids += await add_jobs(queue, key.id, 1)
        clock.advance(1)
    positions = []
    for job_id in ids:
        job = await queue.get(job_id, key_id=key.id)
        assert job is not None
        positions.append(await queue.queue_position(job))
    assert positions == [0, 1, 2]
    assert await queue.get(ids[0], key_id=key.id + 1) is None  # another key sees nothing


async def test_worker_retries_storage_errors_then_fails(
    db: Database, tmp_path: Path, make_settings: Callable[..., Any]
) -> None:
    """Inputs that vanished from storage: every attempt errors, the job ends failed."""
    storage = LocalStorage(
        root=tmp_path / "storage", public_url="http://t", signer=UrlSigner(b"k" * 16)
    )
    queue = JobQueue(db=db, max_attempts=3)
    key = await create_key(db, name="q")
    [job_id] = await add_jobs(queue, key.id, 1)
    worker = JobWorker(queue=queue, storage=storage, public_url="http://t")
    try:
        for _ in range(3):
            assert await worker.run_once()
        assert not await worker.run_once()
    finally:
        await worker.aclose()
    job = await queue.get(job_id, key_id=key.id)
    assert job is not None
    assert (job.status, job.error_code, job.attempts) == ("failed", "generation_failed", 3)
    assert job.error == "Processing failed. Please try again."


async def test_worker_timeout_fails_the_job(
    db: Database, tmp_path: Path, speech_bytes: bytes, face_bytes: bytes
) -> None:
    """The real renderer, stopped at its first progress report past a (tiny) deadline."""
    storage = LocalStorage(
        root=tmp_path / "storage", public_url="http://t", signer=UrlSigner(b"k" * 16)
    )
    queue = JobQueue(db=db)
    key = await create_key(db, name="q")
    [job_id] = await add_jobs(queue, key.id, 1)
    for name, data in (("audio.wav", speech_bytes), ("image.jpg", face_bytes)):
        src = tmp_path / name
        src.write_bytes(data)
        await storage.put_file(f"jobs/{job_id}/{name}", src, content_type="x")
    worker = JobWorker(queue=queue, storage=storage, public_url="http://t", timeout_s=0.001)
    try:
        assert await worker.run_once()
    finally:
        await worker.aclose()
    job = await queue.get(job_id, key_id=key.id)
    assert job is not None
    assert (job.status, job.error_code, job.attempts) == ("failed", "generation_failed", 1)
    assert job.error is not None and "timed out" in job.error
