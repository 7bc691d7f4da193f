"""Which key's job runs next: fair queueing across API keys.

The key with the fewest jobs processing goes first, then the one served least recently (its
latest job start), then the one whose oldest pending job has waited longest. Keys at the per-key
cap wait. Callers hold the claim lock, so the counts cannot change underneath.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from session_api.db.models import Job

# How far back "served least recently" looks; a key idle longer than this counts as never served.
FAIRNESS_HORIZON = timedelta(hours=24)


async def next_key(session: AsyncSession, now: datetime, *, per_key_cap: int | None) -> int | None:
    """The key whose oldest pending job runs next, or None (nothing pending, or all capped)."""
    waiting: dict[int, datetime] = dict(
        (
            await session.execute(
                select(Job.key_id, func.min(Job.created_at))
                .where(Job.status == "pending")
                .group_by(Job.key_id)
            )
        ).all()
    )
    if not waiting:
        return None
    running = await _running_per_key(session)
    cap = per_key_cap
    eligible = [k for k in waiting if cap is None or running.get(k, 0) < cap]
    if not eligible:
        return None
    last_started: dict[int, datetime | None] = dict(
        (
            await session.execute(
                select(Job.key_id, func.max(Job.started_at))
                .where(Job.key_id.in_(eligible), Job.created_at >= now - FAIRNESS_HORIZON)
                .group_by(Job.key_id)
            )
        ).all()
    )

    return min(eligible, key=lambda k: _rank(running.get(k, 0), last_started.get(k), waiting[k]))


def _rank(
    running: int, served: datetime | None, waiting: datetime
) -> tuple[int, bool, datetime, datetime]:
    """Lower runs first: fewest processing, then never served, then served least recently, then
    the oldest waiting job."""
    return (running, served is not None, served or waiting, waiting)


async def position_in_order(session: AsyncSession, now: datetime, job_id: str) -> int:
    """How many pending jobs next_key() will start before `job_id` (0: it starts next).

    Replays the scheduler over the pending jobs: each pick starts a key's oldest pending job,
    which adds one to the key's processing count and makes it the key served last. The replay
    leaves out the per-key cap and jobs finishing: a key at its cap has the most jobs processing
    and ranks behind the others anyway, so the order they would change is seldom reached.
    """
    pending: dict[int, list[tuple[datetime, str]]] = {}
    rows = await session.execute(
        select(Job.key_id, Job.created_at, Job.id)
        .where(Job.status == "pending")
        .order_by(Job.created_at, Job.id)
    )
    for key_id, created_at, pending_id in rows.all():
        pending.setdefault(key_id, []).append((created_at, pending_id))
    if not any(pending_id == job_id for jobs in pending.values() for _, pending_id in jobs):
        return 0
    running = await _running_per_key(session)
    served: dict[int, datetime | None] = dict(
        (
            await session.execute(
                select(Job.key_id, func.max(Job.started_at))
                .where(Job.key_id.in_(list(pending)), Job.created_at >= now - FAIRNESS_HORIZON)
                .group_by(Job.key_id)
            )
        ).all()
    )
    # Picks made in the replay are later than any real start: served at `later` + their turn.
    later = max([now, *(s for s in served.values() if s is not None)])
    heads = dict.fromkeys(pending, 0)
    for turn in range(sum(len(jobs) for jobs in pending.values())):
        key_id = min(
            heads,
            key=lambda k: _rank(running.get(k, 0), served.get(k), pending[k][heads[k]][0]),
        )
        if pending[key_id][heads[key_id]][1] == job_id:
            return turn
        running[key_id] = running.get(key_id, 0) + 1
        served[key_id] = later + timedelta(microseconds=turn + 1)
        heads[key_id] += 1
        if heads[key_id] == len(pending[key_id]):
            del heads[key_id]
    return 0


async def _running_per_key(session: AsyncSession) -> dict[int, int]:
    """How many jobs each key has processing now."""
    rows = await session.execute(
        select(Job.key_id, func.count()).where(Job.status == "processing").group_by(Job.key_id)
    )
    return dict(rows.tuples().all())
