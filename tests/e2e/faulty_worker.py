"""`atlas` with two test hooks in its worker, for the e2e scenarios that need a fault on cue.

- ATLAS_TEST_FAIL_CUE=FILE: a session whose id is written to FILE raises from its render
  thread at its next speech frame, as a broken model or a corrupt frame would mid-session.
- ATLAS_TEST_HOLD_FIRST_JOB=FILE: the worker answers its first job request only once FILE
  exists (a job assignment that lands after the API has looked for it).

Everything else is the real worker: `python -m tests.e2e.faulty_worker agent start`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from livekit.agents import JobRequest

import agent.worker
from agent.admission import ActiveJobs, Admission
from agent.session import LiveSession
from atlas.cli import main

HOLD_LIMIT_S = 120.0  # a hang guard


class FailOnCue(LiveSession):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cue = Path(os.environ.get("ATLAS_TEST_FAIL_CUE", "/nonexistent"))
        session_id = kwargs["session_id"]
        generator = kwargs["generator"]
        real_step = generator._step

        def step(allow_idle: bool) -> Any:
            out = real_step(allow_idle)
            speech = out is not None and out.frame.audio is not None
            if speech and cue.is_file() and session_id in cue.read_text():
                raise RuntimeError("the renderer failed (on cue, for the test)")
            return out

        generator._step = step


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


class HoldFirstJob(Admission):
    def bind(self, server: ActiveJobs) -> Callable[[JobRequest], object]:
        request = super().bind(server)
        held = False

        async def hold_first(req: JobRequest) -> None:
            nonlocal held
            cue = os.environ.get("ATLAS_TEST_HOLD_FIRST_JOB")
            if cue and not held:
                held = True
                await asyncio.to_thread(wait_for_file, Path(cue))
            await request(req)  # type: ignore[misc]

        return hold_first


agent.worker.LiveSession = FailOnCue  # type: ignore[misc]
agent.worker.Admission = HoldFirstJob  # type: ignore[misc]

if __name__ == "__main__":
    sys.exit(main())
