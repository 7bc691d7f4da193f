"""k8s/ as the cluster would get it: the real `kustomize build` of each kustomization.

The binary is the pinned release that scripts/tools.sh builds once per machine from its Go
module. Without Go the k8s tests skip locally; under CI (CI=true) they fail instead, so a
missing tool can never pass unseen.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.paths import ROOT

Resource = dict[str, Any]
TOOLS = ROOT / "scripts" / "tools.sh"


@functools.cache
def kustomize() -> str:
    """The kustomize binary's path (built on first use; minutes once per machine)."""
    done = subprocess.run(
        ["bash", str(TOOLS), "kustomize"], capture_output=True, text=True, timeout=1200
    )
    if done.returncode != 0:
        why = f"scripts/tools.sh kustomize failed: {done.stderr.strip()[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return done.stdout.strip().splitlines()[-1]


@functools.cache
def _built(directory: Path) -> str:
    done = subprocess.run(
        [kustomize(), "build", str(directory)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return done.stdout


def build(directory: Path) -> list[Resource]:
    """The resources `kustomize build DIRECTORY` emits (a fresh copy on every call)."""
    return [doc for doc in yaml.safe_load_all(_built(directory.resolve())) if doc]


def load_documents(path: Path) -> list[Resource]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        assert isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc, (
            f"{path}: a document without kind/apiVersion"
        )
    return docs


def referenced_files(directory: Path) -> set[Path]:
    """Every file a kustomization (and the ones it includes) names as a resource or patch."""
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files = {(directory / "kustomization.yaml").resolve()}
    for entry in data.get("resources", []):
        target = (directory / entry).resolve()
        files |= referenced_files(target) if target.is_dir() else {target}
    for patch in data.get("patches", []):
        if "path" in patch:
            files.add((directory / patch["path"]).resolve())
    return files


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    kind = resource["kind"]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
        spec: dict[str, Any] = resource["spec"]["template"]["spec"]
        return spec
    if kind == "CronJob":
        spec = resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    return None


def containers(resources: list[Resource]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for resource in resources:
        spec = pod_spec(resource)
        if spec is not None:
            out.extend(spec.get("initContainers", []))
            out.extend(spec.get("containers", []))
    return out
