"""Fair claims across API keys, and the per-key cap, on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from session_api.auth import create_key
from session_api.db.migrate import upgrade
from session_api.db.session import Database
from session_api.jobs.queue import JobQueue
from tests.fake_clock import FakeClock

from .test_queue import add_jobs


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


async def finish(queue: JobQueue, job_id: str, worker: str) -> None:
    assert await queue.complete(
        job_id, worker, output_key="o", output_size=1, duration=1.0, result_ttl_s=60
    )


async def test_a_second_keys_job_runs_within_one_slot_behind_another_keys_50(
    db: Database,
) -> None:
    clock = FakeClock()
    queue = JobQueue(db=db, clock=clock, per_key_concurrency=4)
    busy, other = await create_key(db, name="busy"), await create_key(db, name="other")
    busy_jobs = sorted(await add_jobs(queue, busy.id, 50))  # same created_at: by id
    first = await queue.claim("w")  # the single worker slot takes busy's first job
    assert first is not None and first.id == busy_jobs[0]
    clock.advance(1)
    [lonely] = await add_jobs(queue, other.id, 1)
    clock.advance(1)
    await finish(queue, first.id, "w")
    nxt = await queue.claim("w")  # the very next slot goes to the other key
    assert nxt is not None and nxt.id == lonely
    await finish(queue, nxt.id, "w")
    after = await queue.claim("w")  # then busy's backlog resumes, in order
    assert after is not None and after.id == busy_jobs[1]


async def test_keys_take_turns(db: Database) -> None:
    clock = FakeClock()
    queue = JobQueue(db=db, clock=clock)
    a, b = await create_key(db, name="a"), await create_key(db, name="b")
    a_jobs = sorted(await add_jobs(queue, a.id, 3))
    clock.advance(1)
    b_jobs = sorted(await add_jobs(queue, b.id, 3))
    order = []
    for _ in range(6):
        clock.advance(1)
        job = await queue.claim("w")
        assert job is not None
        order.append(job.id)
        await finish(queue, job.id, "w")
    assert order == [a_jobs[0], b_jobs[0], a_jobs[1], b_jobs[1], a_jobs[2], b_jobs[2]]


async def test_per_key_cap_holds_under_concurrent_claims(db: Database) -> None:
    queue = JobQueue(db=db, clock=FakeClock(), per_key_concurrency=2)
    a, b = await create_key(db, name="a"), await create_key(db, name="b")
    await add_jobs(queue, a.id, 10)
    claims = await asyncio.gather(*(queue.claim(f"w{i}") for i in range(6)))
    taken = [c for c in claims if c is not None]
    assert len(taken) == 2 and all(c.key_id == a.id for c in taken)
    [b_job] = await add_jobs(queue, b.id, 1)
    third = await queue.claim("w9")  # a is at its cap, b is not
    assert third is not None and third.id == b_job
    assert await queue.claim("w10") is None

    # A finished job frees one of a's two slots.
    owner = f"w{claims.index(taken[0])}"
    await finish(queue, taken[0].id, owner)
    again = await queue.claim("w11")
    assert again is not None and again.key_id == a.id
