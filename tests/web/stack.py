"""The real stack for the browser tests: livekit-server (tests/conftest.py's fixture), `atlas
serve` with the demo broker on, and `atlas agent start`, each a real process on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.livekit_server import LiveKitServer
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    registered: threading.Event = field(default_factory=threading.Event)

    def pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if "registered worker" in line:
                self.registered.set()

    def tail(self) -> str:
        return "".join(self.lines[-40:])

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _spawn(args: list[str], env: dict[str, str]) -> Proc:
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = Proc(proc)
    threading.Thread(target=out.pump, daemon=True).start()
    return out


class Stack:
    def __init__(self, tmp: Path, livekit: LiveKitServer, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **livekit.env(),
            "PYTHONPATH": str(ROOT),
            "ATLAS_DATA_DIR": str(tmp / "data"),
            "ATLAS_DEMO": "1",
            "ATLAS_PUBLIC_URL": self.base_url,
            # still frames in silence: any change of the mouth region is lip sync
            "ATLAS_RENDERER_IDLE_MOTION": "false",
            "ATLAS_REALTIME_RETRY_AFTER_S": "2",
            # one visitor (127.0.0.1) plays every page of the suite, kiosk retries included
            "ATLAS_DEMO_SESSIONS_PER_VISITOR": "4",
            "ATLAS_DEMO_CREATES_PER_MINUTE": "60",
            **extra_env,
        }
        for name in ("ATLAS_DATABASE_URL", "ATLAS_STORAGE_URL", "ATLAS_DEMO_DIR"):
            self.env.pop(name, None)
        self.api: Proc | None = None
        self.worker: Proc | None = None

    def start_api(self, **env: str) -> None:
        self.api = _spawn(
            ["-m", "atlas.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            {**self.env, **env},
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/v1/health", timeout=2).status_code == 200:
                    return
            assert self.api.proc.poll() is None, f"atlas serve exited:\n{self.api.tail()}"
            assert time.monotonic() < deadline, f"atlas serve did not come up:\n{self.api.tail()}"
            time.sleep(0.25)

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()

    def start_worker(self) -> None:
        # `atlas agent start`, with the health endpoint on a free port (see agent_worker.py)
        self.worker = _spawn(["-m", "tests.web.agent_worker"], self.env)
        assert self.worker.registered.wait(120), f"no worker:\n{self.worker.tail()}"

    def kill_worker(self) -> None:
        """SIGKILL the worker and its job processes (a crash, not a drain)."""
        assert self.worker is not None
        import psutil

        parent = psutil.Process(self.worker.proc.pid)
        children = parent.children(recursive=True)
        parent.kill()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.worker.proc.wait(timeout=20)

    def tails(self) -> str:
        parts = []
        for name, proc in (("atlas serve", self.api), ("atlas agent", self.worker)):
            if proc is not None:
                parts.append(f"--- {name} ---\n{proc.tail()}")
        return "\n".join(parts)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.stop_api()
