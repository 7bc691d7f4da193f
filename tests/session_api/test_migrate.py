"""Schema upgrades: concurrent starters (migration Job + API pods) must not collide."""

from __future__ import annotations

import asyncio

from session_api.db.migrate import current_revision, upgrade
from session_api.db.session import Database


async def test_concurrent_upgrades_on_postgresql_are_serialised(pg_url: str) -> None:
    databases = [Database(url=pg_url) for _ in range(4)]
    try:
        # Without the advisory lock, two of these race to CREATE TABLE alembic_version/jobs
        # and all but one fail with a duplicate-object error.
        await asyncio.gather(*(upgrade(db) for db in databases))
        revisions = {await current_revision(db) for db in databases}
        assert len(revisions) == 1 and None not in revisions
    finally:
        for db in databases:
            await db.aclose()
