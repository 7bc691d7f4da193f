"""`atlas agent {start,dev,download-files}`: delegates to livekit-agents' CLI."""

from __future__ import annotations

import sys

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

    from livekit.agents import cli

    from agent.worker import create_server

    saved = sys.argv
    sys.argv = [f"atlas {command}", *argv]
    try:
        cli.run_app(create_server())
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
