"""The realtime stack as users run it, for the end-to-end suite: real `atlas serve` and
`atlas agent start` processes on a real livekit-server, and an HTTP client for the API.

A plain helper module (not a conftest), so other suites import it:

    stack = start_stack(tmp_path, livekit_server)         # API + key + one registered worker
    created = await stack.create_session(mode="passthrough")
    ...
    stack.stop()

Every wait here is a hang guard (a generous limit on a condition), never a sleep that a slow
machine could lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from livekit import api

from tests.e2e import media
from tests.livekit_server import LiveKitServer
from tests.processes import Procs, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
FACE = ROOT / "tests" / "fixtures" / "face.jpg"
START_LIMIT_S = 120.0  # a cold worker loads the landmarker and the renderer: hang guard only
REGISTERED = "registered worker"
T = TypeVar("T")


def stack_env(tmp: Path, livekit: LiveKitServer, **extra: str) -> dict[str, str]:
    """The environment both processes share: one data dir (SQLite, file storage, so the
    worker resolves faces by storage key), the test LiveKit server, and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_", "LIVEKIT_"))}
    # each stack's own agent name: stacks share the server, and a dispatch must reach this
    # stack's worker (which reads this stack's faces), not another's
    agent_name = f"atlas-avatar-{secrets.token_hex(3)}"
    env.update(
        {
            "ATLAS_AGENT_NAME": agent_name,
            "ATLAS_REALTIME_AGENT_NAME": agent_name,
            "PYTHONPATH": str(ROOT),
            "ATLAS_DATA_DIR": str(tmp / "data"),
            "ATLAS_REALTIME_REAPER_INTERVAL_S": "0.25",
            "ATLAS_AGENT_HTTP_HOST": "127.0.0.1",
            "ATLAS_AGENT_HTTP_PORT": "0",  # the machine may run other workers
            "ATLAS_LOG_LEVEL": "INFO",
            "ATLAS_LOG_FORMAT": "json",  # session_summary() reads the worker's records
            **livekit.env(),
            **extra,
        }
    )
    return env


@dataclass
class Stack:
    """One API process, its key, and the worker processes started for it."""

    base_url: str
    key: str
    livekit: LiveKitServer
    env: dict[str, str]
    procs: Procs
    api_proc: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: dict[int, int] = field(default_factory=dict)

    # -- processes ---------------------------------------------------------------------------
    def start_worker(
        self, *args: str, command: list[str] | None = None, wait: bool = True, **extra: str
    ) -> subprocess.Popen[bytes]:
        """`atlas agent start ARGS` (or `command agent start ARGS`), returned once it has
        registered with the server (`wait=False`: at once; then `registered(proc)`); its
        Prometheus port is in `metrics_ports`."""
        extra.setdefault("ATLAS_AGENT_METRICS_PORT", str(free_port()))
        proc = self.procs.start({**self.env, **extra}, "agent", "start", *args, command=command)
        self.workers.append(proc)
        self.metrics_ports[proc.pid] = int(extra["ATLAS_AGENT_METRICS_PORT"])
        if wait:
            self.registered(proc)
        return proc

    def registered(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait until the worker has registered with the server (hang guard)."""
        wait_for_log(self.procs, proc, REGISTERED, limit_s=START_LIMIT_S)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.procs.log(proc)

    def metrics(self, proc: subprocess.Popen[bytes]) -> dict[str, float]:
        """The worker's Prometheus samples, by name with labels (`name{label="v"}`)."""
        port = self.metrics_ports[proc.pid]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def stop(self) -> None:
        self.livekit.webhooks.targets.discard(self.webhook_url)
        self.procs.stop_all()

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/v1/livekit/webhook"

    async def session_summary(self, session_id: str) -> dict[str, Any]:
        """The worker's `session summary` log record of a session (logged as it ends)."""

        async def logged() -> dict[str, Any] | None:
            for proc in self.workers:
                for line in self.log(proc).splitlines():
                    if '"session summary"' in line and session_id in line:
                        record: dict[str, Any] = json.loads(line)
                        return record
            return None

        return await poll(logged, limit_s=60, what=f"the summary of {session_id}")

    def worker_logged_at(self, message: str, session_id: str) -> float | None:
        """Epoch time of the workers' last `message` record about the session, if any."""
        seen = None
        for proc in self.workers:
            for line in self.log(proc).splitlines():
                if f'"{message}"' not in line or session_id not in line:
                    continue
                record = json.loads(line)
                if record.get("message") == message:
                    stamp = datetime.fromisoformat(str(record["time"]))
                    seen = max(seen or 0.0, stamp.timestamp())
        return seen

    async def worker_saw(self, message: str, session_id: str) -> float:
        """Wait until a worker logs `message` about the session (hang guard); its time."""

        async def logged() -> float | None:
            return self.worker_logged_at(message, session_id)

        return await poll(logged, limit_s=60, what=f"{message!r} of {session_id}")

    # -- HTTP --------------------------------------------------------------------------------
    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def http(self, timeout_s: float = 60) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self.auth, timeout=timeout_s)

    async def create_session(
        self,
        *,
        mode: str = "passthrough",
        face: bytes | None = None,
        timeout_s: float = 60,
        **fields: str,
    ) -> httpx.Response:
        """POST /v1/realtime/session with a multipart face upload (the fixture by default)."""
        image = face if face is not None else FACE.read_bytes()
        async with self.http(timeout_s) as client:
            return await client.post(
                "/v1/realtime/session",
                files={"face": ("face.jpg", image, "image/jpeg")},
                data={"mode": mode, **fields},
            )

    async def get_session(self, session_id: str) -> dict[str, Any]:
        async with self.http() as client:
            response = await client.get(f"/v1/realtime/session/{session_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def delete_session(self, session_id: str) -> httpx.Response:
        async with self.http() as client:
            return await client.delete(f"/v1/realtime/session/{session_id}")

    async def swap_face(self, session_id: str, face: bytes) -> httpx.Response:
        async with self.http() as client:
            return await client.patch(
                f"/v1/realtime/session/{session_id}",
                files={"face": ("face.jpg", face, "image/jpeg")},
            )

    async def wait_status(
        self, session_id: str, wanted: set[str], *, limit_s: float
    ) -> dict[str, Any]:
        """GET until the status is one of `wanted` (hang guard: `limit_s`)."""
        return await poll(
            lambda: self._status_in(session_id, wanted),
            limit_s=limit_s,
            what=f"{wanted}",
            step_s=0.25,
        )

    async def _status_in(self, session_id: str, wanted: set[str]) -> dict[str, Any] | None:
        body = await self.get_session(session_id)
        return body if body["status"] in wanted else None

    # -- LiveKit's RoomService ---------------------------------------------------------------
    async def room_exists(self, room: str) -> bool:
        return await room_exists(self.livekit, room)


async def room_exists(livekit: LiveKitServer, room: str) -> bool:
    async with api.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lkapi:
        rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room]))
    return any(r.name == room for r in rooms.rooms)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its job processes: nothing of the worker is left to end anything."""
    parent = psutil.Process(pid)
    for proc in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


async def poll(
    probe: Callable[[], Awaitable[T | None]], *, limit_s: float, what: str, step_s: float = 0.1
) -> T:
    """Await `probe` until it returns a value; fail after `limit_s` (a hang guard)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {limit_s:.0f} s: {what}")
        await asyncio.sleep(step_s)


def wait_for_log(procs: Procs, proc: subprocess.Popen[bytes], text: str, *, limit_s: float) -> None:
    def seen() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}):\n{procs.log(proc)[-3000:]}")
        return text in procs.log(proc)

    try:
        wait_until(seen, limit_s=limit_s, step_s=0.2)
    except AssertionError as exc:
        raise AssertionError(f"{text!r} not logged:\n{procs.log(proc)[-3000:]}") from exc


def create_key(env: dict[str, str]) -> str:
    """A new API key (`atlas keys create`) in the database `env` names."""
    out = subprocess.run(
        # polling GET is part of the tests: a key with room for it
        [sys.executable, "-m", "atlas.cli", "keys", "create", "--name", "e2e", "--rpm", "6000"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = out.stdout.splitlines()[0].strip()
    assert re.fullmatch(r"sk_live_\S+", key), out.stdout
    return key


def start_api(procs: Procs, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`atlas serve` on a free port, once healthy: the process and its base URL."""
    port = free_port()
    api_proc = procs.start(env, "serve", "--host", "127.0.0.1", "--port", str(port))
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if api_proc.poll() is not None:
            raise AssertionError(f"atlas serve exited:\n{procs.log(api_proc)[-3000:]}")
        try:
            return httpx.get(f"{base_url}/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, limit_s=START_LIMIT_S, step_s=0.2)
    return api_proc, base_url


def start_stack(
    tmp: Path,
    livekit: LiveKitServer,
    *,
    workers: int = 1,
    api_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    **env_extra: str,
) -> Stack:
    """`atlas serve` on a free port, a key, and `workers` registered `atlas agent start`."""
    env = stack_env(tmp, livekit, **env_extra)
    procs = Procs(tmp)
    base_url = ""
    try:
        api_proc, base_url = start_api(procs, {**env, **(api_env or {})})
        stack = Stack(
            base_url=base_url,
            key=create_key(env),
            livekit=livekit,
            env={**env, **(worker_env or {})},
            procs=procs,
            api_proc=api_proc,
        )
        livekit.webhooks.targets.add(stack.webhook_url)  # LiveKit's events reach this API
        for _ in range(workers):
            stack.start_worker()
    except BaseException:
        livekit.webhooks.targets.discard(f"{base_url}/v1/livekit/webhook")
        procs.stop_all()
        raise
    return stack


async def speak_in_every_session(
    stack: Stack, sessions: list[dict[str, Any]], *, join_limit_s: float
) -> list[tuple[media.Viewer, media.Sent]]:
    """Join each created session as its client, play the speech fixture into all of them at
    once, then leave and delete them: each viewer with what was sent to it."""
    viewers = [media.Viewer(keep_pixels=False) for _ in sessions]
    speech, rate = media.load_speech()
    try:
        for viewer, session in zip(viewers, sessions, strict=True):
            await viewer.join(session["livekit_url"], session["token"])
        sources = [(await v.publish_audio())[0] for v in viewers]
        await asyncio.wait_for(
            asyncio.gather(*(v.first_video.wait() for v in viewers)), join_limit_s
        )
        sent = await asyncio.gather(*(media.play(s, speech, rate) for s in sources))
    finally:
        for viewer in viewers:
            await viewer.leave()
        for session in sessions:
            await stack.delete_session(session["session_id"])
    return list(zip(viewers, sent, strict=True))
