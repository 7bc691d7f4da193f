"""A third-party LiveKit agent that uses our avatar, laid out as LiveKit's quickstarts are: its
entrypoint file is named `agent.py` (so `import agent` here finds this file, never our package).

Run: `python agent.py start` from this directory, with LIVEKIT_* and OPENAI_BASE_URL set (the
LLM and TTS are livekit-plugins-openai against tests/e2e/openai_fake.py), plus
E2E_FACE_KEY (a storage key in the avatar worker's face store) and E2E_AVATAR_MAX_S.

The test drives it by RPC from its client participant:
- `e2e.say` (payload: text): say it;
- `e2e.say_then_interrupt` (payload: text): say it, and interrupt as soon as its first audio has
  been streamed to the avatar (before the avatar can have played any of it). The avatar is
  cleared first, then the speech interrupted: an interruption alone ends the audio stream
  before it sends the clear, and an avatar that gets a stream's end plays its tail at once, so
  under load the clear could come after that tail had played (reported, rightly, as started).
It reports to the room as data packets (JSON, topic `e2e`): `playback_started` and
`playback_finished` as its audio output hears them from the avatar (lk.playback_started /
lk.playback_finished), and `speech_done` with the assistant messages each speech left in the
chat history (none: the speech was skipped; `interrupted: true`: it was cut short).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AutoSubscribe,
    JobContext,
    cli,
)
from livekit.agents.voice.avatar import DataStreamAudioOutput
from livekit.agents.voice.room_io import RoomOptions
from livekit.plugins import openai

from atlas.plugin import AvatarSession

logger = logging.getLogger("e2e-sender")
AGENT_NAME = "e2e-sender"
HANG_S = 60.0

# load 0: livekit-agents' default CPU-based load would refuse jobs on a busy test machine
server = AgentServer(port=0, num_idle_processes=1, load_fnc=lambda *_: 0.0)


@server.rtc_session(agent_name=AGENT_NAME)
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    session: AgentSession[None] = AgentSession(
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=openai.TTS(model="tts-1", response_format="pcm"),
        # as atlas.plugin advises: the avatar's audio output cannot pause
        turn_handling={"interruption": {"resume_false_interruption": False}},
    )
    avatar = AvatarSession(
        face_storage_key=os.environ["E2E_FACE_KEY"],
        max_duration_seconds=float(os.environ.get("E2E_AVATAR_MAX_S", "25")),
    )
    await avatar.start(session, room=ctx.room)
    to_avatar = session.output.audio
    while to_avatar is not None and not isinstance(to_avatar, DataStreamAudioOutput):
        to_avatar = to_avatar.next_in_chain
    assert isinstance(to_avatar, DataStreamAudioOutput)
    tasks: set[asyncio.Task[None]] = set()

    def report(event: str, **fields: Any) -> None:
        payload = json.dumps({"event": event, **fields})
        task = asyncio.create_task(
            ctx.room.local_participant.publish_data(payload, reliable=True, topic="e2e")
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    to_avatar.on("playback_started", lambda _ev: report("playback_started"))
    to_avatar.on(
        "playback_finished",
        lambda ev: report(
            "playback_finished",
            position=ev.playback_position,
            interrupted=ev.interrupted,
        ),
    )

    async def follow(handle: Any, label: str) -> None:
        await handle
        messages = [
            {"interrupted": item.interrupted, "text": item.text_content or ""}
            for item in handle.chat_items
            if item.type == "message" and item.role == "assistant"
        ]
        report("speech_done", label=label, interrupted=handle.interrupted, messages=messages)

    def start(coro: Any) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def say(data: rtc.RpcInvocationData) -> str:
        start(follow(session.say(data.payload), label=data.payload))
        return "ok"

    async def say_then_interrupt(data: rtc.RpcInvocationData) -> str:
        before = to_avatar.captured_playout_segments
        handle = session.say(data.payload)

        def streaming() -> bool:
            # its stream is open and its first audio written (livekit-agents 1.8.9 internals)
            return (
                to_avatar.captured_playout_segments > before
                and to_avatar._stream_writer is not None
                and to_avatar._pushed_duration > 0
            )

        async with asyncio.timeout(HANG_S):
            while not streaming():  # noqa: ASYNC110 (private state, no event to wait on)
                await asyncio.sleep(0.005)
        to_avatar.clear_buffer()  # ahead of the stream's end, which the interruption sends
        handle.interrupt()
        start(follow(handle, label=data.payload))
        return "ok"

    ctx.room.local_participant.register_rpc_method("e2e.say", say)
    ctx.room.local_participant.register_rpc_method("e2e.say_then_interrupt", say_then_interrupt)
    await session.start(
        Agent(instructions="You are a test agent."),
        room=ctx.room,
        room_options=RoomOptions(audio_input=False, close_on_disconnect=False),
    )
    report("ready")


if __name__ == "__main__":
    cli.run_app(server)
