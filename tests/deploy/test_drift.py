"""Drift: every `atlas` command, ATLAS_* variable and API path that the Dockerfile, compose,
k8s and the operator docs use must exist in the code. Collected generically (surface.py): new
settings classes, commands and routes are picked up without editing these tests.

A failure names the file and the missing thing. Commands, settings or routes that belong to a
branch not merged yet (the LiveKit agent, realtime sessions) fail here until it lands; that is
the point of the check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

import pytest
import yaml

from session_api.metrics_listener import METRICS_PATH

from . import files, surface
from .files import Use

# Variables the Atlas containers may carry although no settings class declares them: each is
# read by a library or the runtime itself.
STANDARD_ENV = {
    # boto3 (S3 storage)
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    # livekit-api / livekit-agents (the agent's CLI reads these itself)
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    # the LiveKit Agents provider plugins (Deepgram, OpenAI, ElevenLabs)
    "DEEPGRAM_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ELEVEN_API_KEY",
    # Python and the NVIDIA container runtime
    "PATH",
    "LD_LIBRARY_PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
}
# Variables of the compose file's third-party services and of docker compose itself.
COMPOSE_HOST_ENV = {"DEEPGRAM_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ELEVEN_API_KEY"}


def report(problems: Iterable[str]) -> None:
    found = sorted(set(problems))
    if found:
        pytest.fail(
            "deployment files use what the code does not define:\n  " + "\n  ".join(found),
            pytrace=False,
        )


def dockerfile_commands() -> list[Use]:
    return [
        Use(f"Dockerfile target {name}", files.image_argv(stage))
        for name, stage in files.final_stages().items()
    ]


def dockerfile_env() -> list[Use]:
    return [
        Use(f"Dockerfile target {name}", key)
        for name, stage in files.final_stages().items()
        for rest in stage.all("ENV")
        for key in files.env_pairs(rest)
    ]


# --- the check can fail ----------------------------------------------------------------------
def test_the_code_surface_is_read_from_the_code() -> None:
    names = surface.env_names()
    # One from each package that has settings today; new classes add to these by themselves.
    assert "ATLAS_DATA_DIR" in names and "ATLAS_DATABASE_URL" in names
    assert "ATLAS_RENDERER_BACKEND" in names and "ATLAS_RENDERER_MODEL" in names
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", n) for n in names)
    table = surface.command_table()
    assert {"serve", "worker", "migrate", "keys"} <= set(table)
    assert surface.api_serves("/v1/health") and not surface.api_serves("/v1/healthz")


def test_the_command_check_rejects_what_does_not_exist() -> None:
    assert surface.check_command(["atlas", "serve", "--host", "0.0.0.0", "--no-worker"]) is None
    assert surface.check_command(["atlas", "keys", "create", "--name", "x"]) is None
    assert surface.check_command(["atlas", "keys", "revoke", "sk_live_abcd"]) is None
    assert "not in atlas/cli.py" in (surface.check_command(["atlas", "sevre"]) or "")
    assert "no option --workers" in (
        surface.check_command(["atlas", "serve", "--workers", "2"]) or ""
    )
    assert "no subcommand 'remove'" in (surface.check_command(["atlas", "keys", "remove"]) or "")
    assert "does not run" in (surface.check_command(["python", "-m", "x"]) or "")


def test_subcommands_are_read_from_argparse_and_click_help() -> None:
    argparse_help = "usage: atlas keys [-h] {create,list,revoke} ...\n\nManage API keys.\n"
    assert surface.subcommands(argparse_help) == {"create", "list", "revoke"}
    typer_help = (
        " Usage: atlas agent [OPTIONS] COMMAND [ARGS]...\n\n"
        "╭─ Options ──────────╮\n│ --help   Show this. │\n╰────────────────────╯\n"
        "╭─ Commands ─────────────────────────╮\n"
        "│ start            Run the worker.   │\n"
        "│ download-files   Fetch the models. │\n"
        "╰────────────────────────────────────╯\n"
    )
    assert surface.subcommands(typer_help) == {"start", "download-files"}
    click_help = "Usage: x [OPTIONS] COMMAND\n\nCommands:\n  dev    Dev mode.\n  start  Prod.\n"
    assert surface.subcommands(click_help) == {"dev", "start"}


# --- the drift checks ------------------------------------------------------------------------
def all_commands() -> list[Use]:
    return dockerfile_commands() + files.compose_commands() + files.k8s_commands()


def test_deployment_files_run_atlas_commands() -> None:
    uses = all_commands()
    assert {" ".join(u.value[:2]) for u in uses} >= {"atlas serve", "atlas worker", "atlas migrate"}
    assert any(u.value[:3] == ["atlas", "agent", "start"] for u in uses)


def test_every_atlas_command_in_deployment_files_exists() -> None:
    problems = []
    for use in all_commands():
        problem = surface.check_command(use.value)
        if problem:
            problems.append(f"{use.where}: {' '.join(use.value)}\n      -> {problem}")
    report(problems)


def grouped(uses: Iterable[Use]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for use in uses:
        out.setdefault(use.value, [])
        if use.where not in out[use.value]:
            out[use.value].append(use.where)
    return out


def test_every_atlas_variable_in_deployment_files_is_a_setting() -> None:
    known = surface.env_names()
    uses = dockerfile_env() + files.compose_env() + files.k8s_env()
    assert len(uses) > 20
    classes = ", ".join(c.__name__ for c in surface.settings_classes())
    missing = grouped(u for u in uses if u.value.startswith("ATLAS_") and u.value not in known)
    report(
        f"{name} is not read by any settings class ({classes}); used by: {'; '.join(where)}"
        for name, where in missing.items()
    )


def test_other_variables_are_settings_aliases_or_standard_names() -> None:
    """A typo in LIVEKIT_API_SECRET is as silent as one in an ATLAS_ name."""
    known = set(surface.env_names()) | STANDARD_ENV
    problems = []
    for use in dockerfile_env() + files.compose_env() + files.k8s_env():
        if use.value.startswith("ATLAS_") or use.value in known:
            continue
        if use.where == "compose interpolation" and use.value in COMPOSE_HOST_ENV:
            continue
        problems.append(f"{use.where}: {use.value} is neither a setting nor a standard name")
    report(problems)


def api_paths() -> list[Use]:
    """HTTP paths of the API that deployment files call: probes, scrapes, healthchecks, the
    LiveKit webhook."""
    out = []
    for where, resource, container in files.atlas_containers():
        words = list(container.get("command") or ["atlas"]) + container.get("args", [])
        if words[1:2] != ["serve"]:
            continue
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container.get(probe, {}).get("httpGet", {}).get("path")
            if path:
                out.append(Use(f"{where} {probe}", path))
        annotations = resource["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/path" in annotations:
            out.append(Use(f"{where} prometheus.io/path", annotations["prometheus.io/path"]))
    for name, stage in files.final_stages().items():
        for check in stage.all("HEALTHCHECK"):
            for url in re.findall(r"http://127\.0\.0\.1:8000(/[^'\" ]*)", check):
                out.append(Use(f"Dockerfile target {name} HEALTHCHECK", url))
    livekit = yaml.safe_load(files.LIVEKIT_CONFIG.read_text())
    for url in livekit["webhook"]["urls"]:
        out.append(Use("deploy/livekit.yaml webhook", urlsplit(url).path))
    return out


def test_every_api_path_in_deployment_files_is_served() -> None:
    uses = api_paths()
    assert {u.value for u in uses} >= {"/v1/health", "/v1/ready", "/metrics"}
    report(
        f"{u.where}: {u.value} is not a route of the API"
        for u in uses
        if not u.where.endswith("prometheus.io/path") and not surface.api_serves(u.value)
    )
    # Scrapes go to the metrics listener (ATLAS_METRICS_PORT), and the public port has no metrics.
    scrapes = [u for u in uses if u.where.endswith("prometheus.io/path")]
    assert scrapes
    report(
        f"{u.where}: {u.value} is not the metrics listener's path ({METRICS_PATH})"
        for u in scrapes
        if u.value != METRICS_PATH
    )
    assert not surface.api_serves(METRICS_PATH), "the public API port serves metrics"


def test_the_operator_docs_name_real_commands_and_settings() -> None:
    known = surface.env_names()
    problems = []
    for use in files.doc_env():
        name = use.value
        exists = any(k.startswith(name) for k in known) if name.endswith("_") else name in known
        if not exists:
            problems.append(f"{use.where}: {name} is not a setting")
    commands = files.doc_commands()
    assert commands, "the docs show no atlas command"
    for use in commands:
        problem = surface.check_command(use.value)
        if problem:
            problems.append(f"{use.where}\n      -> {problem}")
    report(problems)
