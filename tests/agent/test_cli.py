"""agent/cli.py: `atlas agent` logs in the Atlas format, read back from a real worker process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent import cli
from tests.processes import Procs, atlas_env, free_port, wait_until


def start_agent(procs: Procs, tmp_path: Path, **env: str) -> str:
    """`atlas agent start` against a closed port; its log up to livekit's first line."""
    worker = procs.start(
        atlas_env(
            tmp_path / "data",
            LIVEKIT_URL=f"ws://127.0.0.1:{free_port()}",
            LIVEKIT_API_KEY="devkey",
            LIVEKIT_API_SECRET="secret-secret-secret-secret-0123",
            ATLAS_AGENT_MAX_STREAMS="1",
            **env,
        ),
        "agent",
        "start",
    )
    wait_until(lambda: "starting worker" in procs.log(worker), limit_s=120)
    return procs.log(worker)


def test_agent_start_logs_livekit_lines_as_key_value(procs: Procs, tmp_path: Path) -> None:
    log = start_agent(procs, tmp_path)
    # livekit-agents would print JSON here; its record's `extra=` fields come out as key=value.
    assert re.search(r" INFO livekit\.agents starting worker version=\S+", log), log


def test_agent_start_logs_json_when_asked(procs: Procs, tmp_path: Path) -> None:
    log = start_agent(procs, tmp_path, ATLAS_LOG_FORMAT="json")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    starting = next(r for r in records if r["message"] == "starting worker")
    assert starting["logger"] == "livekit.agents"  # our keys, not livekit's own JSON layout
    assert starting["version"]


def test_the_livekit_hook_is_put_back_after_the_cli() -> None:
    from livekit.agents.cli import cli as lk_cli

    original = getattr(lk_cli, "setup_logging")  # noqa: B009
    with cli.atlas_log_format():
        assert getattr(lk_cli, "setup_logging") is not original  # noqa: B009
    assert getattr(lk_cli, "setup_logging") is original  # noqa: B009


def test_an_unknown_log_format_is_refused_before_livekit_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ATLAS_LOG_FORMAT", "xml")
    assert cli.run("agent", ["start"]) == 2
    assert "ATLAS_LOG_FORMAT must be one of text, json, not 'xml'" in capsys.readouterr().err
