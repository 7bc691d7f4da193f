"""Real processes for scenarios 9 and 10: `atlas serve`, `atlas agent start`, a third-party agent,
and a listening client on a real livekit-server.

- `Stack`: the API and our worker on one fresh data dir (SQLite, file storage), with an API key;
- `Listener`: a LiveKit participant that subscribes when told to, and records what it receives
  on arrival: the avatar's audio (loudness per 10 ms), its video frames, the agent's
  transcription text streams (`lk.transcription`) and data packets.

Waits are on events and counts; their limits only guard against a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from livekit import rtc

from tests.livekit_server import LiveKitServer
from tests.processes import ATLAS, Procs, atlas_env, free_port, wait_until

HANG_S = 150.0  # a guard against hanging (slow starts on a loaded host), never a timing assertion
# int16 RMS of a 10 ms slice with voice (the fixture peaks ~10000; ~60 % of it is voiced)
LOUD_RMS = 300.0


def base_env(tmp: Path, livekit: LiveKitServer) -> dict[str, str]:
    """An `atlas` environment on a fresh embedded data dir (SQLite, file storage shared with
    the worker), pointed at `livekit`."""
    return atlas_env(
        tmp / "data",
        **livekit.env(),
        ATLAS_RENDERER_SIZE="128",  # the scenarios check voice and protocol, not pixels
        ATLAS_AGENT_MAX_STREAMS="1",  # one idle job process: the machine has two cores
        ATLAS_AGENT_HTTP_PORT="0",  # livekit-agents' 8081 may be taken on a shared machine
    )


def wait_for_log(procs: Procs, proc: subprocess.Popen[bytes], text: str) -> None:
    def seen() -> bool:
        assert proc.poll() is None, f"process exited:\n{procs.log(proc)[-3000:]}"
        return text in procs.log(proc)

    try:
        wait_until(seen, limit_s=HANG_S, step_s=0.2)
    except AssertionError:
        raise AssertionError(f"never logged {text!r}:\n{procs.log(proc)[-3000:]}") from None


def start_worker(procs: Procs, env: dict[str, str]) -> subprocess.Popen[bytes]:
    worker = procs.start(env, "agent", "start")
    wait_for_log(procs, worker, "registered worker")
    return worker


@dataclass
class Stack:
    base_url: str
    key: str
    worker: subprocess.Popen[bytes]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def start_stack(procs: Procs, env: dict[str, str]) -> Stack:
    port = free_port()
    api = procs.start(env, "serve", "--host", "127.0.0.1", "--port", str(port))
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert api.poll() is None, f"atlas serve exited:\n{procs.log(api)[-3000:]}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200
        return False

    wait_until(healthy, limit_s=HANG_S, step_s=0.25)
    keys = subprocess.run(
        [*ATLAS, "keys", "create", "--name", "e2e"],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=True,
    )
    key = keys.stdout.splitlines()[0].strip()
    worker = start_worker(procs, env)
    return Stack(base_url=base_url, key=key, worker=worker)


@dataclass
class Listener:
    """A client participant. `loud` holds (arrival, is voice) per 10 ms of the avatar's audio."""

    room: rtc.Room = field(default_factory=rtc.Room)
    loud: list[tuple[float, bool]] = field(default_factory=list)
    video_frames: int = 0
    video_size: tuple[int, int] = (0, 0)
    audio_frames: dict[str, int] = field(default_factory=dict)  # 10 ms frames by participant
    transcripts: list[tuple[float, dict[str, str], str]] = field(default_factory=list)
    data: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    subscribed_at: float | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def join(self, url: str, token: str, *, auto_subscribe: bool = True) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("track_published", self._on_published)
        self.room.on("data_received", self._on_data)
        self.room.register_text_stream_handler("lk.transcription", self._on_transcription)
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=auto_subscribe))

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + HANG_S
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"never happened: {what}\n{self.describe()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)

    def describe(self) -> str:
        """What the client sees, for a failure message."""
        people = {
            identity: (p.kind, [(t.kind, t.subscribed) for t in p.track_publications.values()])
            for identity, p in self.room.remote_participants.items()
        }
        voice = self.voice_seconds()
        said = [text for _, _, text in self.transcripts]
        return f"participants {people}; voice {voice:.2f} s; transcripts {said}"

    def publications(self, identity: str) -> list[rtc.RemoteTrackPublication]:
        participant = self.room.remote_participants.get(identity)
        return list(participant.track_publications.values()) if participant else []

    def subscribe_all(self, identity: str) -> None:
        self.subscribed_at = time.monotonic()
        for publication in self.publications(identity):
            publication.set_subscribed(True)

    def voice_onsets(self) -> list[float]:
        """Arrival times where the avatar's voice starts after at least 0.3 s of silence."""
        onsets, quiet = [], 30
        for at, loud in self.loud:
            if loud and quiet >= 30:
                onsets.append(at)
            quiet = 0 if loud else quiet + 1
        return onsets

    def voice_seconds(self, since: float = 0.0) -> float:
        return sum(0.01 for at, loud in self.loud if loud and at >= since)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [d for _, d in self.data if d.get("event") == name]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()

    # -- callbacks --------------------------------------------------------------------------

    def _on_track(self, track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._tasks.append(asyncio.create_task(self._read_audio(track, participant.identity)))
        else:
            self._tasks.append(asyncio.create_task(self._read_video(track)))

    def _on_published(self, publication: rtc.RemoteTrackPublication, _p: Any) -> None:
        if self.subscribed_at is not None:  # once subscribing, take what comes later too
            publication.set_subscribed(True)
        self._changed.set()

    def _on_data(self, packet: rtc.DataPacket) -> None:
        with contextlib.suppress(ValueError):
            self.data.append((time.monotonic(), json.loads(packet.data)))
            self._changed.set()

    def _on_transcription(self, reader: rtc.TextStreamReader, _identity: str) -> None:
        self._tasks.append(asyncio.create_task(self._read_transcription(reader)))

    async def _read_transcription(self, reader: rtc.TextStreamReader) -> None:
        text = await reader.read_all()
        attributes = dict(reader.info.attributes or {})
        self.transcripts.append((time.monotonic(), attributes, text))
        self._changed.set()

    async def _read_audio(self, track: rtc.Track, identity: str) -> None:
        stream = rtc.AudioStream(track, sample_rate=24000, num_channels=1, frame_size_ms=10)
        try:
            async for event in stream:
                pcm = np.frombuffer(event.frame.data, np.int16).astype(np.float32)
                rms = float(np.sqrt(np.mean(pcm * pcm))) if pcm.size else 0.0
                self.loud.append((time.monotonic(), rms > LOUD_RMS))
                self.audio_frames[identity] = self.audio_frames.get(identity, 0) + 1
                self._changed.set()
        finally:
            await stream.aclose()

    async def _read_video(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track)
        try:
            async for event in stream:
                self.video_frames += 1
                self.video_size = (event.frame.width, event.frame.height)
                self._changed.set()
        finally:
            await stream.aclose()
