"""`atlas` whose worker's renderer fails on cue: the e2e fault-isolation scenario only.

A session whose id is written to the file named by ATLAS_TEST_FAIL_CUE raises from its render
thread at its next speech frame, as a broken model or a corrupt frame would mid-session.
Everything else is the real worker: `python -m tests.e2e.faulty_worker agent start`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import agent.worker
from agent.session import LiveSession
from atlas.cli import main


class FailOnCue(LiveSession):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cue = Path(os.environ["ATLAS_TEST_FAIL_CUE"])
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


agent.worker.LiveSession = FailOnCue  # type: ignore[misc]

if __name__ == "__main__":
    sys.exit(main())
