"""`atlas agent {start,dev,download-files}`: delegates to livekit-agents' CLI."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from atlas import logs

COMMANDS = ("start", "dev", "download-files")
USAGE = (
    "usage: atlas agent {start,dev,download-files} [OPTIONS]\n\n"
    "  start           run the LiveKit worker (agent_name atlas-avatar, explicit dispatch)\n"
    "  dev             the same, in development mode (debug logs, no load limit)\n"
    "  download-files  fetch the model files of the installed livekit plugins\n\n"
    "LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET name the server; see agent/README.md."
)


def run(command: str, argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    sub = argv[0]
    if sub not in COMMANDS:
        print(f"atlas agent: unknown command {sub!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if sub == "download-files":
        from livekit.agents.__main__ import main as agents_main

        return agents_main(["download-files"])

    try:
        logs.format_name()
    except ValueError as exc:
        print(f"atlas agent: {exc}", file=sys.stderr)
        return 2

    from livekit.agents import cli

    from agent.worker import create_server

    saved = sys.argv
    sys.argv = [f"atlas {command}", *argv]
    try:
        with atlas_log_format():
            cli.run_app(create_server())
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


@contextlib.contextmanager
def atlas_log_format() -> Iterator[None]:
    """While livekit-agents' CLI runs, its logging set-up ends in the Atlas format.

    `run_app` installs its own root handler (JSON or colours) just before the worker starts, in
    `livekit.agents.cli.cli.setup_logging`; we let it, then give that handler our formatter,
    keeping its stream, levels, filters and the noisy-logger defaults it sets.
    """
    from livekit.agents.cli import cli as lk_cli

    # A name the module imports rather than exports, hence getattr. Should an upgrade move it,
    # the worker keeps livekit's format (and tests/agent/test_cli.py fails, to say so).
    livekit_setup: Callable[..., None] | None = getattr(lk_cli, "setup_logging", None)
    if livekit_setup is None:
        yield
        return

    def setup_logging(*args: Any, **kwargs: Any) -> None:
        livekit_setup(*args, **kwargs)
        logs.reformat_root_handlers()

    setattr(lk_cli, "setup_logging", setup_logging)  # noqa: B010
    try:
        yield
    finally:
        setattr(lk_cli, "setup_logging", livekit_setup)  # noqa: B010
