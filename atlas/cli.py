"""`atlas COMMAND ...`: hands the command to the package that owns it, importing only that one."""

from __future__ import annotations

import importlib
import os
import sys

# command -> module with `run(command: str, argv: list[str]) -> int`
_COMMANDS: dict[str, tuple[str, str]] = {
    "render": ("renderer.cli", "render a photo and an audio file to a lip-synced MP4"),
    "serve": ("session_api.cli", "run the Atlas API (and, on embedded defaults, a job worker)"),
    "worker": ("session_api.cli", "run offline job workers against the shared database"),
    "keys": ("session_api.cli", "create, list and revoke API keys"),
    "migrate": ("session_api.cli", "upgrade the database schema"),
    "model": (
        "renderer.backends.wav2lip.model_cli",
        "convert a Wav2Lip checkpoint to ONNX (no torch needed)",
    ),
    "agent": ("agent.cli", "the LiveKit worker: agent {start,dev,download-files}"),
}

_USAGE = "usage: atlas COMMAND [ARGS...]\n\ncommands:\n"


def _usage() -> str:
    lines = [f"  {name:<10} {help_}" for name, (_, help_) in sorted(_COMMANDS.items())]
    return _USAGE + "\n".join(lines) + "\n\n`atlas COMMAND --help` describes each one."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in _COMMANDS:
        print(f"atlas: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(_COMMANDS[command][0])
    try:
        code: int = module.run(command, rest)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`atlas keys create | head -1`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
