"""The worker deletes only rooms our API created (agent/ownership.py): the dispatch metadata
must carry the API's mark for exactly this room, made with the shared API secret."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from agent.config import AgentSettings
from agent.livekit_api import LiveKitRoomAdmin, RoomAdmin
from agent.ownership import OwnedRoomAdmin, owns_room, room_admin_for, room_mark
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


@pytest.mark.parametrize(
    ("room", "mark", "holds_a_client"),
    [
        (ROOM, room_mark(ROOM, SECRET), True),
        (ROOM, None, False),  # no mark: a junk or third-party dispatch
        ("customer-room", None, False),  # plugin mode: the agent's room
    ],
)
def test_only_a_job_in_a_room_we_own_holds_an_api_client(
    room: str, mark: str | None, holds_a_client: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In any other room the job does only what its own room token allows (upstream avatars
    hold no more): no client is built with the API key, so no admin call can be made."""
    monkeypatch.setenv("LIVEKIT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("LIVEKIT_API_KEY", "devkey")
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    meta = metadata(room_mark=mark) if mark else metadata()
    ctx = SimpleNamespace(job=SimpleNamespace(room=SimpleNamespace(name=room), metadata=meta))
    admin = room_admin_for(ctx, AgentSettings())  # type: ignore[arg-type]
    assert isinstance(admin, OwnedRoomAdmin)
    assert isinstance(admin._inner, LiveKitRoomAdmin) is holds_a_client
