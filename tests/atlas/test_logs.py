"""atlas/logs.py: one log format with the `extra=` fields, read back from real log lines."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from atlas import logs
from tests.paths import FACE, SPEECH
from tests.processes import ATLAS, Procs, atlas_env, free_port, wait_until


def record(msg: str = "job submitted", **extra: object) -> logging.LogRecord:
    rec = logging.getLogger("session_api").makeRecord(
        "session_api", logging.INFO, __file__, 1, msg, (), None, extra=extra
    )
    return rec


def test_text_lines_end_with_the_extra_fields_as_key_value() -> None:
    line = logs.TextFormatter().format(record(job_id="job_abc", attempt=2))
    assert line.endswith(" INFO session_api job submitted job_id=job_abc attempt=2")


def test_text_values_with_spaces_or_newlines_stay_one_quoted_field() -> None:
    line = logs.TextFormatter().format(record(error="bad thing\nhappened", empty=""))
    assert line.endswith(' error="bad thing\\nhappened" empty=""')
    assert "\n" not in line


def test_a_traceback_follows_the_line_that_carries_the_fields() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "died", (), sys.exc_info(), extra={"task": "t1"}
        )
    first, *rest = logs.TextFormatter().format(rec).splitlines()
    assert first.endswith("ERROR x died task=t1")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"


def test_json_lines_carry_the_fields_at_top_level() -> None:
    payload = json.loads(logs.JsonFormatter().format(record(job_id="job_abc", level="x")))
    assert payload["message"] == "job submitted"
    assert payload["logger"] == "session_api"
    assert payload["job_id"] == "job_abc"
    assert payload["level"] == "INFO", "a field never hides the record's own keys"
    assert payload["time"].endswith("+00:00")


def test_the_format_comes_from_atlas_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATLAS_LOG_FORMAT", raising=False)
    assert isinstance(logs.formatter(), logs.TextFormatter)
    monkeypatch.setenv("ATLAS_LOG_FORMAT", "json")
    assert isinstance(logs.formatter(), logs.JsonFormatter)
    monkeypatch.setenv("ATLAS_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="^ATLAS_LOG_FORMAT must be one of text, json, not 'xml'$"):
        logs.formatter()


# --- a real `atlas serve` ------------------------------------------------------------------------
def submit_a_job(procs: Procs, env: dict[str, str]) -> tuple[str, str]:
    """Start `atlas serve --no-worker`, submit one job; (its job id, the server's log)."""
    created = subprocess.run(
        [*ATLAS, "keys", "create", "--name", "logs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    key = created.stdout.splitlines()[0]
    port = free_port()
    server = procs.start(env, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/v1/health", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(healthy, limit_s=90, step_s=0.1)
    reply = requests.post(
        f"{base}/v1/generate",
        headers={"Authorization": f"Bearer {key}"},
        files={
            "audio": ("speech.wav", SPEECH.read_bytes(), "audio/wav"),
            "image": ("face.jpg", FACE.read_bytes(), "image/jpeg"),
        },
        timeout=60,
    )
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    # The line is written before the response is sent; the wait only guards against a hang.
    wait_until(lambda: job_id in procs.log(server), limit_s=30)
    return job_id, procs.log(server)


def test_serve_logs_job_submitted_with_its_job_id(procs: Procs, tmp_path: Path) -> None:
    job_id, log = submit_a_job(procs, atlas_env(tmp_path / "data"))
    submitted = [line for line in log.splitlines() if " job submitted " in line]
    assert len(submitted) == 1, log
    assert re.search(rf" INFO session_api job submitted job_id={job_id} key_id=\S+$", submitted[0])
    # uvicorn's own lines go through the same formatter, without its ANSI copy of the message.
    assert re.search(r" INFO uvicorn\.error Uvicorn running on http://127\.0\.0\.1:\d+ ", log)
    assert "color_message" not in log


def test_serve_logs_json_lines_with_the_ids(procs: Procs, tmp_path: Path) -> None:
    job_id, log = submit_a_job(procs, atlas_env(tmp_path / "data", ATLAS_LOG_FORMAT="json"))
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    submitted = [r for r in records if r["message"] == "job submitted"]
    assert len(submitted) == 1, log
    assert submitted[0]["job_id"] == job_id
    assert submitted[0]["key_id"]
    assert submitted[0]["logger"] == "session_api"


def test_serve_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    env = atlas_env(tmp_path / "data", ATLAS_LOG_FORMAT="xml")
    done = subprocess.run(
        [*ATLAS, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "ATLAS_LOG_FORMAT must be one of text, json, not 'xml'" in done.stderr
