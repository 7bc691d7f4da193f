"""The real LiveKit server the end-to-end suite runs on: it starts, and two participants meet."""

from __future__ import annotations

import asyncio

from livekit import api, rtc

from tests.livekit_server import LiveKitServer


def _token(server: LiveKitServer, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


async def test_two_participants_meet_and_the_room_service_lists_them(
    livekit_server: LiveKitServer,
) -> None:
    first, second = rtc.Room(), rtc.Room()
    seen = asyncio.Event()
    second.on("participant_connected", lambda p: seen.set() if p.identity == "alice" else None)
    await second.connect(livekit_server.url, _token(livekit_server, "meet", "bob"))
    await first.connect(livekit_server.url, _token(livekit_server, "meet", "alice"))
    try:
        await asyncio.wait_for(seen.wait(), timeout=30)
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lkapi:
            rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=["meet"]))
            listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room="meet"))
        assert [room.name for room in rooms.rooms] == ["meet"]
        assert sorted(p.identity for p in listed.participants) == ["alice", "bob"]
    finally:
        await first.disconnect()
        await second.disconnect()
