"""Settings errors never show secret values, whatever field failed (API and agent settings)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from agent.config import AgentSettings
from session_api.config import Settings
from tests.paths import ROOT

SECRET = "Sup3r-s3cret-signing-key-9f8e7d6c"
LK_SECRET = "lk-api-secret-TAIL-5a4b3c2d1e"
OPENAI = "sk-openai-test-TAIL-0f1e2d3c"


def secret_free(text: str) -> None:
    for secret in (SECRET, LK_SECRET, OPENAI):
        for fragment in (secret, secret[-8:], secret[:8]):
            assert fragment not in text, f"{fragment!r} leaked into: {text}"


@pytest.mark.parametrize(
    "bad",
    [
        {"ATLAS_WORKER_CONCURRENCY": "many"},  # an unrelated field fails
        {"ATLAS_WORKER_CONCURRENCY": SECRET},  # a secret pasted into the wrong variable
        {"ATLAS_SECRET_KEY": "short" + SECRET[-8:]},  # the secret itself fails (too short)
        {"ATLAS_ENV": "production"},
    ],
)
def test_api_settings_errors_show_no_secret(
    monkeypatch: pytest.MonkeyPatch, bad: dict[str, str]
) -> None:
    monkeypatch.setenv("ATLAS_ENV", "prod")
    monkeypatch.setenv("ATLAS_SECRET_KEY", SECRET)
    monkeypatch.setenv("LIVEKIT_API_SECRET", LK_SECRET)
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    secret_free(str(caught.value))
    secret_free(repr(caught.value.errors(include_input=False)))


def test_api_settings_keep_secrets_out_of_their_repr() -> None:
    settings = Settings(secret_key=SECRET, livekit_api_secret=LK_SECRET)
    secret_free(repr(settings))
    assert settings.secret_key.get_secret_value() == SECRET


def test_agent_settings_errors_show_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", LK_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI)
    monkeypatch.setenv("ATLAS_AGENT_MAX_STREAMS", OPENAI)  # pasted into the wrong variable
    with pytest.raises(ValidationError) as caught:
        AgentSettings()
    secret_free(str(caught.value))


def test_atlas_serve_prints_no_secret_on_a_bad_setting(tmp_path: object) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "ATLAS_ENV": "prod",
        "ATLAS_SECRET_KEY": SECRET,
        "LIVEKIT_API_SECRET": LK_SECRET,
        "ATLAS_MAX_CONNECTIONS": "0",
        "ATLAS_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "atlas.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode != 0
    assert "max_connections" in done.stderr
    secret_free(done.stdout + done.stderr)
