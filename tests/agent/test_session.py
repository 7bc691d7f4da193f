"""LiveSession: session end (max duration, empty room) with injected time, and face swaps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from agent.faces import FileFaceSource
from agent.metadata import FaceRef
from agent.runner import create_avatar_runner
from agent.session import LiveSession
from agent.video_generator import LipSyncVideoGenerator
from renderer import FaceAsset, RendererOptions
from tests.agent.fakes import FakeRemoteParticipant, FakeRoom, FakeRoomAdmin
from tests.fake_clock import FakeClock

SESSION = "ses_test00000000"
CLIENT = f"user-{SESSION}"
HANG_S = 30.0  # a guard against hanging, never a timing assertion


class RecordingFileFaceSource(FileFaceSource):
    """The real local face store, remembering which keys were fetched."""

    def __init__(self, *, root: Path) -> None:
        super().__init__(root=root, max_bytes=10_000_000)
        self.fetched: list[str | None] = []

    async def fetch(self, ref: FaceRef) -> bytes:
        self.fetched.append(ref.storage_key)
        return await super().fetch(ref)


class Harness:
    def __init__(self, generator: LipSyncVideoGenerator, tmp_path: Path, **kw: float) -> None:
        self.room = FakeRoom(name=f"atlas-rt-{SESSION}")
        self.admin = FakeRoomAdmin()
        self.clock = FakeClock()
        self.faces = RecordingFileFaceSource(root=tmp_path)
        self.stopped = 0
        self.session = LiveSession(
            room=self.room,  # type: ignore[arg-type]
            session_id=SESSION,
            client_identity=CLIENT,
            generator=generator,
            face_source=self.faces,
            room_admin=self.admin,
            face_version=1,
            max_duration_s=kw.get("max_duration_s", 60.0),
            empty_timeout_s=kw.get("empty_timeout_s", 10.0),
            on_end=self._stop,
            clock=self.clock,
        )
        self.task = asyncio.create_task(self.session.run())

    async def started(self) -> Harness:
        await self.clock.advance(0)  # lets run() take its start time at t=0
        return self

    async def _stop(self) -> None:
        self.stopped += 1

    def join(self) -> None:
        self.room.add_remote(FakeRemoteParticipant(identity=CLIENT))

    def leave(self) -> None:
        self.room.remove_remote(CLIENT)


async def test_ends_at_max_duration_exactly_once(
    generator: LipSyncVideoGenerator, tmp_path: Path
) -> None:
    h = await Harness(generator, tmp_path, max_duration_s=30.0).started()
    h.join()
    await h.clock.advance(29.9)
    assert not h.task.done()
    await h.clock.advance(0.1)
    summary = await asyncio.wait_for(h.task, HANG_S)
    assert summary.reason == "max_duration" and summary.duration_s == pytest.approx(30.0)
    assert h.admin.deleted == [h.room.name] and h.stopped == 1
    h.session.request_end("shutdown")  # a later end request changes nothing
    await asyncio.sleep(0)
    assert h.admin.deleted == [h.room.name]


async def test_ends_when_the_client_never_joins(
    generator: LipSyncVideoGenerator, tmp_path: Path
) -> None:
    h = await Harness(generator, tmp_path, empty_timeout_s=10.0).started()
    await h.clock.advance(9.9)
    assert not h.task.done()
    await h.clock.advance(0.1)
    summary = await asyncio.wait_for(h.task, HANG_S)
    assert summary.reason == "client_never_joined"
    assert h.admin.deleted == [h.room.name]


async def test_ends_when_the_client_has_left_for_the_timeout(
    generator: LipSyncVideoGenerator, tmp_path: Path
) -> None:
    h = await Harness(generator, tmp_path, empty_timeout_s=10.0).started()
    await h.clock.advance(3)
    h.join()
    await h.clock.advance(10)
    h.leave()
    await h.clock.advance(8)  # t=21: away for 8 s, then back (a reconnect)
    h.join()
    await h.clock.advance(20)
    assert not h.task.done()
    h.leave()  # t=41
    await h.clock.advance(9.9)
    assert not h.task.done()
    await h.clock.advance(0.1)
    summary = await asyncio.wait_for(h.task, HANG_S)
    assert summary.reason == "client_left" and summary.duration_s == pytest.approx(51.0)
    assert h.admin.deleted == [h.room.name] and h.stopped == 1


async def test_a_pipeline_failure_ends_the_session_with_reason_error(
    face: FaceAsset, options: RendererOptions, tmp_path: Path
) -> None:
    """The renderer raising mid-session ends the session at once (reason "error"), with the
    room deleted and the bill stopped there; nothing waits for the client to leave."""
    gen = LipSyncVideoGenerator(face=face, options=options, clock=FakeClock(advance_on_wait=True))
    h = await Harness(gen, tmp_path, max_duration_s=600.0).started()
    h.join()
    await h.clock.advance(5)
    it = gen.__aiter__()
    await anext(it)

    def exploding_step(allow_idle: bool) -> None:
        raise RuntimeError("renderer exploded")

    gen._step = exploding_step  # type: ignore[method-assign]
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(it), HANG_S)
    summary = await asyncio.wait_for(h.task, HANG_S)
    assert summary.reason == "error" and summary.duration_s == pytest.approx(5.0)
    assert h.admin.deleted == [h.room.name] and h.stopped == 1
    await gen.aclose()


async def test_of_two_avatars_of_one_session_the_later_identity_leaves_quietly(
    generator: LipSyncVideoGenerator, tmp_path: Path
) -> None:
    """Another job of this session in the room (a redispatch and a late assignment): the job
    whose identity sorts after the other's ends as "superseded", deleting nothing."""
    h = await Harness(generator, tmp_path).started()
    h.join()
    mine = h.room.local_participant.identity
    agent_kind = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
    h.room.add_remote(FakeRemoteParticipant(identity=mine + "z", kind=agent_kind))
    await h.clock.advance(1)
    assert not h.task.done()  # the other one sorts after us: it leaves, we stay
    # another kind of agent (not ours) sorting first changes nothing
    h.room.add_remote(
        FakeRemoteParticipant(
            identity="agent-A0", kind=agent_kind, attributes={"lk.agent.name": "someone-else"}
        )
    )
    await h.clock.advance(1)
    assert not h.task.done()
    h.room.add_remote(FakeRemoteParticipant(identity="agent-AA", kind=agent_kind))
    summary = await asyncio.wait_for(h.task, HANG_S)
    assert summary.reason == "superseded"
    assert h.admin.deleted == [] and h.stopped == 1


async def test_face_swap_via_room_metadata_on_the_same_tracks(
    face: FaceAsset,
    options: RendererOptions,
    face_bytes: bytes,
    mirrored_face_bytes: bytes,
    tmp_path: Path,
) -> None:
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "v2.png").write_bytes(mirrored_face_bytes)
    (tmp_path / "faces" / "v1.jpg").write_bytes(face_bytes)
    generator = LipSyncVideoGenerator(face=face, options=options)
    h = await Harness(generator, tmp_path).started()
    h.join()
    runner = create_avatar_runner(
        h.room,  # type: ignore[arg-type]
        audio_recv=_SilentReceiver(),
        generator=generator,
    )
    await runner.start()
    video = await _published_video(h.room)
    received: list[np.ndarray] = []
    arrived = asyncio.Event()

    async def read() -> None:
        stream = rtc.VideoStream(video, format=rtc.VideoBufferType.RGB24)
        try:
            async for event in stream:
                received.append(np.frombuffer(event.frame.data, np.uint8).copy())
                arrived.set()
        finally:
            await stream.aclose()

    async def until_received(count: int) -> None:
        async with asyncio.timeout(HANG_S):
            while len(received) < count:
                arrived.clear()
                await arrived.wait()

    reader = asyncio.create_task(read())
    try:
        await until_received(5)  # the old face is on screen
        old_count = len(received)
        h.room.set_metadata_json({"face": {"storage_key": "faces/v2.png", "version": 2}})
        async with asyncio.timeout(HANG_S):
            while h.session.face_version != 2:  # noqa: ASYNC110 (polling a plain attribute)
                await asyncio.sleep(0.01)
        swapped_at = len(received)
        # a stale version (and an unchanged one) is ignored, never fetched
        h.room.set_metadata_json({"face": {"storage_key": "faces/v1.jpg", "version": 1}})
        h.room.set_metadata_json({"face": {"storage_key": "faces/missing.png", "version": 2}})
        # the crossfade (0.25 s, ~7 frames) and then the new face at rest: 20 more frames
        await until_received(swapped_at + 20)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        h.session.request_end("shutdown")
        await h.task
        await runner.aclose()
        await generator.aclose()

    assert len(h.room.local_participant.published) == 2, "no re-publish"
    assert h.session.face_version == 2 and h.session.face_swaps == 1
    assert h.faces.fetched == ["faces/v2.png"]
    new_face = FaceAsset.prepare(mirrored_face_bytes, options=options).image.reshape(-1)

    def distance(frame: np.ndarray, ref: np.ndarray) -> float:
        return float(np.abs(frame.astype(np.int16) - ref).mean())

    old_face = face.image.reshape(-1)
    assert distance(received[old_count - 1], old_face) < 3
    assert distance(received[-1], new_face) < 3
    # the same video track carried the frames through the swap (gaps in time are measured
    # against a real server in the end-to-end suite, not here)


class _SilentReceiver(rtc.EventEmitter[str]):
    """An AudioReceiver that never speaks (the face swap needs no audio)."""

    async def start(self) -> None:
        return None

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        return None

    def notify_playback_started(self) -> None:
        return None

    def __aiter__(self) -> _SilentReceiver:
        return self

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.Event().wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        return None


async def _published_video(room: FakeRoom) -> rtc.LocalVideoTrack:
    published = asyncio.Event()
    room.on("local_track_published", lambda *_: published.set())
    while True:
        for pub in room.local_participant.published:
            if isinstance(pub.track, rtc.LocalVideoTrack):
                return pub.track
        published.clear()
        await published.wait()
