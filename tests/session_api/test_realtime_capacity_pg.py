"""Realtime capacity on PostgreSQL under concurrency: 8 creates at once, capacity 2, exactly 2 in.

The creates must overlap for the test to mean anything, and they must overlap on every machine:
the test holds a SHARE lock on realtime_sessions, which lets the capacity count run but blocks
the slot's INSERT. Every create is thus parked inside its reserve transaction (after counting,
or waiting for the capacity lock) until the test sees all 8 waiting and lets go. Without the
capacity lock all 8 would have counted 0 live sessions, and all 8 would get in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from session_api.config import Settings
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import Api, auth

CREATES = 8
CAPACITY = 2
HANG_GUARD_S = 120.0


async def _waiting_on_locks(conn: Any, database: str) -> int:
    n = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        database,
    )
    return int(n)


async def test_concurrent_creates_never_exceed_capacity(
    pg_url: str,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    face_bytes: bytes,
) -> None:
    import asyncpg

    settings = rt_settings(database_url=pg_url, realtime_capacity=CAPACITY)
    api_: Api
    async with open_api(settings, background=False) as api_:
        key = await api_.new_key()
        dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
        database = dsn.rsplit("/", 1)[1]
        blocker = await asyncpg.connect(dsn)
        # pg_stat_activity is a snapshot per transaction: watch from outside the blocker's.
        watcher = await asyncpg.connect(dsn)
        try:
            gate = blocker.transaction()
            await gate.start()
            await blocker.execute("LOCK TABLE realtime_sessions IN SHARE MODE")
            creates = [
                asyncio.create_task(
                    api_.client.post(
                        "/v1/realtime/session",
                        headers=auth(key.key),
                        files={"face": ("face.jpg", face_bytes, "image/jpeg")},
                        data={"mode": "passthrough"},
                    )
                )
                for _ in range(CREATES)
            ]
            deadline = time.monotonic() + HANG_GUARD_S
            while await _waiting_on_locks(watcher, database) < CREATES:
                assert time.monotonic() < deadline, "the creates never all reached the reserve"
                assert not any(t.done() for t in creates), [t.result() for t in creates if t.done()]
                await asyncio.sleep(0.02)
            await gate.commit()  # all 8 are inside their reserve: now let them through
            responses = await asyncio.gather(*creates)
        finally:
            await blocker.close()
            await watcher.close()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * CAPACITY + [503] * (CREATES - CAPACITY), [r.text for r in responses]
    assert all(r.json()["error"] == "no_capacity" for r in responses if r.status_code == 503)
    assert len(livekit.rooms) == CAPACITY
