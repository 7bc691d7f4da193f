"""`atlas agent start` with its health endpoint on a free port (tests only).

livekit-agents binds the worker's HTTP health server to 8081 in production mode, and the agent
CLI has no option for it, so two workers on one machine (other checkouts' tests) collide.
Follow-up for agent/: an ATLAS_AGENT_HTTP_PORT setting passed to AgentServer(port=...).
"""

from __future__ import annotations

import sys

from livekit.agents import cli

from agent.worker import create_server


def main() -> None:
    server = create_server()
    server._port = 0  # noqa: SLF001 (no public setter; see the module docstring)
    sys.argv = ["atlas agent", "start"]
    cli.run_app(server)


if __name__ == "__main__":
    main()
