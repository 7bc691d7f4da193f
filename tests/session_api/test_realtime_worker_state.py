"""What the avatar worker tells the API through LiveKit (agent/README.md, "Session state"):
the bill starts when the worker joins, a worker that never comes means no_capacity, and the
worker's own end, failure or disappearance is recorded by the reaper's reconcile step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from session_api.config import Settings
from session_api.livekit import BILLABLE_UNTIL_ATTR, END_REASON_ATTR, ERROR_ATTR, STATE_ATTR
from tests.fake_clock import FakeClock
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import auth
from .test_api_errors import assert_error
from .test_realtime_reaper import create, reaper_of, rows


def set_agent(livekit: FakeLiveKit, sid: str, **attributes: str) -> None:
    agent = livekit.agents[f"atlas-rt-{sid}"]
    agent.attributes.clear()
    agent.attributes.update(attributes)


async def test_no_worker_joining_is_no_capacity_and_bills_nothing(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    livekit.agents_join = False
    async with open_api(
        rt_settings(realtime_join_timeout_s=0.3), clock=clock, background=False
    ) as api_:
        key = await api_.new_key()
        response = await api_.client.post(
            "/v1/realtime/session",
            headers=auth(key.key),
            files={"face": ("face.jpg", face_bytes, "image/jpeg")},
            data={"mode": "passthrough"},
        )
        assert_error(response, 503, "no_capacity")
        assert livekit.rooms == {}  # the room went with the failed create
        assert api_.services.realtime is not None
        assert await api_.services.realtime.store.live_count() == 0


async def test_a_worker_failure_is_a_failed_session_with_its_code_and_no_bill(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        sid = await create(api_, key.key, face_bytes, mode="passthrough")
        clock.advance(3)
        set_agent(livekit, sid, **{STATE_ATTR: "failed", ERROR_ATTR: "face_unusable"})
        assert (await reaper_of(api_).sweep()).ended == [sid]
        got = (await api_.client.get(f"/v1/realtime/session/{sid}", headers=auth(key.key))).json()
        assert got["status"] == "failed" and got["error_code"] == "face_unusable"
        assert got["duration_seconds"] == 0.0 and got["estimated_cost"] == "$0.00"
        assert f"atlas-rt-{sid}" not in livekit.rooms


async def test_the_workers_end_is_billed_up_to_the_time_it_names(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        sid = await create(api_, key.key, face_bytes, mode="passthrough")
        started = clock()
        clock.advance(40)  # the client left at +10 s; the worker waited out the empty timeout
        until = started.timestamp() + 10
        set_agent(
            livekit,
            sid,
            **{
                STATE_ATTR: "ended",
                END_REASON_ATTR: "client_left",
                BILLABLE_UNTIL_ATTR: f"{until}",
            },
        )
        assert (await reaper_of(api_).sweep()).ended == [sid]
        got = (await api_.client.get(f"/v1/realtime/session/{sid}", headers=auth(key.key))).json()
        assert got["status"] == "ended" and got["duration_seconds"] == 10.0


async def test_a_vanished_room_ends_at_once_and_a_vanished_worker_after_the_webhooks_grace(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    """A worker gone without a word is the participant_left webhook's to bill (it knows when
    the worker was last heard from); the reaper ends it only once the grace has passed (the
    webhook lost), billed to the sweep that first found it gone."""
    grace = 5.0
    settings = rt_settings(realtime_agent_lost_grace_s=grace)
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        killed = await create(api_, key.key, face_bytes, mode="passthrough")
        closed = await create(api_, key.key, face_bytes, mode="passthrough")
        reaper = reaper_of(api_)
        assert (await reaper.sweep()).ended == []  # both workers there, live
        clock.advance(5)
        del livekit.agents[f"atlas-rt-{killed}"]
        del livekit.rooms[f"atlas-rt-{closed}"]
        assert (await reaper.sweep()).ended == [closed]
        clock.advance(grace - 1)
        assert (await reaper.sweep()).ended == []  # the webhook's turn still
        clock.advance(1)
        assert (await reaper.sweep()).ended == [killed]
        state = await rows(api_.services.db)
        for sid, reason in ((killed, "agent_lost"), (closed, "room_finished")):
            assert state[sid].end_reason == reason and state[sid].duration_s == 5.0
        assert [c.request.room for c in livekit.calls_of("DeleteRoom")] == [f"atlas-rt-{killed}"]


async def test_a_worker_back_within_the_grace_is_not_ended(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        key = await api_.new_key()
        sid = await create(api_, key.key, face_bytes, mode="passthrough")
        room = f"atlas-rt-{sid}"
        reaper = reaper_of(api_)
        agent = livekit.agents.pop(room)
        assert (await reaper.sweep()).ended == []
        livekit.agents[room] = agent  # listed again (a redispatched avatar, say)
        clock.advance(60)
        assert (await reaper.sweep()).ended == []
        del livekit.agents[room]
        clock.advance(1)
        assert (await reaper.sweep()).ended == []  # its grace counts from now, not from before
        assert (await rows(api_.services.db))[sid].status == "active"


async def test_a_sweep_looks_at_a_bounded_number_of_workers_and_reaches_every_one(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    """Hundreds of live sessions must not cost hundreds of LiveKit calls a second; the worker
    of each is still looked at within ceil(sessions / budget) sweeps."""
    settings = rt_settings(realtime_capacity=5, realtime_reconcile_rooms_per_sweep=2)
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        sids = [await create(api_, key.key, face_bytes, mode="passthrough") for _ in range(5)]
        reaper = reaper_of(api_)
        for sid in sids:
            set_agent(livekit, sid, **{STATE_ATTR: "ended", END_REASON_ATTR: "client_left"})
        ended: list[str] = []
        for _ in range(3):
            before = len(livekit.calls_of("ListParticipants"))
            ended += (await reaper.sweep()).ended
            assert len(livekit.calls_of("ListParticipants")) - before <= 2
        assert sorted(ended) == sorted(sids)


async def test_a_gone_room_is_ended_whatever_the_budget(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    settings = rt_settings(realtime_capacity=4, realtime_reconcile_rooms_per_sweep=1)
    async with open_api(settings, clock=clock, background=False) as api_:
        key = await api_.new_key()
        sids = [await create(api_, key.key, face_bytes, mode="passthrough") for _ in range(4)]
        for sid in sids:
            del livekit.rooms[f"atlas-rt-{sid}"]
        assert sorted((await reaper_of(api_).sweep()).ended) == sorted(sids)
