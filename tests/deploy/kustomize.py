"""A small, strict subset of kustomize, enough to render k8s/ offline for validation.

There is no kustomize binary here (and none on PyPI), so the tests build the overlays with this
and validate what comes out. It supports exactly what k8s/ uses and refuses anything else, so a
kustomization cannot quietly use a feature these tests do not model:

- `resources`: files (multi-document YAML) and directories holding a kustomization.yaml;
- `patches`: `- path: FILE`, strategic-merge patches identified by kind and metadata.name
  (maps merge, `null` deletes a key, lists of containers/volumes/env/... merge by `name`,
  other lists are replaced);
- `namespace`, `replicas` (`name`, `count`) and `images` (`name`, `newName`, `newTag`).

Order, as kustomize does it: resources, then patches, then namespace, replicas and images.
`kubectl kustomize k8s/overlays/NAME` is the real thing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "namespace", "replicas", "images"}
MERGE_BY_NAME = {"containers", "initContainers", "volumes", "volumeMounts", "env", "envFrom"}
# Kinds without a namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


class KustomizeError(Exception):
    pass


def load_documents(path: Path) -> list[Resource]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: a document without kind/apiVersion")
    return docs


def kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    unknown = set(data) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: fields not modelled by the tests: {sorted(unknown)}")
    if data.get("kind") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization")
    return data


def referenced_files(directory: Path) -> set[Path]:
    """Every file a kustomization (and the ones it includes) reads."""
    data = kustomization(directory)
    files = {(directory / "kustomization.yaml").resolve()}
    for entry in data.get("resources", []):
        target = (directory / entry).resolve()
        files |= referenced_files(target) if target.is_dir() else {target}
    for patch in data.get("patches", []):
        files.add((directory / patch["path"]).resolve())
    return files


def build(directory: Path) -> list[Resource]:
    data = kustomization(directory)
    resources: list[Resource] = []
    for entry in data.get("resources", []):
        target = directory / entry
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            resources.extend(load_documents(target))
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    resources = copy.deepcopy(resources)
    for patch_entry in data.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{directory}: only `- path: FILE` patches are modelled")
        for patch in load_documents(directory / patch_entry["path"]):
            target = find(resources, patch["kind"], patch["metadata"]["name"])
            merged = merge(target, patch)
            target.clear()
            target.update(merged)
    if "namespace" in data:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = data["namespace"]
    for entry in data.get("replicas", []):
        find(resources, "Deployment", entry["name"])["spec"]["replicas"] = entry["count"]
    for entry in data.get("images", []):
        unknown = set(entry) - {"name", "newName", "newTag"}
        if unknown:
            raise KustomizeError(f"{directory}: image fields not modelled: {sorted(unknown)}")
        for container in containers(resources):
            set_image(container, entry)
    return resources


def find(resources: list[Resource], kind: str, name: str) -> Resource:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    if len(matches) != 1:
        raise KustomizeError(f"{kind}/{name}: {len(matches)} matching resources")
    return matches[0]


def merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, value in patch.items():
            if value is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], value, k)
            else:
                out[k] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_BY_NAME:
        out_list = [dict(item) for item in base]
        for item in patch:
            names = [
                i for i, existing in enumerate(out_list) if existing.get("name") == item["name"]
            ]
            if names:
                out_list[names[0]] = merge(out_list[names[0]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


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


def split_image(image: str) -> tuple[str, str | None]:
    name, _, rest = image.partition("@")
    if rest:
        return name, "@" + rest
    head, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return image, None


def set_image(container: dict[str, Any], entry: dict[str, str]) -> None:
    name, tag = split_image(container["image"])
    if name != entry["name"]:
        return
    new_name = entry.get("newName", name)
    new_tag = entry.get("newTag", tag)
    if new_tag is None:
        container["image"] = new_name
    elif new_tag.startswith("@"):
        container["image"] = new_name + new_tag
    else:
        container["image"] = f"{new_name}:{new_tag}"
