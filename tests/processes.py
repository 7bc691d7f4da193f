"""Real `atlas` processes for tests: started, logged, and always stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.paths import ROOT

ATLAS = [sys.executable, "-m", "atlas.cli"]


def atlas_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for an `atlas` process on an embedded (SQLite, local files) data dir."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ATLAS_", "LIVEKIT_"))  # nothing from the caller's setup leaks in
    }
    env.update(
        {
            "ATLAS_DATA_DIR": str(data_dir),
            "ATLAS_SECRET_KEY": "deploy-test-secret-0123456789",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, limit_s: float, step_s: float = 0.05) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError("condition not reached")


class Procs:
    """`atlas` processes started by one test, each with its own log file."""

    def __init__(self, tmp: Path, *, graceful_stop: bool = True) -> None:
        self.tmp = tmp
        self.graceful_stop = graceful_stop
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(
        self, env: dict[str, str], *args: str, command: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`atlas ARGS` (or `command ARGS`), its output logged to a file."""
        log_path = self.tmp / f"{args[0]}-{len(self.running)}.log"
        argv = [*(command or ATLAS), *args]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(proc)
        self.logs[proc.pid] = log_path
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def stop_all(self) -> None:
        """SIGTERM and a grace period (or SIGKILL at once), so no test leaves a process."""
        stop = signal.SIGTERM if self.graceful_stop else signal.SIGKILL
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(stop)
        for proc in self.running:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
