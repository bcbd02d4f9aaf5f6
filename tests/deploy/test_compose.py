"""docker-compose.yml, validated offline by docker-compose 1.29.2 and checked for behaviour.

scripts/compose-venv.sh builds (or reuses) .steward/compose-venv, so this runs on a fresh
machine too. `docker-compose config` validates the file against the Compose Specification and
resolves it (anchors, merges, substitution); the resolved services are then checked for what
the stack needs to work: hardened Steward containers that start in order, KRaft Kafka, a
MongoDB replica set, traces reaching Jaeger through the collector, Prometheus scraping every
service, Grafana provisioned, no secret in the repository, every mounted file present.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "compose" / "env.example"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"

HTTP_SERVICES = ("ingest", "moderation", "metrics", "notifier")
STEWARD_CONTAINERS = (*HTTP_SERVICES, "discord-bridge", "topics", "indexes")
# What compose refuses to start without (`${VAR:?}`); test values, not secrets.
REQUIRED = {
    "STEWARD_GENERIC_SIGNING_SECRET": "test-generic-secret",
    "STEWARD_METRICS_API_KEY": "test-metrics-key",
    "STEWARD_NOTIFIER_API_KEY": "test-notifier-key",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|WEBHOOK_URL")


def _load_test_images():
    """The Dockerfile reader of test_images.py (the compose file must agree with the images)."""
    name = "_steward_deploy_test_images"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_images.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


images = _load_test_images()


@pytest.fixture(scope="module")
def dockerfile():
    return images.Dockerfile.parse(images.DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose_bin() -> Path:
    """docker-compose 1.29.2 from its own venv; built here on a fresh machine (a couple of
    minutes), reused after."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "compose-venv.sh")], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"scripts/compose-venv.sh failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    binary = Path(result.stdout.strip().splitlines()[-1]) / "docker-compose"
    assert binary.is_file(), result.stdout
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "1.29.2", version.stdout + version.stderr
    return binary


def run_compose(compose_bin: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """`docker-compose -f docker-compose.yml ARGS` with only ``env`` (no developer's .env: an
    empty --env-file stands in for it)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(REQUIRED if env is None else env)}
    return subprocess.run(
        [str(compose_bin), "-f", str(COMPOSE_FILE), "--env-file", str(empty), *args],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture(scope="module")
def config(compose_bin, tmp_path_factory) -> dict:
    result = run_compose(compose_bin, tmp_path_factory.mktemp("compose"), "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(config) -> dict[str, dict]:
    return config["services"]


def seconds(duration: str | int | float) -> float:
    """A compose duration ("1m30s", "500ms", "20s") in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((Path(volume["source"]), volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith(("/", ".")):
            mounts.append((Path(source), target))
    return mounts


def mount_source(service: dict, target: str) -> Path:
    for source, mounted_at in bind_mounts(service):
        if mounted_at == target:
            return source
    raise AssertionError(f"nothing is mounted at {target}: {service.get('volumes')}")


# --- validation -----------------------------------------------------------------------------
def test_compose_file_validates_with_docker_compose_1_29(compose_bin, tmp_path):
    result = run_compose(compose_bin, tmp_path, "config", "-q")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert "version" not in yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8")), (
        "the Compose Specification without `version:` (conditions in depends_on need it)")


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_compose_refuses_to_start_without_each_required_secret(compose_bin, tmp_path, variable):
    env = {k: v for k, v in REQUIRED.items() if k != variable}
    result = run_compose(compose_bin, tmp_path, "config", "-q", env=env)
    assert result.returncode != 0
    assert variable in result.stderr and "deploy/compose/env.example" in result.stderr, result.stderr


def test_no_secret_value_is_written_in_the_repository(services):
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    checked = 0
    for name, service in raw["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            if key == "<<" or not SECRET_NAME.search(key):
                continue
            checked += 1
            assert isinstance(value, str), (name, key)
            for substitution in re.findall(r"\$\{([^}]*)\}", value):
                assert re.fullmatch(r"\w+(:-|:\?.*)?", substitution), (
                    f"{name}.{key}: ${{{substitution}}} has a default value")
            assert "${" in value, f"{name}.{key} is written in the file"
    assert checked >= 10
    # Resolved with only the required test values: every secret is one of them, or empty.
    allowed = set(REQUIRED.values()) | {""}
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and value is not None:
                values = json.loads(value) if key.endswith("API_KEYS") else [value]
                assert set(values) <= allowed, f"{name}.{key} = {value!r}"


def test_env_example_documents_every_variable_the_compose_file_reads():
    lines = [re.sub(r"\s#\s.*$", "", line) for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
             if not line.lstrip().startswith("#")]
    used = set(re.findall(r"\$\{(\w+)", "\n".join(lines)))
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    for service in raw["services"].values():  # pass-through variables (no value in the file)
        used |= {k for k, v in (service.get("environment") or {}).items() if v is None}
    documented = set(re.findall(r"^#?\s*(\w+)=", ENV_EXAMPLE.read_text(encoding="utf-8"), re.MULTILINE))
    assert used - documented == set(), f"not in deploy/compose/env.example: {sorted(used - documented)}"
    assert set(REQUIRED) <= documented
    # and it holds no value for any secret
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and SECRET_NAME.search(key):
            assert value == "", line


# --- the Steward containers ------------------------------------------------------------------
def test_steward_containers_are_built_from_the_dockerfiles_targets(services, dockerfile):
    built = {name for name, service in services.items() if "build" in service}
    assert built == set(STEWARD_CONTAINERS)
    for name in STEWARD_CONTAINERS:
        build = services[name]["build"]
        assert Path(build["context"]) == REPO
        assert build["target"] == ("moderation" if name == "moderation" else "slim"), name
        assert build["target"] in dockerfile.names()
        image, _, tag = services[name]["image"].rpartition(":")
        assert image and tag and tag != "latest", services[name]["image"]


def test_steward_containers_are_hardened(services, dockerfile):
    image_uid = {t: dockerfile.effective(t, "USER")[-1].args.split(":")[0] for t in ("slim", "moderation")}
    for name in STEWARD_CONTAINERS:
        service = services[name]
        target = service["build"]["target"]
        assert service.get("read_only") is True, f"{name}: root filesystem not read-only"
        uid = str(service.get("user", "")).split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{name}: user {service.get('user')!r}"
        assert uid == image_uid[target], f"{name}: user {uid} is not the image's {image_uid[target]}"
        assert "ALL" in service.get("cap_drop", []), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        tmpfs = {entry.split(":")[0] for entry in service.get("tmpfs", [])}
        assert "/tmp" in tmpfs, f"{name}: /tmp must be writable (tmpfs)"
        home = service.get("environment", {}).get("STEWARD_HOME") or dockerfile.env(target)["STEWARD_HOME"]
        if target == "slim":
            assert home in tmpfs, f"{name}: STEWARD_HOME {home} is not writable"
        else:
            assert home == dockerfile.env("moderation")["STEWARD_HOME"], "the baked model bundle"
        assert seconds(service["stop_grace_period"]) > 0


def test_http_services_run_their_app_with_a_healthcheck_and_a_grace_period(services, dockerfile):
    argv = images.entrypoint_and_cmd(dockerfile, "slim")
    graceful = int(argv[argv.index("--timeout-graceful-shutdown") + 1])
    for name in HTTP_SERVICES:
        service = services[name]
        assert service["command"] == [f"services.{name}.app:create_app"], service.get("command")
        assert "entrypoint" not in service, f"{name}: the image's uvicorn entrypoint is what runs"
        assert (REPO / "services" / name / "app.py").is_file()
        check = service["healthcheck"]
        assert not check.get("disable") and check["test"][0] == "CMD", check
        assert check["test"][1:] == images.healthcheck_command(dockerfile, service["build"]["target"]), (
            f"{name}: the compose healthcheck differs from the image's HEALTHCHECK")
        assert seconds(check["start_period"]) >= 30 and check["retries"] >= 3
        # uvicorn drains for --timeout-graceful-shutdown, then compose may SIGKILL
        assert seconds(service["stop_grace_period"]) > graceful, name
        assert service["restart"] in ("unless-stopped", "always"), name
    assert seconds(services["moderation"]["healthcheck"]["start_period"]) >= 90, "it loads a model first"


def test_services_start_only_after_topics_and_indexes_exist(services):
    for name in HTTP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["topics"]["condition"] == "service_completed_successfully", name
        assert depends["indexes"]["condition"] == "service_completed_successfully", name
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["mongo"]["condition"] == "service_healthy", name
    assert services["discord-bridge"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["notifier"]["depends_on"]["mailpit"]["condition"] in ("service_started", "service_healthy")


def test_ops_jobs_run_once_from_the_slim_image(services):
    topics, indexes = services["topics"], services["indexes"]
    assert topics["entrypoint"] == ["steward", "topics", "--partitions", "6"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert indexes["entrypoint"] == ["steward", "indexes"]
    assert indexes["depends_on"] == {"mongo": {"condition": "service_healthy"}}
    for job in (topics, indexes):
        assert job["restart"] == "no" and job["healthcheck"]["test"] == ["NONE"]
        assert job["build"]["target"] == "slim" and "command" not in job
    # the topic count is the operator's, 6 by default
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    assert '"${STEWARD_TOPIC_PARTITIONS:-6}"' in raw


def test_discord_bridge_is_profile_gated_and_has_no_http_healthcheck(services):
    bridge = services["discord-bridge"]
    assert bridge["profiles"] == ["discord"]
    assert bridge["entrypoint"] == ["python", "-m", "services.ingest.discord_bridge"]
    assert (REPO / "services" / "ingest" / "discord_bridge" / "__main__.py").is_file()
    # it serves no HTTP, so the image's /readyz check would call it unhealthy for ever
    assert bridge["healthcheck"]["test"] == ["NONE"]
    assert bridge["restart"].startswith("on-failure")
    assert "ports" not in bridge
    assert bridge["environment"]["STEWARD_DISCORD_BOT_TOKEN"] == ""


# --- infrastructure ---------------------------------------------------------------------------
def test_kafka_runs_in_kraft_mode_and_is_what_the_services_reach(services):
    kafka = services["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka" and re.fullmatch(r"\d+\.\d+\.\d+", tag), kafka["image"]
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env) and "zookeeper" not in services
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert re.fullmatch(r"1@kafka:\d+", voters) and str(env["KAFKA_NODE_ID"]) == "1"
    controller_port = voters.rsplit(":", 1)[1]
    assert f"CONTROLLER://:{controller_port}" in env["KAFKA_LISTENERS"]
    advertised = urlparse(env["KAFKA_ADVERTISED_LISTENERS"].split(",")[0])
    bootstrap = f"{advertised.hostname}:{advertised.port}"
    for name in STEWARD_CONTAINERS:
        assert services[name]["environment"]["STEWARD_KAFKA_BOOTSTRAP"] == bootstrap, name
        assert services[name]["environment"]["STEWARD_KAFKA_IDEMPOTENCE"] == "true", name  # real Kafka
    assert advertised.hostname == "kafka"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the topics job"
    assert kafka["healthcheck"]["test"] and not kafka["healthcheck"].get("disable")
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"] + ":rw") or v.split(":")[1] == env["KAFKA_LOG_DIRS"]
               for v in kafka["volumes"]), "the log dirs are a volume"


def test_mongodb_is_a_replica_set_that_the_services_join(services):
    mongo = services["mongo"]
    command = mongo["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert replica_set == "rs0"
    check = " ".join(mongo["healthcheck"]["test"])
    initiated = re.search(r"_id: '(\w+)', members: \[\{_id: 0, host: '([\w.-]+:\d+)'\}\]", check)
    assert initiated and initiated.group(1) == replica_set, check
    assert "isWritablePrimary" in check, "healthy only once it is the primary"
    for name in STEWARD_CONTAINERS:
        uri = services[name]["environment"].get("STEWARD_MONGO_URI")
        if uri is None:
            continue
        parsed = urlparse(uri)
        assert parse_qs(parsed.query)["replicaSet"] == [replica_set], name
        assert parsed.netloc == initiated.group(2), f"{name}: {parsed.netloc} is not the member's host"
        assert parsed.hostname in services


def test_traces_go_to_the_collector_and_on_to_jaeger(services):
    for name in STEWARD_CONTAINERS:
        endpoint = urlparse(services[name]["environment"]["STEWARD_OTLP_ENDPOINT"])
        assert endpoint.scheme == "http" and endpoint.path == "/v1/traces", name  # OTLP/HTTP, full URL
        assert endpoint.hostname == "otel-collector" and endpoint.port == 4318, name
    collector = services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector")
    config_path = collector["command"][0].split("=", 1)[1]
    source = mount_source(collector, config_path)
    otel = yaml.safe_load(source.read_text(encoding="utf-8"))
    http = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http == "0.0.0.0:4318", "the collector must listen beyond its own localhost"
    traces = otel["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    assert all(p in otel["processors"] for p in traces["processors"])
    exporters = [otel["exporters"][name] for name in traces["exporters"]]
    targets = {e["endpoint"] for e in exporters}
    assert targets == {"jaeger:4317"}, targets
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_prometheus_scrapes_every_service_and_loads_the_alert_rules(services, dockerfile):
    prometheus = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if "=" in arg)
    config_source = mount_source(prometheus, flags["--config.file"])
    assert config_source == PROMETHEUS_CONFIG
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    port = images.entrypoint_and_cmd(dockerfile, "slim")
    port = port[port.index("--port") + 1]
    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, target_port = target.partition(":")
                if host in services:
                    scraped[host] = job["job_name"]
                    assert target_port == port, f"{target}: the services listen on {port}"
                    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert set(scraped) == set(HTTP_SERVICES), f"scraped: {sorted(scraped)}"
    assert all(scraped[name] == name for name in HTTP_SERVICES), scraped  # job = service name
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert mount_source(prometheus, "/etc/prometheus/alerts.yml") == REPO / "deploy" / "prometheus" / "alerts.yml"


def test_grafana_is_provisioned_with_prometheus_jaeger_and_the_dashboards(services):
    grafana = services["grafana"]
    provisioning = mount_source(grafana, "/etc/grafana/provisioning")
    assert provisioning == REPO / "deploy" / "grafana" / "provisioning"
    sources = [s for f in sorted((provisioning / "datasources").glob("*.y*ml"))
               for s in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]]
    by_type = {s["type"]: s for s in sources}
    assert {"prometheus", "jaeger"} <= set(by_type)
    assert urlparse(by_type["prometheus"]["url"]).hostname == "prometheus" and by_type["prometheus"]["isDefault"]
    assert urlparse(by_type["jaeger"]["url"]).hostname == "jaeger"
    assert urlparse(by_type["prometheus"]["url"]).port == 9090 and urlparse(by_type["jaeger"]["url"]).port == 16686
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.y*ml"))
                 for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]]
    assert providers and all(p["type"] == "file" for p in providers)
    path = providers[0]["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert mount_source(grafana, path) == REPO / "deploy" / "grafana" / "dashboards"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == REQUIRED["GRAFANA_ADMIN_PASSWORD"]


def test_email_goes_to_mailpit(services):
    notifier = services["notifier"]["environment"]
    assert notifier["STEWARD_SMTP_HOST"] == "mailpit" and notifier["STEWARD_SMTP_PORT"] == "1025"
    assert json.loads(notifier["STEWARD_EMAIL_TO"]) == ["oncall@steward.local"]
    assert services["mailpit"]["image"].startswith("axllent/mailpit:v")


def test_every_file_mounted_from_the_repository_exists(services):
    missing = []
    for name, service in services.items():
        for source, target in bind_mounts(service):
            assert source == REPO or REPO in source.parents, f"{name}: {source} is outside the repository"
            if not source.exists():
                missing.append(f"{name}: {source.relative_to(REPO)} -> {target}")
    assert not missing, "mounted but missing: " + "; ".join(missing)


def test_images_are_pinned_and_ports_stay_on_loopback(services):
    for name, service in services.items():
        image = service["image"]
        reference, _, tag = image.rpartition(":")
        assert reference and tag and tag != "latest", f"{name}: {image}"
        if "build" not in service:
            assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned to a version"
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
            assert text.startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback by default"
    assert "ports" not in services["kafka"] and "ports" not in services["mongo"]
