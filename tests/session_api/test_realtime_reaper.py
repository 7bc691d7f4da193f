"""The reaper on an injected clock: max-duration ends, catch-up after a restart, cleanup retries,
and two reapers on real PostgreSQL that never end (or bill) a session twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from session_api.config import Settings
from session_api.db.models import RealtimeSession
from session_api.db.session import Database
from session_api.faces import FaceChecker, FaceFetcher
from session_api.livekit import LiveKit
from session_api.realtime import RealtimeService
from session_api.reaper import Reaper
from session_api.storage import create_storage
from tests.fake_clock import FakeClock
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import Api, auth


async def create(api_: Api, key: str, face: bytes, **fields: str) -> str:
    response = await api_.client.post(
        "/v1/realtime/session",
        headers=auth(key),
        files={"face": ("face.jpg", face, "image/jpeg")},
        data=fields,
    )
    assert response.status_code == 200, response.text
    sid: str = response.json()["session_id"]
    return sid


async def rows(db: Database) -> dict[str, RealtimeSession]:
    async with db.session() as session:
        return {r.id: r for r in (await session.execute(select(RealtimeSession))).scalars()}


def reaper_of(api_: Api) -> Reaper:
    assert api_.services.realtime is not None
    return Reaper(service=api_.services.realtime, interval_s=3600)


async def test_reaper_ends_expired_sessions_at_their_max_duration(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        short = await create(api_, key.key, face_bytes, max_duration_seconds="60")
        long = await create(api_, key.key, face_bytes, max_duration_seconds="120")
        reaper = reaper_of(api_)
        clock.advance(59.9)
        assert (await reaper.sweep()).ended == []
        clock.advance(0.2)
        assert (await reaper.sweep()).ended == [short]
        assert (await reaper.sweep()).ended == []  # once
        state = await rows(api_.services.db)
        assert state[short].status == "ended" and state[short].end_reason == "max_duration"
        assert state[short].duration_s == 60.0
        assert state[long].status == "active"
        assert [c.request.room for c in livekit.calls_of("DeleteRoom")] == [f"atlas-rt-{short}"]
        got = await api_.client.get(f"/v1/realtime/session/{short}", headers=auth(key.key))
        assert got.json()["status"] == "ended" and got.json()["duration_seconds"] == 60.0


async def test_running_reaper_ends_a_session_soon_after_it_expires(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    settings = rt_settings(realtime_reaper_interval_s=0.05)
    async with open_api(settings, clock=clock, background=True) as api_:
        key = await api_.new_key()
        sid = await create(api_, key.key, face_bytes, max_duration_seconds="30")
        clock.advance(31)
        for _ in range(400):  # the 0.05 s loop: well under 2 s; bounded, not timed
            if (await rows(api_.services.db))[sid].status == "ended":
                break
            await asyncio.sleep(0.05)
        assert (await rows(api_.services.db))[sid].duration_s == 30.0


async def test_reaper_catches_up_after_a_restart(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    settings = rt_settings()
    async with open_api(settings, clock=clock, background=False) as first:
        key = await first.new_key()
        sid = await create(first, key.key, face_bytes, max_duration_seconds="300")
        started = (await rows(first.services.db))[sid].started_at
    # The API is down while the session passes its max duration, by a lot.
    clock.advance(3 * 3600)
    async with open_api(settings, clock=clock, background=True) as second:
        reaper = second.services.reaper
        assert reaper is not None
        await asyncio.wait_for(reaper.caught_up.wait(), timeout=30)
        row = (await rows(second.services.db))[sid]
        assert row.status == "ended" and row.end_reason == "max_duration"
        assert started is not None and row.ended_at == started + timedelta(seconds=300)
        assert row.duration_s == 300.0  # billed to the max duration, not to the restart
        assert [c.request.room for c in livekit.calls_of("DeleteRoom")] == [f"atlas-rt-{sid}"]
        ended = await second.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        assert ended.status_code == 409


async def test_failed_room_delete_is_retried_and_a_stalled_create_is_failed(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        sid = await create(api_, key.key, face_bytes)
        livekit.fail_next("DeleteRoom", status=503, code="unavailable")
        ended = await api_.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        assert ended.status_code == 200  # billing stops now even though LiveKit did not answer
        assert f"atlas-rt-{sid}" in livekit.rooms
        reaper = reaper_of(api_)
        assert (await reaper.sweep()).cleaned == []  # not due yet
        clock.advance(31)
        assert (await reaper.sweep()).cleaned == [sid]
        assert livekit.rooms == {}
        assert (await rows(api_.services.db))[sid].room_cleanup_due_at is None

        # A create whose process died after reserving its slot.
        stalled = RealtimeSession(
            id="ses_stalledstalledstalledstall",
            key_id=key.id,
            mode="passthrough",
            status="starting",
            room="atlas-rt-ses_stalledstalledstalledstall",
            max_duration_s=60,
            price_cents_per_hour=600,
            face_version=1,
            face_keys="[]",
            created_at=clock(),
            expires_at=clock() + timedelta(seconds=60),
        )
        async with api_.services.db.write() as session:
            session.add(stalled)
        clock.advance(61)
        sweep = await reaper.sweep()
        assert sweep.failed == [stalled.id] and stalled.id in sweep.cleaned
        row = (await rows(api_.services.db))[stalled.id]
        assert row.status == "failed" and row.duration_s == 0.0


async def test_two_reapers_on_postgres_never_double_end(
    pg_url: str,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    n = 12
    settings = rt_settings(database_url=pg_url, realtime_capacity=n)
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        ids = [await create(api_, key.key, face_bytes, max_duration_seconds="60") for _ in range(n)]
        # A second API process: its own engine, LiveKit client and service on the same database.
        db2 = Database(url=pg_url)
        assert settings.livekit_api_secret is not None
        other = RealtimeService(
            settings=settings,
            db=db2,
            storage=create_storage(settings),
            livekit=LiveKit(
                url=livekit.url,
                api_key=livekit.api_key,
                api_secret=settings.livekit_api_secret.get_secret_value(),
            ),
            checker=FaceChecker(options=api_.services.options),
            fetcher=FaceFetcher(max_bytes=1024),
            clock=clock,
        )
        try:
            # Ends racing on one session from both processes: exactly one wins.
            race = ids[-1]
            stores = [api_.services.realtime.store, other.store] * 4  # type: ignore[union-attr]
            winners = await asyncio.gather(
                *(s.end_once(race, at=clock(), reason="deleted", now=clock()) for s in stores)
            )
            assert sum(w is not None for w in winners) == 1
            reapers = [reaper_of(api_), Reaper(service=other, interval_s=3600)]
            clock.advance(61)
            ended: list[str] = []
            for _ in range(3):
                sweeps = await asyncio.gather(*(r.sweep() for r in reapers))
                for sweep in sweeps:
                    ended += sweep.ended
        finally:
            await other.aclose()
            await db2.aclose()
        # Each other session ended by exactly one reaper; the raced one's cleanup ran once too.
        assert sorted(ended) == sorted(ids[:-1])
        deletes = Counter(c.request.room for c in livekit.calls_of("DeleteRoom"))
        assert deletes == Counter(f"atlas-rt-{sid}" for sid in ids)
        state = await rows(api_.services.db)
        assert all(state[sid].status == "ended" for sid in ids)
        assert all(state[sid].duration_s == 60.0 for sid in ids[:-1])
        assert all(state[sid].room_cleanup_due_at is None for sid in ids)
