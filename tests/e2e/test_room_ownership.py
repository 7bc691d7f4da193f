"""Fault 1 of issue 20: a junk `atlas-avatar` dispatch into a customer's room must not delete
it. A real livekit-server, the stack's real worker, and a customer participant in a room our
API never made: dispatches with unparsable metadata, and with valid JSON whose values are out
of range, each fail in the worker, which leaves the room alone (agent/ownership.py). The
customer stays connected and the room survives."""

from __future__ import annotations

import contextlib
import json
import secrets

from livekit import api, rtc

from tests.e2e.stack import Stack, poll

LIMIT_S = 90.0  # hang guard
NOT_OURS = "not deleting a room this API did not create"

JUNK = [
    "{not json",
    json.dumps(
        {
            "session_id": "ses_0123456789abcdefghijklmn",
            "mode": "passthrough",
            "face": {"url": "https://example.com/f.jpg"},
            "max_duration_seconds": 10**9,  # out of range
            "options": {"empty_timeout_seconds": -5},
        }
    ),
]


async def test_a_junk_dispatch_leaves_a_customers_room_and_participant_alone(
    stack: Stack,
) -> None:
    lk = stack.livekit
    room_name = f"customer-room-{secrets.token_hex(4)}"
    token = (
        api.AccessToken(lk.api_key, lk.api_secret)
        .with_identity("customer")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    customer = rtc.Room()
    await customer.connect(lk.url, token)
    [worker] = stack.workers

    async def idle() -> bool:
        # earlier scenarios' sessions have ended: a full worker is offered no job at all
        return stack.metrics(worker).get("atlas_agent_sessions_live", 0.0) == 0.0

    await poll(idle, limit_s=LIMIT_S, what="the worker idle before the junk dispatches")
    refused_before = stack.log(worker).count(NOT_OURS)
    async with api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as lkapi:
        try:
            for metadata in JUNK:
                await lkapi.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=stack.env["ATLAS_AGENT_NAME"], room=room_name, metadata=metadata
                    )
                )

            async def handled() -> bool:
                # each job failed where it would have deleted the room, or the room is gone
                refused = stack.log(worker).count(NOT_OURS) - refused_before
                return refused >= len(JUNK) or not await stack.room_exists(room_name)

            try:
                await poll(handled, limit_s=LIMIT_S, what="the worker handling both junk jobs")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{stack.log(worker)[-6000:]}") from None
            assert await stack.room_exists(room_name)
            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
            assert "customer" in {p.identity for p in listed.participants}
            assert customer.connection_state == rtc.ConnectionState.CONN_CONNECTED
            assert '"invalid_job"' in stack.log(worker)
        finally:
            await customer.disconnect()
            with contextlib.suppress(api.TwirpError):  # gone already if the test failed
                await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
