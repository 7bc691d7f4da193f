"""Plugin mode: the LiveKit avatar protocol, end to end in process.

The sending agent's side is livekit-agents' own DataStreamAudioOutput; the avatar's side is the
worker's wiring (agent.runner.create_protocol_runner: DataStreamAudioReceiver -> PlaybackGuard
-> AvatarRunner -> LipSyncVideoGenerator at 128 px, real AudioSource/VideoSource/
AVSynchronizer). Two FakeRooms on one FakeHub carry the RPCs and byte streams, recording the
exact method names, topics and attributes. AvatarSession's dispatch goes through the real
livekit-api client to the fake LiveKit server API (tests/fakes/livekit_server.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import DataStreamAudioOutput, DataStreamAudioReceiver
from livekit.agents.voice.io import PlaybackFinishedEvent

from agent.config import AGENT_NAME
from agent.metadata import DispatchMetadata, avatar_participant, parse_dispatch_metadata
from agent.playback import PlaybackGuard
from agent.runner import create_avatar_runner, create_protocol_runner
from agent.video_generator import LipSyncVideoGenerator
from atlas import plugin
from atlas.plugin import AtlasAvatarError, AvatarSession
from renderer import FaceAsset, RendererOptions
from tests.agent.audio_support import audio_frames, tone_bursts
from tests.agent.fakes import FakeHub, FakeRoom
from tests.fakes.livekit_server import FakeLiveKit

AGENT = "agent-AJ_test"
AVATAR = "atlas-avatar-agent"
ROOM = "support-room-1"
HANG_S = 30.0  # a guard against hanging, never a timing assertion


@dataclass
class Link:
    hub: FakeHub
    agent_room: FakeRoom
    avatar_room: FakeRoom
    output: DataStreamAudioOutput
    generator: LipSyncVideoGenerator
    started: asyncio.Queue[Any]
    finished: asyncio.Queue[PlaybackFinishedEvent]

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [
            json.loads(c.payload) if c.payload else {}
            for c in self.hub.rpc_calls
            if c.method == method
        ]

    def methods(self) -> list[str]:
        return [c.method for c in self.hub.rpc_calls]

    async def say(self, pcm: Any, rate: int) -> None:
        for frame in audio_frames(pcm, rate, chunk_ms=20):
            await self.output.capture_frame(frame)
        self.output.flush()

    async def next_finished(self) -> PlaybackFinishedEvent:
        return await asyncio.wait_for(self.finished.get(), HANG_S)


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(int(HANG_S / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never happened")


def segment(options: RendererOptions, seconds: float) -> Any:
    return tone_bursts(options.sample_rate, seconds=seconds, on_s=seconds, off_s=0.1)


@pytest.fixture
def fake_livekit() -> Iterator[FakeLiveKit]:
    server = FakeLiveKit().start()
    yield server
    server.close()


async def _link(
    face: FaceAsset, options: RendererOptions, *, guarded: bool
) -> tuple[Link, Any, PlaybackGuard | None]:
    hub = FakeHub()
    agent_room = FakeRoom(name=ROOM, identity=AGENT, hub=hub)
    avatar_room = FakeRoom(name=ROOM, identity=AVATAR, hub=hub)
    generator = LipSyncVideoGenerator(face=face, options=options)
    guard: PlaybackGuard | None = None
    if guarded:  # exactly what the worker runs in plugin mode
        runner, guard = create_protocol_runner(
            avatar_room,  # type: ignore[arg-type]
            generator=generator,
            sender_identity=AGENT,
        )
    else:  # livekit-agents' parts alone
        receiver = DataStreamAudioReceiver(avatar_room, sender_identity=AGENT)  # type: ignore[arg-type]
        runner = create_avatar_runner(
            avatar_room,  # type: ignore[arg-type]
            audio_recv=receiver,
            generator=generator,
        )
    await runner.start()
    output = DataStreamAudioOutput(
        agent_room,  # type: ignore[arg-type]
        destination_identity=AVATAR,
        sample_rate=options.sample_rate,
        wait_remote_track=rtc.TrackKind.KIND_VIDEO,
        wait_playback_start=True,
        clear_buffer_timeout=None,  # no fallback: only the avatar's answer can end a playout
    )
    link = Link(hub, agent_room, avatar_room, output, generator, asyncio.Queue(), asyncio.Queue())
    output.on("playback_started", link.started.put_nowait)
    output.on("playback_finished", link.finished.put_nowait)
    return link, runner, guard


@pytest.fixture
async def link(face: FaceAsset, options: RendererOptions) -> AsyncIterator[Link]:
    link, runner, _guard = await _link(face, options, guarded=True)
    yield link
    await runner.aclose()
    await link.generator.aclose()


async def test_segments_queued_back_to_back_each_get_playback_finished(
    link: Link, options: RendererOptions
) -> None:
    # TTS runs faster than real time: the second segment is queued before the first plays out
    await link.say(segment(options, 0.6), options.sample_rate)
    await link.say(segment(options, 0.3), options.sample_rate)
    first, second = await link.next_finished(), await link.next_finished()
    assert not first.interrupted and not second.interrupted
    assert first.playback_position == pytest.approx(0.6, abs=0.041)  # whole frames
    assert second.playback_position == pytest.approx(0.3, abs=0.041)
    await asyncio.wait_for(link.output.wait_for_playout(), HANG_S)  # the sender is not wedged

    # the protocol's exact names: one byte stream per segment on lk.audio_stream ...
    assert [s.topic for s in link.hub.byte_streams] == ["lk.audio_stream"] * 2
    for stream in link.hub.byte_streams:
        assert stream.attributes == {"sample_rate": str(options.sample_rate), "num_channels": "1"}
    # ... and started/finished RPCs from the avatar to the agent, one of each per segment
    avatar_calls = [c for c in link.hub.rpc_calls if c.caller == AVATAR]
    assert {c.destination for c in avatar_calls} == {AGENT}
    assert link.methods() == ["lk.playback_started", "lk.playback_finished"] * 2
    for payload in link.calls("lk.playback_finished"):
        assert {"playback_position", "interrupted"} <= set(payload)
        assert payload["interrupted"] is False
    # the avatar published its video and audio tracks
    kinds = sorted(p.track.kind for p in link.avatar_room.local_participant.published)
    assert kinds == [rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO]


async def test_without_the_guard_avatar_runner_misses_the_second_playback_finished(
    face: FaceAsset, options: RendererOptions
) -> None:
    """The upstream bug the guard exists for (livekit-agents 1.8.9): if this starts failing,
    AvatarRunner has been fixed, and the guard is merely redundant there."""
    link, runner, _ = await _link(face, options, guarded=False)
    try:
        await link.say(segment(options, 0.6), options.sample_rate)
        await link.say(segment(options, 0.3), options.sample_rate)
        await link.next_finished()
        stats = link.generator.stats
        await eventually(lambda: stats.segments == 2)  # the renderer ended both segments
        frames = stats.frames
        await eventually(lambda: stats.frames >= frames + 3)  # the runner moved on past the end
        # a marker through the receiver's ordered RPC queue: once it has reached the agent,
        # every notification the runner queued before it has too
        marker = 123.0
        runner._audio_recv.notify_playback_finished(playback_position=marker, interrupted=False)
        finishes = lambda: link.calls("lk.playback_finished")  # noqa: E731
        await eventually(lambda: any(c["playback_position"] == marker for c in finishes()))
        real = [c for c in finishes() if c["playback_position"] != marker]
        # two segments captured, one finished: the sending agent's wait_for_playout would never
        # have returned without our marker
        assert len(real) == 1 and link.output.captured_playout_segments == 2
    finally:
        await runner.aclose()
        await link.generator.aclose()


async def test_clear_buffer_mid_segment_is_answered_then_speech_goes_on(
    link: Link, options: RendererOptions
) -> None:
    await link.say(segment(options, 3.0), options.sample_rate)
    await link.say(segment(options, 1.0), options.sample_rate)  # queued behind it
    await asyncio.wait_for(link.started.get(), HANG_S)  # the first is playing
    link.output.clear_buffer()
    first, second = await link.next_finished(), await link.next_finished()
    assert first.interrupted and second.interrupted
    assert 0 < first.playback_position < 3.0
    assert second.playback_position == 0.0
    methods = link.methods()
    clear_at = methods.index("lk.clear_buffer")
    assert methods[clear_at + 1 :].count("lk.playback_finished") == 2
    assert all(p["interrupted"] for p in link.calls("lk.playback_finished"))
    # not wedged: the next reply plays and is reported like any other
    await link.say(segment(options, 0.3), options.sample_rate)
    after = await link.next_finished()
    assert not after.interrupted and after.playback_position == pytest.approx(0.3, abs=0.041)


async def test_a_clear_with_nothing_playing_is_still_answered(link: Link) -> None:
    answered: asyncio.Queue[str] = asyncio.Queue()

    def on_finished(data: rtc.RpcInvocationData) -> str:
        answered.put_nowait(data.payload)
        return "ok"

    link.agent_room.local_participant.register_rpc_method("lk.playback_finished", on_finished)
    reply = await link.agent_room.local_participant.perform_rpc(
        destination_identity=AVATAR, method="lk.clear_buffer", payload=""
    )
    assert reply == "ok"
    payload = json.loads(await asyncio.wait_for(answered.get(), HANG_S))
    assert payload["playback_position"] == 0.0 and payload["interrupted"] is True


async def test_the_last_playback_finished_reaches_the_sender_when_the_avatar_closes(
    face: FaceAsset, options: RendererOptions
) -> None:
    """The session ends (the worker interrupts, then closes the runner at once): the answer
    queued for the sender must go out before the receiver closes, or the agent waits for ever."""
    link, runner, guard = await _link(face, options, guarded=True)
    try:
        await link.say(segment(options, 3.0), options.sample_rate)
        await asyncio.wait_for(link.started.get(), HANG_S)
        assert guard is not None
        deliver = link.hub.rpc

        async def over_the_network(*args: Any) -> str:
            await asyncio.sleep(0.05)  # an RPC takes a round trip: it is in flight at close
            return await deliver(*args)

        link.hub.rpc = over_the_network  # type: ignore[method-assign]
        await guard.interrupt()
        await runner.aclose()
        assert link.methods().count("lk.playback_finished") == 1
        finished = link.finished.get_nowait()
        assert finished.interrupted and 0 < finished.playback_position < 3.0
    finally:
        await runner.aclose()
        await link.generator.aclose()


# -- AvatarSession ----------------------------------------------------------------------------


async def test_avatar_session_dispatches_the_worker_and_routes_audio(
    fake_livekit: FakeLiveKit,
) -> None:
    hub = FakeHub()
    agent_room = FakeRoom(name=ROOM, identity=AGENT, hub=hub)
    session: AgentSession[Any] = AgentSession()
    avatar = AvatarSession(
        face_url="https://example.com/face.jpg",
        max_duration_seconds=900,
        empty_timeout_seconds=20,
        livekit_url=fake_livekit.url,
        api_key=fake_livekit.api_key,
        api_secret=fake_livekit.api_secret,
    )
    await avatar.start(session, agent_room)  # type: ignore[arg-type]
    try:
        (call,) = fake_livekit.calls_of("CreateDispatch")
        assert call.request.agent_name == "atlas-avatar" and call.request.room == ROOM
        meta = parse_dispatch_metadata(call.request.metadata)  # the worker's own contract
        assert meta.mode == "plugin" and meta.session_id == avatar.session_id
        assert meta.face.url == "https://example.com/face.jpg" and meta.face.version == 1
        assert meta.max_duration_seconds == 900
        assert meta.options.empty_timeout_seconds == 20
        assert meta.options.sender_identity == AGENT
        assert meta.options.avatar_identity == AVATAR
        # no token, no credential: the job joins as the avatar with the server's own token
        assert meta.options.avatar_token is None
        assert fake_livekit.api_secret not in call.request.metadata
        # ... the participant the worker's job accepts as (agent/admission.py)
        joins_as = avatar_participant(call.request.metadata)
        assert joins_as is not None
        assert joins_as.identity == AVATAR and joins_as.name == "Atlas avatar"
        assert joins_as.attributes == {"lk.publish_on_behalf": AGENT}

        output = session.output.audio
        assert isinstance(output, DataStreamAudioOutput)
        assert output._destination_identity == AVATAR
        assert output._wait_remote_track == rtc.TrackKind.KIND_VIDEO  # no words before the face
        assert output._wait_playback_start  # we send real lk.playback_started
    finally:
        await avatar.aclose()


async def test_avatar_session_refuses_bad_configuration(
    fake_livekit: FakeLiveKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AtlasAvatarError, match="exactly one"):
        AvatarSession()
    with pytest.raises(AtlasAvatarError, match="exactly one"):
        AvatarSession(face_url="https://a/f.jpg", face_storage_key="faces/f.jpg")
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    room = FakeRoom(name=ROOM, identity=AGENT)
    with pytest.raises(AtlasAvatarError, match="LIVEKIT_URL"):
        await AvatarSession(face_url="https://a/f.jpg").start(AgentSession(), room)  # type: ignore[arg-type]
    fake_livekit.fail_next("CreateDispatch", status=404, code="not_found")
    avatar = AvatarSession(
        face_storage_key="faces/f.jpg",
        livekit_url=fake_livekit.url,
        api_key=fake_livekit.api_key,
        api_secret=fake_livekit.api_secret,
    )
    with pytest.raises(AtlasAvatarError, match="dispatching") as err:
        await avatar.start(AgentSession(), room)  # type: ignore[arg-type]
    assert fake_livekit.api_secret not in str(err.value)
    await avatar.aclose()
    # joining as the agent's own identity would disconnect the agent
    same = AvatarSession(face_url="https://a/f.jpg", avatar_identity=AGENT, dispatcher=Recorder())
    with pytest.raises(AtlasAvatarError, match="avatar_identity"):
        await same.start(AgentSession(), room)  # type: ignore[arg-type]
    await same.aclose()


class Recorder:
    """An AgentDispatcher that records the dispatches it is asked for."""

    def __init__(self) -> None:
        self.dispatches: list[dict[str, str]] = []

    async def create_dispatch(self, *, room: str, agent_name: str, metadata: str) -> None:
        self.dispatches.append({"room": room, "agent_name": agent_name, "metadata": metadata})

    async def aclose(self) -> None:
        return None


async def test_avatar_session_with_its_own_dispatcher_needs_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The credentials serve CreateDispatch only: a caller that dispatches some other way (its
    own service, holding the key) gives the plugin no key at all."""
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    recorder = Recorder()
    avatar = AvatarSession(face_url="https://a/f.jpg", dispatcher=recorder)
    await avatar.start(AgentSession(), FakeRoom(name=ROOM, identity=AGENT))  # type: ignore[arg-type]
    try:
        (dispatch,) = recorder.dispatches
        assert dispatch["room"] == ROOM and dispatch["agent_name"] == AGENT_NAME
        joins_as = avatar_participant(dispatch["metadata"])
        assert joins_as is not None and joins_as.identity == AVATAR
    finally:
        await avatar.aclose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"face_url": "ftp://a/f.jpg"}, "face_url"),
        ({"face_url": ""}, "face_url"),
        ({"face_storage_key": " "}, "face_storage_key"),
        ({"face_url": "https://a/f.jpg", "avatar_identity": ""}, "avatar_identity"),
        ({"face_url": "https://a/f.jpg", "max_duration_seconds": 0}, "max_duration"),
        ({"face_url": "https://a/f.jpg", "max_duration_seconds": 86401}, "max_duration"),
        ({"face_url": "https://a/f.jpg", "max_duration_seconds": float("nan")}, "max_duration"),
        ({"face_url": "https://a/f.jpg", "max_duration_seconds": "60"}, "max_duration"),
        ({"face_url": "https://a/f.jpg", "empty_timeout_seconds": -1}, "empty_timeout"),
        ({"face_url": "https://a/f.jpg", "empty_timeout_seconds": True}, "empty_timeout"),
    ],
)
def test_avatar_session_refuses_what_the_worker_would_refuse_before_any_dispatch(
    kwargs: dict[str, Any], message: str
) -> None:
    """A misconfigured AvatarSession fails in the caller's process with a clear error, never as
    a junk dispatch; what it accepts the worker's own contract accepts too."""
    with pytest.raises(AtlasAvatarError, match=message):
        AvatarSession(**kwargs)


def test_the_plugins_limits_are_the_workers() -> None:
    limit = DispatchMetadata.model_fields["max_duration_seconds"].metadata
    assert any(getattr(m, "le", None) == plugin.MAX_DURATION_LIMIT_S for m in limit)


def test_the_plugin_names_the_worker_it_dispatches() -> None:
    assert plugin.AGENT_NAME == AGENT_NAME


def test_an_entrypoint_named_agent_py_can_import_the_plugin(tmp_path: Path) -> None:
    """LiveKit's quickstarts call the entrypoint agent.py: there `import agent` is that file."""
    script = tmp_path / "agent.py"
    script.write_text(
        "import agent, atlas.plugin\n"
        "assert agent.__file__ == __file__, 'the script should shadow the project package'\n"
        "if __name__ == '__main__':\n"
        "    print(atlas.plugin.AvatarSession.__name__)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "AvatarSession"
