"""Shared helpers for the deployment tests: the repository root, real `atlas` processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
ATLAS = [sys.executable, "-m", "atlas.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, limit_s: float, step_s: float = 0.05) -> Any:
    """Poll until `predicate` is truthy; a bound on waiting, never an assertion about speed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise AssertionError(f"condition not reached within {limit_s:g} s")


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


class Procs:
    """`atlas` processes started by one test; whatever is left is stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log_path = self.tmp / f"{args[0]}-{len(self.running)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([*ATLAS, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(proc)
        self.logs[proc.pid] = log_path
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    owner = Procs(tmp_path)
    try:
        yield owner
    finally:
        owner.stop_all()
