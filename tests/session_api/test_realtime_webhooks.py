"""Billing from LiveKit's events (session_api/realtime_events.py, session_api/realtime_join.py),
against the fake LiveKit server API, which like the real one records a job request at dispatch
and has the worker take it and join later (here: when the test says so, on its fake clock).

- the bill starts at the worker's join, not at dispatch, whether the create's wait or the
  participant_joined webhook sees the join first;
- a dispatch a worker took is waited on, never deleted and made again; one nobody took is;
- the avatar's participant_left carries its end reason and the time the bill stops; 300
  sessions ending at once are all billed with their own (SQLite, and PostgreSQL when
  ATLAS_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
from livekit import api
from sqlalchemy import select

from session_api.config import Settings
from session_api.db.models import RealtimeSession
from session_api.livekit import (
    BILLABLE_UNTIL_ATTR,
    CONNECTION_TIMEOUT_S,
    END_REASON_ATTR,
    ERROR_ATTR,
    STATE_ATTR,
)
from session_api.realtime import RealtimeService
from tests.fake_clock import FakeClock
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import Api, auth

HANG_GUARD_S = 30.0  # only a limit on a condition that must come


async def until(condition: Callable[[], bool], *, poll_s: float = 0.005) -> None:
    for _ in range(int(HANG_GUARD_S / poll_s)):
        if condition():
            return
        await asyncio.sleep(poll_s)
    raise TimeoutError("the condition never came")


def start_create(api_: Api, key: str, face: bytes) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        api_.client.post(
            "/v1/realtime/session",
            headers=auth(key),
            files={"face": ("face.jpg", face, "image/jpeg")},
            data={"mode": "passthrough"},
        )
    )


async def post_webhook(api_: Api, livekit: FakeLiveKit, event: api.WebhookEvent) -> None:
    body, token = livekit.signed_webhook(event)
    response = await api_.client.post(
        "/v1/livekit/webhook",
        content=body,
        headers={"Authorization": token, "Content-Type": "application/webhook+json"},
    )
    assert response.status_code == 200, response.text


def avatar_event(
    kind: str,
    room: str,
    *,
    at: float,
    joined_at: float,
    disconnect_reason: int = api.DisconnectReason.UNKNOWN_REASON,
    **attributes: str,
) -> api.WebhookEvent:
    participant = api.ParticipantInfo(
        sid="PA_avatar",
        identity="agent-AJ_1",
        kind=api.ParticipantInfo.Kind.AGENT,
        joined_at=int(joined_at),
        joined_at_ms=int(joined_at * 1000),
        attributes=attributes,
        disconnect_reason=disconnect_reason,
    )
    return api.WebhookEvent(
        event=kind,
        id=f"EV_{kind}_{room}",
        created_at=int(at),
        room=api.Room(name=room, sid="RM_x"),
        participant=participant,
    )


async def duration_of(api_: Api, key: str, sid: str) -> float:
    got = await api_.client.get(f"/v1/realtime/session/{sid}", headers=auth(key))
    assert got.status_code == 200, got.text
    return float(got.json()["duration_seconds"])


@pytest.mark.parametrize("join_seen_by", ["create", "webhook"])
async def test_the_bill_starts_at_the_workers_join_five_seconds_after_dispatch(
    join_seen_by: str,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    livekit.joins_by_hand = True
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        created = start_create(api_, key.key, face_bytes)
        await until(lambda: bool(livekit.calls_of("CreateDispatch")))
        room = livekit.calls_of("CreateDispatch")[0].request.room
        await clock.advance(5)  # the worker takes the job and joins 5 s after the dispatch
        joined = clock.time()
        if join_seen_by == "webhook":  # LiveKit's participant_joined comes before the poll
            event = avatar_event("participant_joined", room, at=joined + 1, joined_at=joined)
            await clock.advance(1)
            await post_webhook(api_, livekit, event)
            assert api_.services.realtime is not None
            [row] = (await session_rows(api_.services.realtime)).values()
            assert row.status == "active"  # before the create's wait has seen the worker
            assert row.started_at is not None
            assert row.started_at.replace(tzinfo=UTC).timestamp() == joined
        livekit.take_job(room)
        livekit.join_agent(room, at=joined)
        response = await created
        assert response.status_code == 200, response.text
        sid = response.json()["session_id"]
        await clock.advance(10)
        assert await duration_of(api_, key.key, sid) == clock.time() - joined
        ended = await api_.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        assert ended.json()["duration_seconds"] == clock.time() - joined


async def test_a_dispatch_a_worker_took_is_waited_on_and_one_nobody_took_is_made_again(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    livekit.joins_by_hand = True
    settings = rt_settings(realtime_redispatch_after_s=0.05, realtime_join_timeout_s=HANG_GUARD_S)
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        # taken: a worker accepted the job but has not joined when the API checks
        created = start_create(api_, key.key, face_bytes)
        await until(lambda: bool(livekit.calls_of("CreateDispatch")))
        room = livekit.calls_of("CreateDispatch")[0].request.room
        livekit.take_job(room)
        await until(lambda: len(livekit.calls_of("ListDispatch")) >= 2)  # checked twice
        livekit.join_agent(room)
        assert (await created).status_code == 200
        assert len(livekit.calls_of("CreateDispatch")) == 1
        assert livekit.calls_of("DeleteDispatch") == []  # never a second avatar

        # untaken: LiveKit dropped the job; the API dispatches again, leaving the first one
        # (deleting it would end a job assigned to it just after the API's look)
        created = start_create(api_, key.key, face_bytes)
        await until(lambda: len(livekit.calls_of("CreateDispatch")) == 2)
        room = livekit.calls_of("CreateDispatch")[1].request.room
        first = livekit.calls_of("CreateDispatch")[1]
        await until(lambda: len(livekit.calls_of("CreateDispatch")) == 3)
        assert livekit.calls_of("DeleteDispatch") == []
        assert [d.metadata for d in livekit.dispatches[room].values()] == [
            first.request.metadata
        ] * 2
        livekit.take_job(room)
        livekit.join_agent(room)
        assert (await created).status_code == 200


async def test_the_avatars_participant_left_bills_its_end_or_failure_or_its_loss(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        service = api_.services.realtime
        assert service is not None
        sids = []
        for _ in range(3):
            response = await start_create(api_, key.key, face_bytes)
            assert response.status_code == 200, response.text
            sids.append(response.json()["session_id"])
        started = clock.time()
        await clock.advance(60)
        ended, failed, killed = sids
        for sid, attributes in [
            (
                ended,
                {
                    STATE_ATTR: "ended",
                    END_REASON_ATTR: "client_left",
                    BILLABLE_UNTIL_ATTR: str(started + 20),
                },
            ),
            (failed, {STATE_ATTR: "failed", ERROR_ATTR: "face_unusable"}),
            (killed, {STATE_ATTR: "live"}),
        ]:
            room = f"atlas-rt-{sid}"
            livekit.agents.pop(room)  # participant_left: the avatar is no longer listed
            event = avatar_event(
                "participant_left", room, at=started + 55, joined_at=started, **attributes
            )
            for _ in range(2):  # LiveKit may deliver twice
                await post_webhook(api_, livekit, event)
        rows = await session_rows(service)
        assert (rows[ended].status, rows[ended].end_reason, rows[ended].duration_s) == (
            "ended",
            "client_left",
            20.0,
        )
        assert (rows[failed].status, rows[failed].end_reason, rows[failed].duration_s) == (
            "failed",
            "face_unusable",
            0.0,
        )
        assert (rows[killed].status, rows[killed].end_reason, rows[killed].duration_s) == (
            "ended",
            "agent_lost",
            55.0,
        )
        # a customer's room (not ours) is ignored
        await post_webhook(
            api_, livekit, avatar_event("participant_left", "customer-room", at=0, joined_at=0)
        )


async def test_a_killed_avatar_timed_out_by_livekit_is_billed_to_when_it_was_last_heard(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    """A SIGKILLed worker says nothing; LiveKit closes its participant CONNECTION_TIMEOUT_S
    after its connection went silent (disconnect reason CONNECTION_TIMEOUT). The bill stops
    at the silence (within the second the event's whole-second time may have lost), not at
    LiveKit's noticing it."""
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        service = api_.services.realtime
        assert service is not None
        response = await start_create(api_, key.key, face_bytes)
        assert response.status_code == 200, response.text
        sid = response.json()["session_id"]
        started = clock.time()
        killed_at = started + 30
        await clock.advance(30 + CONNECTION_TIMEOUT_S + 1)
        room = f"atlas-rt-{sid}"
        livekit.agents.pop(room)
        event = avatar_event(
            "participant_left",
            room,
            at=killed_at + CONNECTION_TIMEOUT_S,
            joined_at=started,
            disconnect_reason=api.DisconnectReason.CONNECTION_TIMEOUT,
            **{STATE_ATTR: "live"},
        )
        await post_webhook(api_, livekit, event)
        row = (await session_rows(service))[sid]
        assert (row.status, row.end_reason, row.duration_s) == ("ended", "agent_lost", 31.0)


async def session_rows(service: RealtimeService) -> dict[str, RealtimeSession]:
    async with service.store.db.session() as tx:
        return {row.id: row for row in await tx.scalars(select(RealtimeSession))}


REASONS = ["client_left", "max_duration", "deleted", "error", "empty_timeout", "shutdown"]


async def test_300_sessions_ending_within_seconds_are_all_billed_with_their_true_reasons(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
) -> None:
    await bill_300(rt_settings(realtime_capacity=300), open_api, livekit, clock)


async def test_300_sessions_ending_within_seconds_are_all_billed_on_postgres(
    pg_url: str,
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
) -> None:
    settings = rt_settings(realtime_capacity=300, database_url=pg_url)
    await bill_300(settings, open_api, livekit, clock)


async def bill_300(
    settings: Settings, open_api: Callable[..., Any], livekit: FakeLiveKit, clock: FakeClock
) -> None:
    """300 live sessions, each joined at its own time; their avatars all leave within 5 s,
    each with its own end reason and bill end, the webhooks all in flight at once."""
    n = 300
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        service = api_.services.realtime
        assert service is not None
        start = clock()
        await clock.advance(1000)
        sids = [f"ses_bulk{i:04d}xxxxxxxxxxxxxxxx" for i in range(n)]
        for i, sid in enumerate(sids):
            row = RealtimeSession(
                id=sid,
                key_id=key.id,
                mode="passthrough",
                status="starting",
                room=f"atlas-rt-{sid}",
                max_duration_s=3600,
                price_cents_per_hour=600,
                face_version=1,
                face_keys=json.dumps([]),
                created_at=start,
                expires_at=start + timedelta(seconds=3600),
            )
            assert await service.store.reserve(row, capacity=n)
            # joined i/10 s apart, each billed for 100 + i/10 s of its own
            assert await service.worker_joined(sid, start + timedelta(seconds=i / 10))
        base = start.timestamp()
        events = [
            avatar_event(
                "participant_left",
                f"atlas-rt-{sid}",
                at=base + 990 + i % 5,
                joined_at=base,
                **{
                    STATE_ATTR: "ended",
                    END_REASON_ATTR: REASONS[i % len(REASONS)],
                    BILLABLE_UNTIL_ATTR: str(base + i / 10 + 100 + i / 10),
                },
            )
            for i, sid in enumerate(sids)
        ]
        await asyncio.gather(*(post_webhook(api_, livekit, e) for e in events))
        rows = await session_rows(service)
        for i, sid in enumerate(sids):
            row = rows[sid]
            assert row.status == "ended", sid
            assert row.end_reason == REASONS[i % len(REASONS)], sid
            assert row.duration_s == pytest.approx(100 + i / 10, abs=0.01), sid
