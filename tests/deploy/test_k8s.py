"""k8s/: every manifest and every overlay, as the real `kustomize build` renders it (pinned, built
by scripts/tools.sh), validated offline against Kubernetes' schemas (kubernetes-validate, strict:
unknown fields fail), linted, and checked for what the schemas cannot see (selectors,
references, probes, grace periods against the code's own settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.paths import ROOT

from .kustomize_build import Resource, build, containers, load_documents, pod_spec, referenced_files

K8S = ROOT / "k8s"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
TARGETS = {p.relative_to(K8S).as_posix(): p for p in KUSTOMIZATIONS}
# The oldest Kubernetes we promise (1.27: all APIs used here are GA there) and the newest known.
VERSIONS = ["1.27", kubernetes_validate.utils.latest_version()]
ATLAS_IMAGES = ("atlas-avatars", "registry.example.com/atlas/atlas-avatars")


def rendered(name: str) -> list[Resource]:
    return build(TARGETS[name])


def by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def validate(resource: Resource) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{resource['kind']}/{resource['metadata']['name']} invalid for Kubernetes "
                f"{version} at {where}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(exc.message)


def test_the_layout_is_a_base_and_two_overlays() -> None:
    assert set(TARGETS) == {"base", "overlays/dev", "overlays/gpu"}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_rendered_manifests_validate_against_kubernetes_schemas(name: str) -> None:
    resources = rendered(name)
    assert resources
    keys = [(r["kind"], r["metadata"]["name"]) for r in resources]
    assert len(keys) == len(set(keys)), f"duplicate resources in {name}"
    for resource in resources:
        validate(resource)


def test_every_manifest_file_is_valid_and_used() -> None:
    """No orphan YAML: each file is read by a kustomization, or is an example to copy."""
    used: set[Path] = set()
    for directory in KUSTOMIZATIONS:
        used |= referenced_files(directory)
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.resolve() in used:
            continue
        assert path.name.endswith(".example.yaml"), f"{path} is not used by any kustomization"
        for resource in load_documents(path):
            validate(resource)


def test_the_secret_example_holds_no_secret_values() -> None:
    example = load_documents(K8S / "base" / "secret.example.yaml")
    assert [r["kind"] for r in example] == ["Secret"]
    values = example[0]["stringData"]
    assert "data" not in example[0]
    for key, value in values.items():
        assert "REPLACE_ME" in value, f"{key} has a value that is not a placeholder"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_references_resolve(name: str) -> None:
    resources = rendered(name)
    config_maps = by_kind(resources, "ConfigMap")
    secrets = set(by_kind(resources, "Secret"))
    secrets |= {r["metadata"]["name"] for r in load_documents(K8S / "base" / "secret.example.yaml")}
    accounts = set(by_kind(resources, "ServiceAccount"))
    deployments = by_kind(resources, "Deployment")
    namespaces = set(by_kind(resources, "Namespace"))
    for resource in resources:
        if "namespace" in resource["metadata"]:
            assert resource["metadata"]["namespace"] in namespaces
        spec = pod_spec(resource)
        if spec is None:
            continue
        assert spec.get("serviceAccountName") in accounts
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])}
            ports = {p.get("name") for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = container.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str):
                    assert port in ports, f"{probe} names a port the container lacks"
    for deployment in deployments.values():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), "the selector must match the pod labels"
    for service in by_kind(resources, "Service").values():
        selected = [
            d
            for d in deployments.values()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [d["metadata"]["name"] for d in selected] == ["session-api"]
        target = service["spec"]["ports"][0]["targetPort"]
        ports = selected[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert target in {p["name"] for p in ports}
    for hpa in by_kind(resources, "HorizontalPodAutoscaler").values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        # The HPA owns the count: a fixed one would be reset by every apply.
        assert "replicas" not in deployments[ref["name"]]["spec"]
    for pdb in by_kind(resources, "PodDisruptionBudget").values():
        matched = [
            d
            for d in deployments.values()
            if pdb["spec"]["selector"]["matchLabels"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert [d["metadata"]["name"] for d in matched] == ["session-api"]
        if "minAvailable" in pdb["spec"]:
            # A budget that the minimum replica count cannot satisfy blocks every node drain.
            hpa = by_kind(resources, "HorizontalPodAutoscaler")["session-api"]
            assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_pods_are_non_root_sized_and_pinned(name: str) -> None:
    resources = rendered(name)
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec.get("automountServiceAccountToken") is False
        for container in spec["containers"]:
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            image = container["image"]
            assert image.startswith(ATLAS_IMAGES), image
            assert re.search(r":[0-9][\w.-]*$", image), f"{image}: pin a version tag"


def args_of(deployment: Resource) -> list[str]:
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_api_is_probed_scraped_and_drains(name: str) -> None:
    resources = rendered(name)
    api = by_kind(resources, "Deployment")["session-api"]
    template = api["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    args = args_of(api)
    # Metrics are scraped on their own port (ATLAS_METRICS_PORT), never the public one.
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    metrics_port = env["ATLAS_METRICS_PORT"]
    assert annotations["prometheus.io/port"] == metrics_port != option(args, "--port")
    assert env["ATLAS_METRICS_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(option(args, "--port")), "metrics": int(metrics_port)}
    service = by_kind(resources, "Service")["session-api"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    # Each API replica is only a front end; the workers render.
    assert args[0] == "serve" and "--no-worker" in args
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert float(pause[1]) < template["spec"]["terminationGracePeriodSeconds"]


def config_value(resources: list[Resource], key: str) -> str:
    value: str = by_kind(resources, "ConfigMap")["atlas-config"]["data"][key]
    return value


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_workers_and_agents_get_the_time_their_drain_needs(name: str) -> None:
    resources = rendered(name)
    deployments = by_kind(resources, "Deployment")
    worker = deployments["worker"]
    drain = float(option(args_of(worker), "--drain-timeout"))
    assert drain >= 300, "a job may take the full 300 s job timeout"
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain

    agent = deployments["agent"]
    assert args_of(agent)[:2] == ["agent", "start"]
    agent_drain = float(option(args_of(agent), "--drain-timeout"))
    assert agent["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > agent_drain
    if name == "overlays/dev":
        return  # a development cluster does not wait an hour for a session
    # Sessions may run their full length: the drain covers the longest one allowed.
    assert float(config_value(resources, "ATLAS_AGENT_MAX_DURATION_S")) <= agent_drain
    assert float(config_value(resources, "ATLAS_REALTIME_MAX_DURATION_S")) <= agent_drain


def gpu_count(container: dict[str, Any], bound: str) -> Any:
    return container["resources"].get(bound, {}).get("nvidia.com/gpu")


@pytest.mark.parametrize("name", ["base", "overlays/gpu"])
def test_agents_run_on_gpu_nodes(name: str) -> None:
    resources = rendered(name)
    deployments = by_kind(resources, "Deployment")
    gpu_deployments = ["agent"] + (["worker"] if name == "overlays/gpu" else [])
    for deployment_name in gpu_deployments:
        spec = deployments[deployment_name]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert gpu_count(container, "limits") == 1 and gpu_count(container, "requests") == 1
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            spec["tolerations"]
        )
        assert split_name(container["image"]).endswith("atlas-avatars-gpu")
    # The API never holds a GPU.
    api = deployments["session-api"]["spec"]["template"]["spec"]
    assert gpu_count(api["containers"][0], "limits") is None and "nodeSelector" not in api


def split_name(image: str) -> str:
    return image.rsplit(":", 1)[0]


def test_the_dev_overlay_needs_no_gpu() -> None:
    resources = rendered("overlays/dev")
    for container in containers(resources):
        assert gpu_count(container, "limits") is None and gpu_count(container, "requests") is None
        assert not split_name(container["image"]).endswith("-gpu")
    for resource in resources:
        spec = pod_spec(resource)
        if spec is not None:
            assert "nodeSelector" not in spec and "tolerations" not in spec
    assert config_value(resources, "ATLAS_ENV") == "dev"


def test_capacity_matches_the_agents_that_serve_it() -> None:
    """ATLAS_REALTIME_CAPACITY (the API's session slots) = agent pods x streams per pod."""
    for name in sorted(TARGETS):
        resources = rendered(name)
        agents = by_kind(resources, "Deployment")["agent"]["spec"]["replicas"]
        streams = int(config_value(resources, "ATLAS_AGENT_MAX_STREAMS"))
        assert int(config_value(resources, "ATLAS_REALTIME_CAPACITY")) == agents * streams, name


def test_the_migration_job_runs_atlas_migrate() -> None:
    job = by_kind(rendered("base"), "Job")["atlas-migrate"]
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never" and spec["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # so the next release can re-create it


def test_the_dev_overlay_patches_only_what_it_means_to() -> None:
    """kustomize's merge, as the overlay relies on it: null deletes, containers merge by name,
    a list is replaced, keys the patch leaves out stay."""
    base = rendered("base")
    dev = rendered("overlays/dev")
    base_agent = by_kind(base, "Deployment")["agent"]["spec"]["template"]["spec"]
    dev_agent = by_kind(dev, "Deployment")["agent"]["spec"]["template"]["spec"]
    assert "nodeSelector" in base_agent and "nodeSelector" not in dev_agent
    assert dev_agent["containers"][0]["args"][-1] == "90"  # a list is replaced, not merged
    assert dev_agent["containers"][0]["ports"] == base_agent["containers"][0]["ports"]
    assert dev_agent["containers"][0]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert by_kind(dev, "Deployment")["agent"]["spec"]["replicas"] == 1
    assert dev_agent["containers"][0]["image"] == "atlas-avatars:0.1.0"
    dev_config = by_kind(dev, "ConfigMap")["atlas-config"]
    assert dev_config["metadata"]["namespace"] == "atlas-dev"
    assert dev_config["data"]["ATLAS_ENV"] == "dev"
    # Keys the patch does not mention stay as the base has them.
    base_config = by_kind(base, "ConfigMap")["atlas-config"]["data"]
    assert dev_config["data"]["ATLAS_RENDERER_BACKEND"] == base_config["ATLAS_RENDERER_BACKEND"]


def test_yaml_parses_as_plain_data() -> None:
    """No YAML surprises: booleans and numbers in env values must be quoted strings."""
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") not in {"ConfigMap", "Secret"}:
                continue
            for key, value in (doc.get("data") or doc.get("stringData") or {}).items():
                assert isinstance(value, str), f"{path}: {key} must be a quoted string"
