"""queue_position is the number of pending jobs the fair scheduler will start first, on real
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from session_api.auth import create_key
from session_api.db.migrate import upgrade
from session_api.db.models import Job
from session_api.db.session import Database
from session_api.jobs.queue import JobQueue
from tests.fake_clock import FakeClock

from .test_queue import add_jobs
from .test_queue_fairness import finish


@pytest.fixture(params=["sqlite", "postgres"])
def queue_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    pg: str = request.getfixturevalue("pg_url")
    return pg


@pytest.fixture
async def queue_db(queue_db_url: str) -> AsyncIterator[Database]:
    database = Database(url=queue_db_url)
    await upgrade(database)
    try:
        yield database
    finally:
        await database.aclose()


async def test_queue_position_is_the_order_jobs_will_run_in(queue_db: Database) -> None:
    db = queue_db
    clock = FakeClock()
    queue = JobQueue(db=db, clock=clock, per_key_concurrency=4)
    a, b, c = [await create_key(db, name=n) for n in "abc"]
    # a's backlog arrives first, then b's and c's: arrival order would put b and c last
    a_jobs = sorted(await add_jobs(queue, a.id, 4))
    clock.advance(1)
    b_jobs = sorted(await add_jobs(queue, b.id, 2))
    clock.advance(1)
    [c_job] = await add_jobs(queue, c.id, 1)
    clock.advance(1)

    async def position(job_id: str) -> int:
        job = await queue.get(job_id, key_id=(await _key_of(db, job_id)))
        assert job is not None
        return await queue.queue_position(job)

    pending = [*a_jobs, *b_jobs, c_job]
    positions = {job_id: await position(job_id) for job_id in pending}
    assert sorted(positions.values()) == list(range(len(pending)))
    predicted = sorted(pending, key=positions.__getitem__)
    assert positions[b_jobs[0]] == 1 and positions[c_job] == 2  # not 4 and 6

    # One worker slot takes them one by one: exactly in that order.
    ran = []
    for _ in pending:
        claimed = await queue.claim("w")
        assert claimed is not None
        ran.append(claimed.id)
        clock.advance(1)
        await finish(queue, claimed.id, "w")
        clock.advance(1)
    assert ran == predicted


async def _key_of(db: Database, job_id: str) -> int:
    async with db.session() as session:
        key_id = await session.scalar(select(Job.key_id).where(Job.id == job_id))
    assert key_id is not None
    return int(key_id)
