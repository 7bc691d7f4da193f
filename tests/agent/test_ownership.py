"""The worker deletes only rooms our API created (agent/ownership.py): the dispatch metadata
must carry the API's mark for exactly this room, made with the shared API secret."""

from __future__ import annotations

import json

from agent.livekit_api import RoomAdmin
from agent.ownership import OwnedRoomAdmin, owns_room, room_mark
from session_api.livekit import room_mark as api_room_mark

SECRET = "secret-0123456789-0123456789-0123456789"
ROOM = "atlas-rt-ses_0123456789abcdefghijklmn"


class RecordingAdmin(RoomAdmin):
    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_room(self, room_name: str) -> None:
        self.deleted.append(room_name)

    async def aclose(self) -> None:
        return None


def metadata(**extra: object) -> str:
    return json.dumps({"session_id": "ses_x", "mode": "passthrough", **extra})


def test_the_worker_and_the_api_make_the_same_mark() -> None:
    assert room_mark(ROOM, SECRET) == api_room_mark(ROOM, SECRET)


def test_only_a_valid_mark_for_this_room_proves_ownership() -> None:
    mark = room_mark(ROOM, SECRET)
    assert owns_room(ROOM, metadata(room_mark=mark), SECRET)
    assert not owns_room(ROOM, metadata(), SECRET)  # a junk or third-party dispatch
    assert not owns_room(ROOM, "{not json", SECRET)
    assert not owns_room(ROOM, json.dumps([mark]), SECRET)
    assert not owns_room(ROOM, metadata(room_mark=mark.upper()), SECRET)
    assert not owns_room(ROOM, metadata(room_mark=room_mark(ROOM, "other")), SECRET)
    other = "atlas-rt-ses_another0123456789abcd"
    assert not owns_room(other, metadata(room_mark=mark), SECRET)  # copied into another room
    customer = "customer-room"
    assert not owns_room(customer, metadata(room_mark=room_mark(customer, SECRET)), SECRET)
    assert not owns_room(ROOM, metadata(room_mark=mark), None)


async def test_an_unowned_room_is_never_deleted() -> None:
    inner = RecordingAdmin()
    await OwnedRoomAdmin(inner, room="customer-room", owned=False).delete_room("customer-room")
    owned = OwnedRoomAdmin(inner, room=ROOM, owned=True)
    await owned.delete_room("customer-room")  # not the job's room
    assert inner.deleted == []
    await owned.delete_room(ROOM)
    assert inner.deleted == [ROOM]
