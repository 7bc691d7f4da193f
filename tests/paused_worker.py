"""`atlas worker` with a test-only pause point in its render: `python -m tests.paused_worker
GATE_DIR worker ARGS...`, and PausedWorker, which starts one for a test.

The real CLI and the real renderer run; only the render's progress callback is wrapped. At the
first report past PAUSE_AT the render thread writes GATE_DIR/paused (the fraction reached) and
waits until GATE_DIR/resume exists, then goes on through the worker's own callback (which is
where a released job stops). The test thus signals the worker while a render is surely in hand
and unfinished, however fast or slow the machine renders.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.processes import Procs, wait_until

PAUSE_AT = 0.1
HANG_GUARD_S = 600.0  # in the worker: a test that never resumes it
WAIT_GUARD_S = 180.0  # in the test: waits end here only if something is broken


class PausedWorker:
    """`atlas worker` whose render pauses at 10% until resume()."""

    def __init__(self, procs: Procs, env: dict[str, str], *args: str) -> None:
        self.procs = procs
        self.gate = procs.tmp / f"gate-{len(procs.running)}"
        self.gate.mkdir()
        log_path = procs.tmp / f"paused-worker-{len(procs.running)}.log"
        command = [sys.executable, "-m", "tests.paused_worker", str(self.gate), "worker"]
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        procs.running.append(self.proc)
        procs.logs[self.proc.pid] = log_path

    def wait_paused(self) -> float:
        """Block until the render is paused; returns the fraction it reached."""
        paused = self.gate / "paused"
        wait_until(lambda: paused.exists() or self.proc.poll() is not None, limit_s=WAIT_GUARD_S)
        assert paused.exists(), self.log()[-3000:]
        return float(paused.read_text())

    def resume(self) -> None:
        (self.gate / "resume").touch()

    def signal(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait_log(self, text: str) -> None:
        wait_until(lambda: text in self.log() or self.proc.poll() is not None, limit_s=WAIT_GUARD_S)
        assert text in self.log(), self.log()[-3000:]

    def log(self) -> str:
        return self.procs.log(self.proc)


def gated(render: Callable[..., Any], gate: Path) -> Callable[..., Any]:
    def render_with_pause(*args: Any, on_progress: Any = None, **kwargs: Any) -> Any:
        paused = False

        def progress(fraction: float) -> None:
            nonlocal paused
            if not paused and fraction >= PAUSE_AT:
                paused = True
                (gate / "paused.part").write_text(f"{fraction}")
                (gate / "paused.part").rename(gate / "paused")
                deadline = time.monotonic() + HANG_GUARD_S
                while not (gate / "resume").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            if on_progress is not None:
                on_progress(fraction)

        return render(*args, on_progress=progress, **kwargs)

    return render_with_pause


def main() -> int:
    gate = Path(sys.argv[1])
    from renderer import offline
    from session_api.jobs import worker

    real = offline.render_file

    def default_render(max_audio_s: float | None = None) -> Any:
        return gated(functools.partial(real, max_duration_s=max_audio_s), gate)

    worker.default_render = default_render
    from atlas.cli import main as atlas_main

    return atlas_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
