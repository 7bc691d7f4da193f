"""Scenario 10, plugin: a third-party LiveKit agent (a real AgentSession, its entrypoint named
agent.py) uses our AvatarSession, on a real livekit-server.

Processes: livekit-server; our worker (`atlas agent start`, the face in its file store); the
sending agent, tests/e2e/plugin_agent/agent.py, run from its own directory as its author would
(`python agent.py start`), its LLM and TTS being livekit-plugins-openai against the local fake
(tests/e2e/openai_fake.py). A client joins the agent's room and drives the agent by RPC; the
agent reports what its audio output hears from the avatar (see agent.py). It shows:

1. `from atlas.plugin import AvatarSession` works from a file named agent.py, and the avatar's
   video appears; the room (LiveKit's ListParticipants) holds exactly one participant of ours:
   the worker's job, joined as the avatar, publishing its video and audio on behalf of the agent,
   next to the agent and the client (a silent job participant beside the avatar is the one
   UIs picking the first agent participant latch onto);
2. lk.playback_started and lk.playback_finished reach the sender for a speech that plays;
3. a speech interrupted before any of it played is reported as skipped: lk.playback_finished
   (interrupted, position 0) with no lk.playback_started, and no assistant message is kept;
4. when the avatar ends (its max duration), the agent is not left mute: its next speech is
   heard on its own audio track;
5. the worker's job connects (no livekit-agents "not connected" warning over the session).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from livekit import api, rtc

from atlas import plugin
from tests.e2e.conversation_stack import HANG_S, Listener, base_env, start_worker, wait_for_log
from tests.e2e.openai_fake import SECONDS_PER_CHAR, FakeOpenAI
from tests.e2e.stack import poll
from tests.livekit_server import LiveKitServer
from tests.processes import Procs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SENDER_DIR = Path(__file__).resolve().parent / "plugin_agent"
ROOM = "plugin-e2e"
CLIENT = "e2e-client"
AVATAR = "atlas-avatar-agent"  # atlas.plugin's default avatar identity
AGENT_NAME_ATTR = "lk.agent.name"  # livekit-agents sets it on each job's participant
AVATAR_MAX_S = 20
FIRST = "This is the agent talking through its avatar."
SKIPPED = "STALL this speech is cut before a word of it is heard."
LAST = "The avatar has gone, and I can still be heard."
NOT_CONNECTED = "The room connection was not established"


@dataclass
class Processes:
    procs: Procs
    worker: subprocess.Popen[bytes]
    sender: subprocess.Popen[bytes]


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture
def processes(
    tmp_path: Path, livekit_server: LiveKitServer, fake_openai: FakeOpenAI
) -> Iterator[Processes]:
    env = base_env(tmp_path, livekit_server)
    faces = tmp_path / "data" / "storage" / "faces"
    faces.mkdir(parents=True)
    shutil.copy(FIXTURES / "face.jpg", faces / "e2e.jpg")
    # killed at the end: a SIGTERM'd worker drains its session, which waits out the sending
    # agent's empty timeout (20 s of teardown); test_worker_shutdown covers the drain
    procs = Procs(tmp_path, graceful_stop=False)
    try:
        worker = start_worker(procs, env)
        sender_env = {
            **env,
            **fake_openai.env(),
            "E2E_FACE_KEY": "faces/e2e.jpg",
            "E2E_AVATAR_MAX_S": str(AVATAR_MAX_S),
        }
        log_path = tmp_path / "sender.log"
        with log_path.open("wb") as log:
            # from its own directory, as its author runs it: `import agent` is this file there
            sender = subprocess.Popen(
                [sys.executable, "agent.py", "start"],
                cwd=SENDER_DIR,
                env=sender_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        procs.running.append(sender)
        procs.logs[sender.pid] = log_path
        wait_for_log(procs, sender, "registered worker")
        yield Processes(procs, worker, sender)
    finally:
        procs.stop_all()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    client = Listener()
    yield client
    await client.aclose()


def client_token(server: LiveKitServer) -> str:
    return (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(CLIENT)
        .with_grants(api.VideoGrants(room_join=True, room=ROOM))
        .to_jwt()
    )


async def list_participants(server: LiveKitServer) -> dict[str, api.ParticipantInfo]:
    async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lkapi:
        listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room=ROOM))
    return {p.identity: p for p in listed.participants}


async def the_avatar_publishes(server: LiveKitServer) -> dict[str, api.ParticipantInfo]:
    """The room's participants as the server lists them, once the avatar's video and audio are
    both published (polled: the two publications are not atomic)."""

    async def listed() -> dict[str, api.ParticipantInfo] | None:
        room = await list_participants(server)
        avatar = room.get(AVATAR)
        kinds = {t.type for t in avatar.tracks} if avatar is not None else set()
        return room if {api.TrackType.AUDIO, api.TrackType.VIDEO} <= kinds else None

    return await poll(listed, limit_s=HANG_S, what="the avatar publishes video and audio")


async def test_a_third_party_agent_speaks_through_our_avatar(
    processes: Processes,
    livekit_server: LiveKitServer,
    fake_openai: FakeOpenAI,
    listener: Listener,
) -> None:
    await listener.join(livekit_server.url, client_token(livekit_server))
    async with api.LiveKitAPI(
        livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
    ) as lkapi:
        await lkapi.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name="e2e-sender", room=ROOM)
        )
    await listener.wait_for(lambda: bool(listener.events("ready")), "the sending agent is up")

    # -- 1. the avatar's video appears -------------------------------------------------------
    await listener.wait_for(lambda: listener.video_frames >= 25, "the avatar's video")
    avatar_started_at = time.monotonic()
    # the avatar publishes on behalf of the sending agent, and it is the only participant of
    # ours: the worker's job joined as the avatar (lk.publish_on_behalf through request_fnc)
    room = await the_avatar_publishes(livekit_server)
    avatar = room[AVATAR]
    sender = avatar.attributes["lk.publish_on_behalf"]
    assert sender and sender != AVATAR
    assert set(room) == {CLIENT, sender, AVATAR}, f"participants: {sorted(room)}"
    ours = [i for i, p in room.items() if p.attributes.get(AGENT_NAME_ATTR) == plugin.AGENT_NAME]
    assert ours == [AVATAR], f"our participants: {ours}"
    agents = {i for i, p in room.items() if p.kind == api.ParticipantInfo.Kind.AGENT}
    assert agents == {sender, AVATAR}

    async def rpc(method: str, text: str) -> None:
        reply = await listener.room.local_participant.perform_rpc(
            destination_identity=sender, method=method, payload=text
        )
        assert reply == "ok"

    def done(label: str) -> list[dict[str, object]]:
        return [e for e in listener.events("speech_done") if e["label"] == label]

    # -- 2. a speech that plays: started, then finished, reach the sender ---------------------
    await rpc("e2e.say", FIRST)
    await listener.wait_for(lambda: bool(done(FIRST)), "the first speech is over")
    assert [e["event"] for _, e in listener.data if str(e.get("event")).startswith("playback")] == [
        "playback_started",
        "playback_finished",
    ]
    (finished,) = listener.events("playback_finished")
    assert finished["interrupted"] is False
    assert float(finished["position"]) >= 0.8 * len(FIRST) * SECONDS_PER_CHAR  # type: ignore[arg-type]
    (first,) = done(FIRST)
    assert first["messages"] == [{"interrupted": False, "text": FIRST}]
    assert listener.voice_seconds() > 0  # the client heard the avatar say it

    # -- 3. interrupted before it played: skipped, not partial -------------------------------
    await rpc("e2e.say_then_interrupt", SKIPPED)
    await listener.wait_for(lambda: bool(done(SKIPPED)), "the interrupted speech is over")
    fake_openai.release_stalls()
    assert len(listener.events("playback_started")) == 1, "a started for audio never played"
    second = listener.events("playback_finished")[1]
    assert second["interrupted"] is True and second["position"] == 0
    (skipped,) = done(SKIPPED)
    assert skipped["interrupted"] is True and skipped["messages"] == []

    # -- 4. the avatar ends; the agent is not left mute --------------------------------------
    await listener.wait_for(
        lambda: AVATAR not in listener.room.remote_participants, "the avatar leaves"
    )
    assert time.monotonic() - avatar_started_at < AVATAR_MAX_S + 10
    await listener.wait_for(
        lambda: any(pub.kind == rtc.TrackKind.KIND_AUDIO for pub in listener.publications(sender)),
        "the agent publishes its own voice",
    )
    # Published is not yet subscribed: audio sent before the client's subscription is set up
    # is never heard, so the agent speaks once the client receives the track (silence flows).
    await listener.wait_for(
        lambda: listener.audio_frames.get(sender, 0) >= 10, "the client receives the agent's track"
    )
    said_at = time.monotonic()
    await rpc("e2e.say", LAST)
    await listener.wait_for(lambda: bool(done(LAST)), "the last speech is over")
    (last,) = done(LAST)
    assert last["messages"] == [{"interrupted": False, "text": LAST}]
    await listener.wait_for(
        lambda: listener.voice_seconds(since=said_at) >= 0.5 * len(LAST) * SECONDS_PER_CHAR,
        "the agent's own voice heard",
    )

    # -- 5. the worker's job connected -------------------------------------------------------
    assert NOT_CONNECTED not in processes.procs.log(processes.worker)
