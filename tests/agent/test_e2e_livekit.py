"""End to end against a real LiveKit server: the API, the worker and a client, as users run them.

Runs only when LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET are set; no LiveKit server
can run on the development machines, so elsewhere it skips. To run it (agent/README.md):

    livekit-server --dev        # ws://127.0.0.1:7880, key devkey, secret secret
    LIVEKIT_URL=ws://127.0.0.1:7880 LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \\
        PYTHONPATH=. .venv/bin/pytest tests/agent/test_e2e_livekit.py -v

What it does: `atlas serve` on a fresh SQLite data dir, `atlas keys create`, and `atlas agent
start` sharing that data dir (so the stored face resolves by storage key); POST
/v1/realtime/session (passthrough, the face uploaded); join the room as the client with the
LiveKit rtc SDK and the returned token; publish tests/fixtures/speech.wav as the microphone;
receive the avatar's video and audio; check that frames flow at about the frame rate and that
the mouth moves with the received voice (coarse A/V sync: the lag of the best correlation
between mouth motion and voice energy is within a few frames); then DELETE the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from livekit import rtc

LIVEKIT_ENV = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
MISSING = [name for name in LIVEKIT_ENV if not os.environ.get(name)]

pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=(
        f"needs a LiveKit server: {', '.join(MISSING)} not set "
        "(run `livekit-server --dev`; see agent/README.md)"
    ),
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
VIDEO_SIZE = 256
FPS = 25
LISTEN_S = 12.0  # the fixture speech plus the join and the render latency
MAX_LAG_S = 0.2  # coarse: five frames either way


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    seen: threading.Event = field(default_factory=threading.Event)
    wanted: str = ""

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.wanted and self.wanted in line:
                self.seen.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self) -> str:
        return "".join(self.lines[-40:])


def _spawn(args: list[str], env: dict[str, str], *, wanted: str = "") -> Process:
    proc = subprocess.Popen(
        [sys.executable, "-m", "atlas.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process = Process(proc, wanted=wanted)
    threading.Thread(target=process.pump, daemon=True).start()
    return process


@dataclass
class Stack:
    base_url: str
    key: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ATLAS_DATA_DIR": str(tmp_path / "data"),
        "ATLAS_RENDERER_SIZE": str(VIDEO_SIZE),
        "ATLAS_RENDERER_FPS": str(FPS),
    }
    env.pop("ATLAS_DATABASE_URL", None)  # SQLite in the data dir
    env.pop("ATLAS_STORAGE_URL", None)  # file storage in the data dir, shared with the worker
    port = _free_port()
    api = _spawn(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    worker = _spawn(["agent", "start"], env, wanted="registered worker")
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200:
                    break
            assert api.proc.poll() is None, f"atlas serve exited:\n{api.tail()}"
            assert time.monotonic() < deadline, f"atlas serve did not come up:\n{api.tail()}"
            time.sleep(0.25)
        keys = subprocess.run(
            [sys.executable, "-m", "atlas.cli", "keys", "create", "--name", "e2e"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = keys.stdout.splitlines()[0].strip()
        assert key.startswith("sk_live_")
        assert worker.seen.wait(90), f"the agent worker did not register:\n{worker.tail()}"
        yield Stack(base_url=base_url, key=key)
    finally:
        worker.stop()
        api.stop()


@dataclass
class Received:
    video: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, gray)
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (arrival, int16)
    video_size: tuple[int, int] = (0, 0)


async def _collect_video(track: rtc.Track, out: Received) -> None:
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24)
    try:
        async for event in stream:
            frame = event.frame
            out.video_size = (frame.width, frame.height)
            rgb = np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 3)
            out.video.append((time.monotonic(), rgb.mean(axis=2).astype(np.float32)))
    finally:
        await stream.aclose()


async def _collect_audio(track: rtc.Track, out: Received) -> None:
    stream = rtc.AudioStream(track, sample_rate=24000, num_channels=1)
    try:
        async for event in stream:
            samples = np.frombuffer(event.frame.data, np.int16).copy()
            out.audio.append((time.monotonic(), samples))
    finally:
        await stream.aclose()


async def _publish_speech(room: rtc.Room, speech: tuple[np.ndarray, int]) -> None:
    pcm, rate = speech
    source = rtc.AudioSource(rate, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    await room.local_participant.publish_track(track, options)
    step = rate // 100  # 10 ms frames, paced in real time by the source's queue
    silence = np.zeros(rate, np.int16)
    for part in (silence, pcm, silence):
        for start in range(0, part.size, step):
            chunk = np.ascontiguousarray(part[start : start + step])
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), rate, 1, chunk.size))
    await source.wait_for_playout()


def _coarse_lag(received: Received) -> tuple[float, float]:
    """Lag (s) of mouth motion behind voice energy at the best correlation, and that r."""
    t0 = received.video[0][0]
    times = np.array([t - t0 for t, _ in received.video])
    frames = np.stack([g for _, g in received.video])
    h, w = frames.shape[1:]
    mouth = frames[:, int(h * 0.55) : int(h * 0.85), int(w * 0.3) : int(w * 0.7)]
    motion = np.abs(mouth - np.median(mouth, axis=0)).mean(axis=(1, 2))
    # voice energy per received audio frame, resampled onto the video frames' times
    a_times = np.array([t - t0 for t, _ in received.audio])
    energy = np.array([np.sqrt(np.mean(s.astype(np.float32) ** 2)) for _, s in received.audio])
    voice = np.interp(times, a_times, energy)
    best_lag, best_r = 0.0, -1.0
    for shift in range(-10, 11):  # frames
        a = motion[max(0, shift) : len(motion) + min(0, shift)]
        b = voice[max(0, -shift) : len(voice) + min(0, -shift)]
        if a.std() == 0 or b.std() == 0:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best_r:
            best_lag, best_r = shift / FPS, r
    return best_lag, best_r


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=60) as http:
        yield http


async def test_passthrough_session_end_to_end(
    stack: Stack, client: httpx.AsyncClient, speech: tuple[np.ndarray, int]
) -> None:
    auth = {"Authorization": f"Bearer {stack.key}"}
    created = await client.post(
        f"{stack.base_url}/v1/realtime/session",
        headers=auth,
        files={"face": ("face.jpg", (FIXTURES / "face.jpg").read_bytes(), "image/jpeg")},
        data={"mode": "passthrough", "max_duration_seconds": "120"},
    )
    assert created.status_code == 200, created.text
    session = created.json()
    assert session["mode"] == "passthrough"
    assert session["room"] == f"atlas-rt-{session['session_id']}"

    received = Received()
    tasks: list[asyncio.Task[None]] = []
    room = rtc.Room()

    def on_track(track: rtc.Track, _pub: rtc.RemoteTrackPublication, _p: object) -> None:
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            tasks.append(asyncio.create_task(_collect_video(track, received)))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(_collect_audio(track, received)))

    room.on("track_subscribed", on_track)
    try:
        await room.connect(session["livekit_url"], session["token"])
        publisher = asyncio.create_task(_publish_speech(room, speech))
        await asyncio.sleep(LISTEN_S)
        await publisher
        status = await client.get(
            f"{stack.base_url}/v1/realtime/session/{session['session_id']}", headers=auth
        )
        assert status.status_code == 200 and status.json()["status"] == "active"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await room.disconnect()

    # the avatar published video at about the frame rate, and its audio
    width, height = received.video_size  # the published size, or a simulcast layer of it
    assert width == height and VIDEO_SIZE // 4 <= width <= VIDEO_SIZE
    span = received.video[-1][0] - received.video[0][0]
    assert len(received.video) >= 0.8 * FPS * span, "video frames were dropped or stalled"
    assert received.audio, "no avatar audio arrived"
    # coarse A/V sync: the mouth moves with the voice the client hears
    lag, r = _coarse_lag(received)
    assert r > 0.2, f"mouth motion does not follow the voice (r={r:.2f})"
    assert abs(lag) <= MAX_LAG_S, f"A/V offset {lag * 1000:.0f} ms"

    ended = await client.delete(
        f"{stack.base_url}/v1/realtime/session/{session['session_id']}", headers=auth
    )
    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == "ended"
    again = await client.delete(
        f"{stack.base_url}/v1/realtime/session/{session['session_id']}", headers=auth
    )
    assert again.status_code == 409
