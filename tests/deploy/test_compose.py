"""deploy/compose.yaml: parses, wires its services to each other the way the code reads its
settings, and every Atlas service's environment builds every settings class of the code."""

from __future__ import annotations

import re
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from . import files, surface
from .files import COMPOSE, LIVEKIT_CONFIG, compose, is_atlas_service, service_env

REQUIRED = {"livekit", "postgres", "redis", "seaweedfs", "migrate", "api", "worker", "agent"}


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def command(name: str) -> list[str]:
    value = services()[name]["command"]
    return shlex.split(value) if isinstance(value, str) else list(value)


def option(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1]


def atlas_env(name: str) -> dict[str, Any]:
    return service_env(services()[name])


def test_the_stack_has_every_part() -> None:
    assert REQUIRED <= set(services())
    atlas = {name for name, svc in services().items() if is_atlas_service(svc)}
    assert {"migrate", "api", "worker", "agent"} <= atlas
    build = services()["api"]["build"]
    assert build["target"] in files.final_stages()
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == files.DOCKERFILE


def test_dependencies_exist_and_order_the_start() -> None:
    for name, service in services().items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services(), f"{name} depends on unknown {dependency}"
    api = services()["api"]["depends_on"]
    assert api["migrate"]["condition"] == "service_completed_successfully"
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    published = [
        str(port).split(":")[0]
        for service in services().values()
        for port in service.get("ports", [])
    ]
    assert len(published) == len(set(published)), "a host port is published twice"


def test_livekit_runs_in_dev_mode_with_a_webhook_to_the_api() -> None:
    livekit = services()["livekit"]
    words = command("livekit")
    assert "--dev" in words
    config_path = option(words, "--config")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in livekit["volumes"]}
    assert (COMPOSE.parent / mounts[config_path]).resolve() == LIVEKIT_CONFIG
    config = yaml.safe_load(LIVEKIT_CONFIG.read_text())
    # The webhook reaches the api service on the port `atlas serve` listens on.
    (url,) = config["webhook"]["urls"]
    parts = urlsplit(url)
    assert parts.hostname == "api" and parts.port == int(option(command("api"), "--port"))
    assert parts.path == "/v1/livekit/webhook"
    # --dev's key pair signs the webhook; the API and agent verify and sign with the same.
    for name in ("api", "agent"):
        env = atlas_env(name)
        assert config["webhook"]["api_key"] == env["LIVEKIT_API_KEY"] == "devkey"
        assert env["LIVEKIT_API_SECRET"] == "secret"
        lk = urlsplit(env["LIVEKIT_URL"])
        assert lk.hostname == "livekit" and lk.port == config["port"]
    published = {str(p).split(":")[0] for p in livekit["ports"]}
    rtc = config["rtc"]
    assert {str(config["port"]), str(rtc["tcp_port"]), str(rtc["udp_port"])} <= {
        p.split("/")[0] for p in published
    }


def test_data_services_are_wired_to_the_settings() -> None:
    env = atlas_env("api")
    pg = services()["postgres"]["environment"]
    db = urlsplit(env["ATLAS_DATABASE_URL"])
    assert db.scheme == "postgresql+asyncpg" and db.hostname == "postgres"
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert urlsplit(env["ATLAS_REDIS_URL"]).hostname == "redis"
    # S3: the endpoint name is SeaweedFS's (service or alias), on the S3 port it serves.
    seaweed = services()["seaweedfs"]
    endpoint = urlsplit(env["ATLAS_S3_ENDPOINT_URL"])
    names = {"seaweedfs", *seaweed["networks"]["default"]["aliases"]}
    assert endpoint.hostname in names
    s3_port = re.search(r"-s3\.port=(\d+)", " ".join(seaweed["command"]))
    assert s3_port and endpoint.port == int(s3_port.group(1))
    assert f"{endpoint.port}:{endpoint.port}" in seaweed["ports"]
    # ... and the bucket that s3-init creates is the one ATLAS_STORAGE_URL names.
    bucket = urlsplit(env["ATLAS_STORAGE_URL"]).netloc
    init = services()["s3-init"]
    assert f'Bucket="{bucket}"' in init["command"][0]
    assert env["ATLAS_S3_ENDPOINT_URL"] in init["command"][0]


def test_every_atlas_service_shares_one_environment() -> None:
    base = atlas_env("api")
    for name, service in services().items():
        if is_atlas_service(service):
            env = service_env(service)
            assert {k: env[k] for k in base} == base, f"{name} diverges from the shared env"


@pytest.mark.parametrize("name", ["api", "worker", "agent", "migrate"])
def test_the_settings_load_from_each_service_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Working defaults: every settings class of the code accepts the service's environment."""
    for key in list(__import__("os").environ):
        if key.startswith(("ATLAS_", "LIVEKIT_", "AWS_")):
            monkeypatch.delenv(key)
    for key, value in atlas_env(name).items():
        if value is not None:  # no value: passed through from the host shell, if set there
            value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
            monkeypatch.setenv(key, value)
    classes = surface.settings_classes()
    assert len(classes) >= 3
    for cls in classes:
        cls()  # raises on a bad or refused value
    from session_api.config import Settings

    settings = Settings()
    assert settings.storage_kind == "s3" and not settings.is_embedded
    assert not settings.livekit_missing


def test_the_worker_and_agent_get_their_drain_time() -> None:
    worker = services()["worker"]
    drain = float(option(command("worker"), "--drain-timeout"))
    assert seconds(worker["stop_grace_period"]) > drain
    agent = services()["agent"]
    assert seconds(agent["stop_grace_period"]) > float(option(command("agent"), "--drain-timeout"))


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)
