"""`atlas worker` with a test-only pause point in its render: `python -m tests.deploy.paused_worker
GATE_DIR worker ARGS...`.

The real CLI and the real renderer run; only the render's progress callback is wrapped. At the
first report past PAUSE_AT the render thread writes GATE_DIR/paused (the fraction reached) and
waits until GATE_DIR/resume exists, then goes on through the worker's own callback (which is
where a released job stops). The test thus signals the worker while a render is surely in hand
and unfinished, however fast or slow the machine renders.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAUSE_AT = 0.1
HANG_GUARD_S = 600.0


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
    worker.default_render = lambda: gated(real, gate)  # type: ignore[assignment]
    from atlas.cli import main as atlas_main

    return atlas_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
