"""Fakes for what cannot run here: the LiveKit room surface and the server API.

FakeRoom stands in for rtc.Room (an rtc.EventEmitter with the same event names, participants,
metadata and local participant methods the worker uses). Published tracks are the real
rtc.LocalAudioTrack / LocalVideoTrack objects, so tests can read them back with real
rtc.AudioStream / VideoStream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

from agent.livekit_api import RoomAdmin


@dataclass
class FakePublication:
    track: rtc.LocalTrack
    options: rtc.TrackPublishOptions

    @property
    def sid(self) -> str:
        return f"TR_{id(self.track):x}"

    @property
    def kind(self) -> int:
        return self.track.kind

    @property
    def source(self) -> int:
        return self.options.source

    async def wait_for_subscription(self) -> None:
        return None


@dataclass
class FakeRemotePublication:
    """What other rooms see of a published track (rtc.RemoteTrackPublication's surface)."""

    sid: str
    kind: int
    subscribed: bool = False
    track: rtc.Track | None = None


@dataclass
class FakeRemoteParticipant:
    identity: str
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
    attributes: dict[str, str] = field(default_factory=dict)
    track_publications: dict[str, Any] = field(default_factory=dict)
    sid: str = ""
    name: str = ""
    metadata: str = ""
    state: int = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE


@dataclass
class FakeByteStreamInfo:
    stream_id: str
    topic: str
    attributes: dict[str, str]
    name: str = ""
    mime_type: str = "application/octet-stream"
    size: int | None = None


class FakeByteStreamReader:
    """The rtc.ByteStreamReader surface: `info` and async iteration over chunks."""

    def __init__(self, info: FakeByteStreamInfo) -> None:
        self.info = info
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

    def push(self, chunk: bytes) -> None:
        self._chunks.put_nowait(chunk)

    def end(self) -> None:
        self._chunks.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.get()
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        return None


class FakeByteStreamWriter:
    def __init__(self, readers: list[FakeByteStreamReader]) -> None:
        self._readers = readers

    async def write(self, data: bytes) -> None:
        for reader in self._readers:
            reader.push(bytes(data))

    async def aclose(self) -> None:
        for reader in self._readers:
            reader.end()


@dataclass
class RpcCall:
    caller: str
    destination: str
    method: str
    payload: str


class FakeLocalParticipant:
    def __init__(self, room: FakeRoom, identity: str) -> None:
        self._room = room
        self.identity = identity
        self.kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        self.attributes: dict[str, str] = {}
        self.published: list[FakePublication] = []
        self._rpc_handlers: dict[str, Callable[[rtc.RpcInvocationData], Any]] = {}
        self.track_publications: dict[str, FakePublication] = {}

    async def publish_track(
        self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions | None = None
    ) -> FakePublication:
        pub = FakePublication(track=track, options=options or rtc.TrackPublishOptions())
        self.published.append(pub)
        self.track_publications[pub.sid] = pub
        self._room.emit("local_track_published", pub, track)
        self._room.hub.announce_track(self.identity, pub)
        return pub

    def register_rpc_method(
        self, method: str, handler: Callable[[rtc.RpcInvocationData], Any]
    ) -> None:
        self._rpc_handlers[method] = handler

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
    ) -> str:
        return await self._room.hub.rpc(self.identity, destination_identity, method, payload)

    async def stream_bytes(
        self,
        name: str,
        *,
        topic: str = "",
        attributes: dict[str, str] | None = None,
        destination_identities: list[str] | None = None,
        **_: Any,
    ) -> FakeByteStreamWriter:
        return self._room.hub.open_byte_stream(
            self.identity, name, topic, attributes or {}, destination_identities or []
        )

    async def publish_data(
        self, payload: bytes | str, *, reliable: bool = True, topic: str = "", **_: Any
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self._room.hub.broadcast_data(self.identity, data, topic)

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)


class FakeHub:
    """A tiny in-memory 'server' linking FakeRooms: RPC, byte streams and data packets."""

    def __init__(self) -> None:
        self.rooms: dict[str, FakeRoom] = {}
        self.rpc_calls: list[RpcCall] = []
        self.byte_streams: list[FakeByteStreamInfo] = []  # every stream opened, in order
        self._streams = 0

    def join(self, room: FakeRoom) -> None:
        for other in self.rooms.values():
            other.add_remote(
                FakeRemoteParticipant(
                    identity=room.local_participant.identity, kind=room.local_participant.kind
                )
            )
            room.add_remote(
                FakeRemoteParticipant(
                    identity=other.local_participant.identity, kind=other.local_participant.kind
                ),
                emit=False,
            )
        self.rooms[room.local_participant.identity] = room

    async def rpc(self, caller: str, destination: str, method: str, payload: str) -> str:
        self.rpc_calls.append(RpcCall(caller, destination, method, payload))
        room = self.rooms.get(destination)
        handler = room.local_participant._rpc_handlers.get(method) if room else None
        if handler is None:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD, "unsupported method")
        data = rtc.RpcInvocationData(
            request_id=f"rpc{len(self.rpc_calls)}",
            caller_identity=caller,
            payload=payload,
            response_timeout=10.0,
        )
        result = handler(data)
        if asyncio.iscoroutine(result):
            result = await result
        return str(result)

    def open_byte_stream(
        self,
        sender: str,
        name: str,
        topic: str,
        attributes: dict[str, str],
        destinations: list[str],
    ) -> FakeByteStreamWriter:
        self._streams += 1
        self.byte_streams.append(
            FakeByteStreamInfo(
                stream_id=f"stream{self._streams}",
                topic=topic,
                attributes=dict(attributes),
                name=name,
            )
        )
        readers = []
        for identity in destinations:
            room = self.rooms.get(identity)
            if room is None:
                continue
            info = FakeByteStreamInfo(
                stream_id=f"stream{self._streams}",
                topic=topic,
                attributes=dict(attributes),
                name=name,
            )
            reader = FakeByteStreamReader(info)
            handler = room.byte_stream_handlers.get(topic)
            if handler is not None:
                handler(reader, sender)
                readers.append(reader)
        return FakeByteStreamWriter(readers)

    def announce_track(self, sender: str, publication: FakePublication) -> None:
        """A published track shows up in the other rooms (`track_published`)."""
        for identity, room in self.rooms.items():
            participant = room.remote_participants.get(sender)
            if identity == sender or participant is None:
                continue
            remote = FakeRemotePublication(sid=publication.sid, kind=publication.kind)
            participant.track_publications[remote.sid] = remote
            room.emit("track_published", remote, participant)

    def broadcast_data(self, sender: str, data: bytes, topic: str) -> None:
        for identity, room in self.rooms.items():
            if identity != sender:
                room.receive_data(data, sender=sender, topic=topic)


class FakeRoom(rtc.EventEmitter[str]):
    """The rtc.Room surface the worker uses; drive its events from tests."""

    def __init__(
        self,
        *,
        name: str = "atlas-rt-ses_test00000000",
        identity: str = "agent-atlas",
        metadata: str = "",
        hub: FakeHub | None = None,
        connected: bool = True,
    ) -> None:
        super().__init__()
        self.name = name
        self.metadata = metadata
        self.hub = hub or FakeHub()
        self.local_participant = FakeLocalParticipant(self, identity)
        self.remote_participants: dict[str, FakeRemoteParticipant] = {}
        self.byte_stream_handlers: dict[str, Callable[[Any, str], None]] = {}
        self.text_stream_handlers: dict[str, Callable[[Any, str], None]] = {}
        self._connected = connected
        self.disconnected = False
        self.hub.join(self)

    def isconnected(self) -> bool:
        return self._connected

    @property
    def connection_state(self) -> int:
        return (
            rtc.ConnectionState.CONN_CONNECTED
            if self._connected
            else rtc.ConnectionState.CONN_DISCONNECTED
        )

    async def disconnect(self) -> None:
        self._connected = False
        self.disconnected = True

    def register_byte_stream_handler(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        self.byte_stream_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self.byte_stream_handlers.pop(topic, None)

    def register_text_stream_handler(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        self.text_stream_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self.text_stream_handlers.pop(topic, None)

    # -- driving events from tests ---------------------------------------------------------

    def add_remote(self, participant: FakeRemoteParticipant, *, emit: bool = True) -> None:
        self.remote_participants[participant.identity] = participant
        if emit:
            self.emit("participant_connected", participant)
            self.emit("participant_active", participant)

    def remove_remote(self, identity: str) -> None:
        participant = self.remote_participants.pop(identity)
        self.emit("participant_disconnected", participant)

    def set_metadata(self, metadata: str) -> None:
        old, self.metadata = self.metadata, metadata
        self.emit("room_metadata_changed", old, metadata)

    def set_metadata_json(self, data: dict[str, Any]) -> None:
        self.set_metadata(json.dumps(data))

    def receive_data(self, data: bytes, *, sender: str, topic: str = "") -> None:
        participant = self.remote_participants.get(sender)
        packet = rtc.DataPacket(
            data=data,
            kind=rtc.DataPacketKind.KIND_RELIABLE,
            participant=participant,
            topic=topic,
        )
        self.emit("data_received", packet)


class FakeRoomAdmin(RoomAdmin):
    """Records delete_room calls instead of calling the LiveKit server API."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete_room(self, room_name: str) -> None:
        self.deleted.append(room_name)

    async def aclose(self) -> None:
        return None
