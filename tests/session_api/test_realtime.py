"""Realtime sessions over ASGI against a fake LiveKit server API on loopback (SQLite).

The fake verifies every request's JWT and grants the way LiveKit does and records the calls; the
client token and webhooks are checked with livekit-api's own TokenVerifier / AccessToken.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from livekit import api

from agent.metadata import parse_dispatch_metadata
from agent.ownership import owns_room
from session_api.config import Settings
from session_api.livekit import room_mark
from session_api.pricing import estimated_cost, pricing_text
from tests.fake_clock import FakeClock
from tests.fakes.livekit_server import FakeLiveKit

from .api_support import Api, auth, no_face_png
from .test_api_errors import assert_error

SESSION_ID = re.compile(r"^ses_[A-Za-z0-9_-]{24,}$")


def face_form(image: bytes, **fields: str) -> dict[str, Any]:
    return {"files": {"face": ("face.jpg", image, "image/jpeg")}, "data": fields}


@pytest.fixture
async def api_rt(
    rt_settings: Callable[..., Settings], open_api: Callable[..., Any], clock: FakeClock
) -> AsyncIterator[Api]:
    async with open_api(rt_settings(), clock=clock, background=False) as api_:
        yield api_


async def create(api_: Api, key: str, face: bytes, **fields: str) -> dict[str, Any]:
    response = await api_.client.post(
        "/v1/realtime/session", headers=auth(key), **face_form(face, **fields)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_the_spec_shape_and_a_token_for_this_room_only(
    api_rt: Api, livekit: FakeLiveKit, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    body = await create(api_rt, key.key, face_bytes, mode="passthrough")
    assert set(body) == {
        "session_id",
        "livekit_url",
        "token",
        "room",
        "mode",
        "max_duration_seconds",
        "pricing",
    }
    sid = body["session_id"]
    assert SESSION_ID.match(sid)
    assert body["room"] == f"atlas-rt-{sid}"
    assert body["mode"] == "passthrough"
    assert body["max_duration_seconds"] == 3600
    assert body["pricing"] == "$6/hour, prorated per second"
    assert body["livekit_url"] == livekit.url.replace("http://", "ws://")

    claims = api.TokenVerifier(livekit.api_key, livekit.api_secret).verify(body["token"])
    assert claims.identity == f"user-{sid}"
    assert claims.video is not None
    assert claims.video.room_join is True and claims.video.room == body["room"]
    assert claims.video.can_publish and claims.video.can_subscribe and claims.video.can_publish_data
    for admin in ("room_create", "room_list", "room_admin", "room_record", "agent", "hidden"):
        assert not getattr(claims.video, admin), admin
    raw = jwt.decode(body["token"], options={"verify_signature": False})
    assert raw["exp"] - raw["nbf"] == 3600 + 300  # a little over max duration
    with pytest.raises(jwt.InvalidSignatureError):
        api.TokenVerifier(livekit.api_key, "another-secret-0123456789-abcdefgh").verify(
            body["token"]
        )


async def test_room_and_dispatch_carry_what_the_worker_needs(
    api_rt: Api, livekit: FakeLiveKit, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    body = await create(
        api_rt, key.key, face_bytes, max_duration_seconds="600", voice="v1", instructions="Be kind"
    )
    sid, room = body["session_id"], body["room"]
    assert body["mode"] == "conversation" and body["max_duration_seconds"] == 600
    assert body["pricing"] == "$10/hour, prorated per second"

    [create_room] = livekit.calls_of("CreateRoom")
    assert create_room.request.name == room
    # LiveKit closes an empty room only after the worker's own end (30 s + a 30 s margin): the
    # client may rejoin for 30 s, and the worker bills the session
    assert create_room.request.empty_timeout == 60
    assert create_room.request.departure_timeout == 60
    [dispatch] = livekit.calls_of("CreateDispatch")
    assert dispatch.request.agent_name == "atlas-avatar" and dispatch.request.room == room
    metadata = json.loads(dispatch.request.metadata)
    face_key = metadata["face"]["storage_key"]
    assert metadata == {
        "session_id": sid,
        "mode": "conversation",
        "face": {"storage_key": face_key, "version": 1},
        "max_duration_seconds": 600,
        "options": {"voice_id": "v1", "instructions": "Be kind", "empty_timeout_seconds": 30},
        "room_mark": room_mark(room, livekit.api_secret),
    }
    assert parse_dispatch_metadata(dispatch.request.metadata).options.empty_timeout_seconds == 30
    assert owns_room(room, dispatch.request.metadata, livekit.api_secret)  # the worker agrees
    assert not owns_room(room, dispatch.request.metadata, "another-secret")
    assert not owns_room("customer-room", dispatch.request.metadata, livekit.api_secret)
    assert json.loads(create_room.request.metadata) == {"face": metadata["face"]}
    # The face is stored where the worker's file face source resolves storage keys.
    stored = api_rt.services.settings.data_dir / "storage" / face_key
    assert stored.read_bytes() == face_bytes


async def test_status_duration_and_end_with_cost(
    api_rt: Api, livekit: FakeLiveKit, clock: FakeClock, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    costs = {}
    for mode in ("passthrough", "conversation"):
        body = await create(api_rt, key.key, face_bytes, mode=mode)
        sid = body["session_id"]
        clock.advance(142.5)
        status = (
            await api_rt.client.get(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        ).json()
        assert status == {
            "session_id": sid,
            "status": "active",
            "room": body["room"],
            "started_at": status["started_at"],
            "ended_at": None,
            "duration_seconds": 142.5,
            "estimated_cost": status["estimated_cost"],
            "error_code": None,
        }
        clock.advance(322.0 - 142.5)
        ended = await api_rt.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        assert ended.status_code == 200, ended.text
        costs[mode] = ended.json()
        assert costs[mode]["duration_seconds"] == 322.0
        assert body["room"] not in livekit.rooms
        after = (
            await api_rt.client.get(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        ).json()
        assert after["status"] == "ended" and after["duration_seconds"] == 322.0
        assert after["estimated_cost"] == costs[mode]["estimated_cost"]
        assert after["ended_at"] is not None
        again = await api_rt.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        assert_error(again, 409, "already_ended")
    assert costs["passthrough"]["estimated_cost"] == "$0.54"
    assert costs["conversation"] == {
        "session_id": costs["conversation"]["session_id"],
        "status": "ended",
        "duration_seconds": 322.0,
        "estimated_cost": "$0.89",
    }
    assert len(livekit.calls_of("DeleteRoom")) == 2
    # The faces went with the sessions.
    assert not list((api_rt.services.settings.data_dir / "storage").glob("realtime/*/*"))


def test_cost_arithmetic() -> None:
    assert estimated_cost(322.0, 600) == "$0.54"
    assert estimated_cost(322.0, 1000) == "$0.89"
    assert estimated_cost(3600.0, 1000) == "$10.00"
    assert estimated_cost(0.0, 1000) == "$0.00"
    assert estimated_cost(1.0, 1000) == "$0.00"  # 0.28 cents
    assert estimated_cost(18.0, 1000) == "$0.05"  # exactly half a cent rounds up
    assert pricing_text(750) == "$7.50/hour, prorated per second"


async def test_face_swap_bumps_the_version_in_room_metadata(
    api_rt: Api, livekit: FakeLiveKit, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    body = await create(api_rt, key.key, face_bytes)
    sid, room = body["session_id"], body["room"]
    url = f"/v1/realtime/session/{sid}"
    for method, version in (("PATCH", 2), ("POST", 3)):
        response = await api_rt.client.request(
            method, url, headers=auth(key.key), files={"face": ("f.jpg", face_bytes, "image/jpeg")}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "session_id": sid,
            "status": "active",
            "message": "Face updated successfully.",
        }
        face = json.loads(livekit.rooms[room].metadata)["face"]
        assert face["version"] == version
        stored = api_rt.services.settings.data_dir / "storage" / face["storage_key"]
        assert stored.read_bytes() == face_bytes
    assert [c.request.room for c in livekit.calls_of("UpdateRoomMetadata")] == [room, room]

    faceless = await api_rt.client.patch(
        url, headers=auth(key.key), files={"face": ("f.png", no_face_png(), "image/png")}
    )
    assert_error(faceless, 400, "invalid_input")
    assert json.loads(livekit.rooms[room].metadata)["face"]["version"] == 3
    both = await api_rt.client.patch(
        url,
        headers=auth(key.key),
        files={"face": ("f.jpg", face_bytes, "image/jpeg")},
        data={"face_url": "https://example.com/f.jpg"},
    )
    assert_error(both, 400, "invalid_input")

    assert (await api_rt.client.delete(url, headers=auth(key.key))).status_code == 200
    ended = await api_rt.client.patch(
        url, headers=auth(key.key), files={"face": ("f.jpg", face_bytes, "image/jpeg")}
    )
    assert_error(ended, 404, "not_found")
    assert len(livekit.calls_of("UpdateRoomMetadata")) == 2


async def test_face_swaps_are_rate_limited(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(realtime_swaps_per_minute=2), clock=clock) as api_:
        key = await api_.new_key()
        sid = (await create(api_, key.key, face_bytes))["session_id"]
        codes = []
        for _ in range(3):
            response = await api_.client.patch(
                f"/v1/realtime/session/{sid}",
                headers=auth(key.key),
                files={"face": ("f.jpg", face_bytes, "image/jpeg")},
            )
            codes.append(response.status_code)
        assert codes == [200, 200, 429]
        body = assert_error(response, 429, "rate_limited")
        assert body["retry_after_seconds"] >= 1


async def test_documented_errors(api_rt: Api, face_bytes: bytes) -> None:
    key = await api_rt.new_key()
    other = await api_rt.new_key("other")
    post = "/v1/realtime/session"
    assert_error(await api_rt.client.post(post, json={"face_url": "x"}), 401, "unauthorized")
    assert_error(
        await api_rt.client.post(post, headers=auth("sk_live_nope"), json={}), 403, "forbidden"
    )
    bad_mode = await api_rt.client.post(
        post, headers=auth(key.key), json={"face_url": "https://e.com/f.jpg", "mode": "karaoke"}
    )
    assert_error(bad_mode, 400, "invalid_mode")
    for url in ("http://example.com/f.jpg", "https://example.com/" + "a" * 2048, "ftp://x/y", 7):
        response = await api_rt.client.post(post, headers=auth(key.key), json={"face_url": url})
        assert_error(response, 400, "invalid_face_url")
    missing = await api_rt.client.post(post, headers=auth(key.key), json={"mode": "passthrough"})
    assert_error(missing, 422, "validation_error")
    faceless = await api_rt.client.post(
        post, headers=auth(key.key), files={"face": ("f.png", no_face_png(), "image/png")}
    )
    assert_error(faceless, 400, "invalid_input")
    not_image = await api_rt.client.post(
        post, headers=auth(key.key), files={"face": ("f.jpg", b"hello" * 10, "image/jpeg")}
    )
    assert_error(not_image, 415, "unsupported_media_type")
    too_long = await api_rt.client.post(
        post, headers=auth(key.key), **face_form(face_bytes, max_duration_seconds="7200")
    )
    assert_error(too_long, 400, "invalid_input")

    sid = (await create(api_rt, key.key, face_bytes))["session_id"]
    for method in ("GET", "DELETE", "PATCH"):
        kwargs: dict[str, Any] = {}
        if method == "PATCH":
            kwargs["files"] = {"face": ("f.jpg", face_bytes, "image/jpeg")}
        foreign = await api_rt.client.request(
            method, f"/v1/realtime/session/{sid}", headers=auth(other.key), **kwargs
        )
        assert_error(foreign, 404, "not_found")
        unknown = await api_rt.client.request(
            method, "/v1/realtime/session/ses_nope", headers=auth(key.key), **kwargs
        )
        assert_error(unknown, 404, "not_found")


async def test_key_limit_on_max_duration(api_rt: Api, face_bytes: bytes) -> None:
    key = await api_rt.new_key(max_session_s=300)
    assert (await create(api_rt, key.key, face_bytes))["max_duration_seconds"] == 300
    over = await api_rt.client.post(
        "/v1/realtime/session",
        headers=auth(key.key),
        **face_form(face_bytes, max_duration_seconds="301"),
    )
    assert_error(over, 400, "invalid_input")


async def test_requests_over_the_key_rate_limit_are_429_rate_limited(
    api_rt: Api, face_bytes: bytes
) -> None:
    key = await api_rt.new_key(rpm=2)
    sid = (await create(api_rt, key.key, face_bytes))["session_id"]
    url = f"/v1/realtime/session/{sid}"
    assert (await api_rt.client.get(url, headers=auth(key.key))).status_code == 200
    body = assert_error(await api_rt.client.get(url, headers=auth(key.key)), 429, "rate_limited")
    assert body["retry_after_seconds"] >= 1


async def test_no_capacity_is_503_with_retry_after_and_status_busy(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(realtime_capacity=1), clock=clock) as api_:
        key = await api_.new_key()
        status = await api_.client.get("/v1/status", headers=auth(key.key))
        assert status.json()["services"]["avatar_generation"] == "available"
        sid = (await create(api_, key.key, face_bytes))["session_id"]
        full = await api_.client.post(
            "/v1/realtime/session", headers=auth(key.key), **face_form(face_bytes)
        )
        body = assert_error(full, 503, "no_capacity")
        assert body["retry_after_seconds"] == 30 and full.headers["Retry-After"] == "30"
        status = await api_.client.get("/v1/status", headers=auth(key.key))
        assert status.json()["services"]["avatar_generation"] == "busy"
        await api_.client.delete(f"/v1/realtime/session/{sid}", headers=auth(key.key))
        await create(api_, key.key, face_bytes)  # the slot is free again


async def test_livekit_failure_releases_the_slot_and_cleans_up(
    rt_settings: Callable[..., Settings],
    open_api: Callable[..., Any],
    livekit: FakeLiveKit,
    clock: FakeClock,
    face_bytes: bytes,
) -> None:
    async with open_api(rt_settings(realtime_capacity=1), clock=clock) as api_:
        key = await api_.new_key()
        livekit.fail_next("CreateDispatch", status=500, code="internal")
        failed = await api_.client.post(
            "/v1/realtime/session", headers=auth(key.key), **face_form(face_bytes)
        )
        assert_error(failed, 503, "temporarily_unavailable")
        [room] = [c.request.name for c in livekit.calls_of("CreateRoom")]
        assert [c.request.room for c in livekit.calls_of("DeleteRoom")] == [room]
        assert livekit.rooms == {}
        assert not list((api_.services.settings.data_dir / "storage").glob("realtime/*/*"))
        livekit.fail_next("CreateDispatch", status=429, code="resource_exhausted")
        busy = await api_.client.post(
            "/v1/realtime/session", headers=auth(key.key), **face_form(face_bytes)
        )
        assert_error(busy, 503, "no_capacity")
        await create(api_, key.key, face_bytes)  # capacity 1 was never leaked


async def test_without_livekit_realtime_is_503_and_offline_still_works(
    make_settings: Callable[..., Settings], open_api: Callable[..., Any], face_bytes: bytes
) -> None:
    settings = make_settings(livekit_url=None, livekit_api_key=None, livekit_api_secret=None)
    async with open_api(settings) as api_:
        key = await api_.new_key()
        response = await api_.client.post(
            "/v1/realtime/session", headers=auth(key.key), **face_form(face_bytes)
        )
        body = assert_error(response, 503, "temporarily_unavailable")
        for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
            assert name in body["message"]
        got = await api_.client.get("/v1/realtime/session/ses_x", headers=auth(key.key))
        assert_error(got, 503, "temporarily_unavailable")
        assert (await api_.client.get("/v1/me", headers=auth(key.key))).status_code == 200
        assert (await api_.client.get("/v1/status", headers=auth(key.key))).status_code == 200


async def test_room_finished_webhook_ends_the_session_at_livekits_time(
    api_rt: Api, livekit: FakeLiveKit, clock: FakeClock, face_bytes: bytes
) -> None:
    key = await api_rt.new_key()
    body = await create(api_rt, key.key, face_bytes)
    sid, room = body["session_id"], body["room"]
    finished_at = clock() + timedelta(seconds=95)
    clock.advance(400)  # the webhook arrives late; LiveKit's time is what counts
    event = api.WebhookEvent(
        event="room_finished",
        room=api.Room(name=room, sid="RM_x"),
        id="EV_1",
        created_at=int(finished_at.timestamp()),
    )
    payload, token = livekit.signed_webhook(event)

    forged = await api_rt.client.post(
        "/v1/livekit/webhook",
        content=payload,
        headers={"Authorization": token[:-2] + "xx", "Content-Type": "application/webhook+json"},
    )
    assert_error(forged, 401, "unauthorized")
    tampered = await api_rt.client.post(
        "/v1/livekit/webhook",
        content=payload.replace("EV_1", "EV_2"),
        headers={"Authorization": token, "Content-Type": "application/webhook+json"},
    )
    assert_error(tampered, 401, "unauthorized")
    url = f"/v1/realtime/session/{sid}"
    assert (await api_rt.client.get(url, headers=auth(key.key))).json()["status"] == "active"

    for _ in range(2):  # LiveKit may deliver twice; the session ends once
        ok = await api_rt.client.post(
            "/v1/livekit/webhook",
            content=payload,
            headers={"Authorization": token, "Content-Type": "application/webhook+json"},
        )
        assert ok.status_code == 200, ok.text
    status = (await api_rt.client.get(url, headers=auth(key.key))).json()
    assert status["status"] == "ended" and status["duration_seconds"] == 95.0
    assert status["ended_at"] == finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert livekit.calls_of("DeleteRoom") == []  # LiveKit already closed it
    assert_error(await api_rt.client.delete(url, headers=auth(key.key)), 409, "already_ended")


async def test_a_face_swap_holds_no_database_lock_while_it_calls_livekit(
    api_rt: Api, livekit: FakeLiveKit, face_bytes: bytes
) -> None:
    """While LiveKit takes its time over the room metadata, other writes go through; a swap
    that loses the race to another is written again after it (compare-and-swap)."""
    key = await api_rt.new_key()
    body = await create(api_rt, key.key, face_bytes)
    sid, room = body["session_id"], body["room"]
    url = f"/v1/realtime/session/{sid}"
    files = {"face": ("f.jpg", face_bytes, "image/jpeg")}
    gate = livekit.hold_next("UpdateRoomMetadata")
    slow = asyncio.create_task(api_rt.client.patch(url, headers=auth(key.key), files=files))
    assert await asyncio.to_thread(gate.reached.wait, 30)
    try:
        # SQLite: a write lock held across the call would make these wait (and then fail)
        other = await create(api_rt, key.key, face_bytes)
        fast = await api_rt.client.patch(url, headers=auth(key.key), files=files)
        assert fast.status_code == 200, fast.text
    finally:
        gate.release.set()
    assert (await slow).status_code == 200
    store = api_rt.services.realtime.store  # type: ignore[union-attr]
    row = await store.get(sid, key_id=key.id)
    assert row is not None and row.face_version == 3
    face = json.loads(livekit.rooms[room].metadata)["face"]
    assert face["version"] == 3  # the room shows the face the database records last
    keys = json.loads(row.face_keys)
    assert len(keys) == 3 and face["storage_key"] == keys[-1]
    assert other["session_id"] != sid
