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
    running: dict[int, int] = dict(
        (
            await session.execute(
                select(Job.key_id, func.count())
                .where(Job.status == "processing")
                .group_by(Job.key_id)
            )
        ).all()
    )
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

    def rank(key_id: int) -> tuple[int, bool, datetime, datetime]:
        served = last_started.get(key_id)
        never = served is None
        return (running.get(key_id, 0), not never, served or waiting[key_id], waiting[key_id])

    return min(eligible, key=rank)
