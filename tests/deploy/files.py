"""Readers for the deployment files: the Dockerfile's stages, the compose file, the rendered k8s
manifests, and the operator docs; each yields what it uses, with where it uses it."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT

from .kustomize_build import Resource, build, load_documents, pod_spec

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
LIVEKIT_CONFIG = ROOT / "deploy" / "livekit.yaml"
K8S = ROOT / "k8s"
DOCS = [ROOT / "docs" / "operations.md", ROOT / "deploy" / "README.md"]
ATLAS_IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?/)*atlas-avatars(?:-gpu)?(?::[\w.-]+)?$")


@dataclass(frozen=True)
class Use:
    where: str
    value: Any


# --- Dockerfile --------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def dockerfile_lines(text: str) -> Iterator[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuations joined, comment lines dropped."""
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        yield keyword.upper(), rest.strip()
        current = ""


def dockerfile_stages(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """Global ARG defaults and the stages by name (FROM ... AS name), bases with ARGs resolved."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for keyword, rest in dockerfile_lines(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stage = stages[name] = Stage(name=name, base=base)
        elif stage is None:
            if keyword == "ARG" and "=" in rest:
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stage.instructions.append((keyword, rest))
    return args, stages


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def env_pairs(rest: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in shlex.split(rest):
        key, sep, value = word.partition("=")
        assert sep, f"ENV {rest!r}: use the KEY=VALUE form"
        out[key] = value
    return out


def image_argv(stage: Stage) -> list[str]:
    entrypoint = stage.last("ENTRYPOINT")
    cmd = stage.last("CMD")
    return (exec_form(entrypoint) if entrypoint else []) + (exec_form(cmd) if cmd else [])


def final_stages() -> dict[str, Stage]:
    _, stages = dockerfile_stages()
    return {name: stages[name] for name in ("cpu", "gpu") if name in stages}


# --- compose -----------------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def is_atlas_service(service: dict[str, Any]) -> bool:
    if ATLAS_IMAGE.match(str(service.get("image", ""))):
        return True
    build_spec = service.get("build")
    context = build_spec.get("context") if isinstance(build_spec, dict) else build_spec
    return context is not None and (COMPOSE.parent / context).resolve() == ROOT


def service_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return {k: v for k, _, v in (item.partition("=") for item in env)}
    return dict(env)


def compose_commands() -> list[Use]:
    out = []
    for name, service in compose()["services"].items():
        if not is_atlas_service(service) or "entrypoint" in service:
            continue
        command = service.get("command")
        if command is None:
            target = (service.get("build") or {}).get("target", "cpu")
            out.append(
                Use(f"compose service {name} (image default)", image_argv(final_stages()[target]))
            )
            continue
        words = shlex.split(command) if isinstance(command, str) else list(command)
        out.append(Use(f"compose service {name}", ["atlas", *words]))
    return out


def compose_env() -> list[Use]:
    out = []
    for name, service in compose()["services"].items():
        if is_atlas_service(service):
            out.extend(Use(f"compose service {name}", key) for key in service_env(service))
    # Host variables interpolated into the file (${NAME}, ${NAME:-default}).
    for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()):
        out.append(Use("compose interpolation", match.group(1)))
    return out


# --- k8s ---------------------------------------------------------------------------------------
def k8s_targets() -> dict[str, Path]:
    return {
        p.parent.relative_to(K8S).as_posix(): p.parent
        for p in sorted(K8S.rglob("kustomization.yaml"))
    }


def k8s_resources() -> list[tuple[str, Resource]]:
    out = [(name, r) for name, path in k8s_targets().items() for r in build(path)]
    for example in sorted(K8S.rglob("*.example.yaml")):
        out.extend((example.relative_to(ROOT).as_posix(), r) for r in load_documents(example))
    return out


def atlas_containers() -> Iterator[tuple[str, Resource, dict[str, Any]]]:
    for target, resource in k8s_resources():
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("initContainers", []) + spec["containers"]:
            if ATLAS_IMAGE.match(container["image"]):
                where = f"k8s {target}: {resource['kind']}/{resource['metadata']['name']}"
                yield where, resource, container


def k8s_commands() -> list[Use]:
    return [
        Use(where, list(container.get("command") or ["atlas"]) + list(container.get("args", [])))
        for where, _, container in atlas_containers()
    ]


def k8s_env() -> list[Use]:
    out = []
    for target, resource in k8s_resources():
        where = f"k8s {target}: {resource['kind']}/{resource['metadata']['name']}"
        if resource["kind"] == "ConfigMap":
            out.extend(Use(where, key) for key in resource.get("data", {}))
        if resource["kind"] == "Secret":
            for section in ("data", "stringData"):
                out.extend(Use(where, key) for key in resource.get(section, {}))
    for where, _, container in atlas_containers():
        out.extend(Use(where, item["name"]) for item in container.get("env", []))
    return out


# --- docs --------------------------------------------------------------------------------------
def code_blocks(path: Path) -> Iterator[str]:
    inside = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if inside:
            yield line


def doc_commands() -> list[Use]:
    """`atlas ...` commands in the docs: in code blocks as the first word of a line, after
    `exec SERVICE` / `run SERVICE` (compose) or after `--` (kubectl exec); and inline code."""
    out = []
    for path in DOCS:
        if not path.exists():
            continue
        for line in code_blocks(path):
            text = line.split(" #", 1)[0].strip().removeprefix("$ ")
            for piece in re.split(r"\s*(?:&&|\|\||;|\|)\s*", text):
                try:
                    words = shlex.split(piece)
                except ValueError:
                    continue
                for i, word in enumerate(words):
                    starts = (
                        i == 0
                        or words[i - 1] == "--"
                        or (i >= 2 and words[i - 2] in {"exec", "run"})
                    )
                    if Path(word).name == "atlas" and starts:
                        argv = ["atlas"]
                        for rest in words[i + 1 :]:
                            if rest.startswith(("$(", ">", "<")):
                                break
                            argv.append(rest)
                        out.append(Use(f"{path.relative_to(ROOT)}: {line.strip()}", argv))
                        break
        # Inline code: `atlas worker --concurrency N`.
        for match in re.finditer(r"`(atlas [^`]+)`", path.read_text()):
            out.append(
                Use(f"{path.relative_to(ROOT)}: `{match.group(1)}`", shlex.split(match.group(1)))
            )
    return out


def doc_env() -> list[Use]:
    out = []
    for path in DOCS:
        if path.exists():
            for match in re.finditer(r"\bATLAS_[A-Z0-9_]+", path.read_text()):
                out.append(Use(str(path.relative_to(ROOT)), match.group(0)))
    return out
