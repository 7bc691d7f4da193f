"""The code's public surface, read from the code itself: settings' environment variables, the
`atlas` command tree, and the API's routes. The drift tests compare deployment files with it.

Nothing here lists a setting or a command by hand: environment names come from every
pydantic-settings class in the packages (env_prefix + field names, and validation aliases, as
pydantic-settings itself resolves them); commands come from atlas/cli.py's command table and
from each command's own `--help` (argparse `{a,b}` choices, click/typer "Commands" sections).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource

from tests.paths import ROOT
from tests.processes import ATLAS

PACKAGES = ("atlas", "renderer", "agent", "session_api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _check_origin(module: Any) -> None:
    origin = Path(module.__file__).resolve()
    if not origin.is_relative_to(ROOT):
        raise AssertionError(
            f"{module.__name__} was imported from {origin}, not from {ROOT}: run the tests with "
            f"PYTHONPATH={ROOT} so that they check this tree's code"
        )


@functools.cache
def settings_classes() -> tuple[type[BaseSettings], ...]:
    """Every BaseSettings subclass defined in the packages (importing only modules that
    mention BaseSettings; migrations are scripts for alembic, not modules)."""
    for package in PACKAGES:
        root = ROOT / package
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*.py")):
            if "migrations" in path.parts or "BaseSettings" not in path.read_text():
                continue
            _check_origin(importlib.import_module(module_name(path)))
    found: list[type[BaseSettings]] = []
    stack: list[type[BaseSettings]] = list(BaseSettings.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PACKAGES and cls not in found:
            found.append(cls)
    return tuple(sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}"))


def _field_env_names(cls: type[BaseSettings], name: str, field: FieldInfo) -> set[str]:
    case_sensitive = bool(cls.model_config.get("case_sensitive", False))
    source = EnvSettingsSource(cls)
    extract = getattr(source, "_extract_field_info", None)
    names: set[str] = set()
    if extract is not None:  # pydantic-settings' own resolution (prefix, aliases, case)
        names = {env_name for _, env_name, _ in extract(field, name)}
    else:  # the documented rules, should that private helper ever go away
        alias = field.validation_alias
        if isinstance(alias, str):
            names = {alias}
        elif alias is not None and hasattr(alias, "choices"):
            names = {choice for choice in alias.choices if isinstance(choice, str)}
        else:
            names = {str(cls.model_config.get("env_prefix", "")) + name}
    return names if case_sensitive else {n.upper() for n in names}


@functools.cache
def env_names() -> dict[str, tuple[str, ...]]:
    """Environment variable -> the settings classes that read it."""
    out: dict[str, list[str]] = {}
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            for env in _field_env_names(cls, name, field):
                out.setdefault(env, []).append(f"{cls.__module__}.{cls.__qualname__}")
    return {env: tuple(owners) for env, owners in sorted(out.items())}


# --- the atlas command tree ------------------------------------------------------------------
@functools.cache
def command_table() -> dict[str, str]:
    """`atlas` command -> the module that runs it, from atlas/cli.py's table."""
    cli = importlib.import_module("atlas.cli")
    _check_origin(cli)
    table = getattr(cli, "_COMMANDS", None)
    if not isinstance(table, dict):
        raise AssertionError("atlas/cli.py has no _COMMANDS table: update tests/deploy/surface.py")
    return {
        name: entry[0] if isinstance(entry, tuple) else str(entry) for name, entry in table.items()
    }


@functools.cache
def help_text(path: tuple[str, ...]) -> tuple[int, str]:
    """`atlas PATH... --help`: exit code and output (a real process, as an operator runs it)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }
    done = subprocess.run(
        [*ATLAS, *path, "--help"], env=env, capture_output=True, text=True, timeout=180
    )
    return done.returncode, done.stdout + done.stderr


_ARGPARSE_CHOICES = re.compile(r"\{([A-Za-z0-9_,-]+)\}")
_COMMAND_LINE = re.compile(r"^[\s│|]*([a-z][a-z0-9_-]*)(?:\s|$)")


def subcommands(text: str) -> set[str]:
    """Subcommands a help text offers: argparse `{a,b,c}` in its usage, or the entries of a
    click/typer "Commands" section (plain or drawn in a rich box)."""
    found: set[str] = set()
    usage = text.split("\n\n", 1)[0]
    for group in _ARGPARSE_CHOICES.findall(usage):
        found |= set(group.split(","))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not re.search(r"(^|\W)Commands(:|\s*─)", line):
            continue
        for entry in lines[i + 1 :]:
            if entry.lstrip().startswith("╰") or (
                entry and not entry[0].isspace() and "│" not in entry
            ):
                break
            match = _COMMAND_LINE.match(entry)
            if match:
                found.add(match.group(1))
    return found


def check_command(argv: list[str]) -> str | None:
    """None when `argv` is a real `atlas` invocation; otherwise what is wrong with it.

    Leading words are commands and subcommands (each checked against its parent's help);
    every `--option` must appear in the final command's help. Positional arguments are not
    supported here: deployment files use none.
    """
    if not argv or Path(argv[0]).name != "atlas":
        return f"{argv!r} does not run the `atlas` command"
    words = argv[1:]
    if not words:
        return "bare `atlas` (no command)"
    table = command_table()
    if words[0] not in table:
        return (
            f"`atlas {words[0]}` is not in atlas/cli.py's command table "
            f"(it has: {', '.join(sorted(table))})"
        )
    path = [words[0]]
    i = 1
    while i < len(words) and not words[i].startswith("-"):
        code, text = help_text(tuple(path))
        offered = subcommands(text) if code == 0 else set()
        if not offered and re.search(r"positional arguments|─ Arguments ─|^Arguments:", text, re.M):
            break  # the rest are this command's positional arguments
        if words[i] not in offered:
            shown = ", ".join(sorted(offered)) or "none"
            return f"`atlas {' '.join(path)}` has no subcommand {words[i]!r} (it offers: {shown})"
        path.append(words[i])
        i += 1
    code, text = help_text(tuple(path))
    if code != 0:
        return f"`atlas {' '.join(path)} --help` failed ({code}): {text.strip()[-500:]}"
    for word in words[i:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                return f"`atlas {' '.join(path)}` has no option {flag}"
    return None


# --- the API's routes ------------------------------------------------------------------------
@functools.cache
def api_serves(path: str) -> bool:
    """Whether the API routes `path` (any method): asked of the app itself over ASGI, with a
    method no route takes, so a known path answers 405 and an unknown one 404."""
    import asyncio

    import httpx

    from session_api.config import Settings
    from session_api.main import create_app

    app = create_app(Settings(secret_key="drift-check-secret-0123456789"))

    async def probe() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return (await client.request("TRACE", path)).status_code

    status = asyncio.run(probe())
    assert status in {404, 405}, f"TRACE {path} answered {status}"
    return status == 405
