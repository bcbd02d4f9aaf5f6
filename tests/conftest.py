"""Shared fixtures. The real local stack (tansu, nx-27017) is started once per test session,
and only when a test asks for it; the testcontainers backend runs the same tests against
Apache Kafka and MongoDB where a Docker engine answers, and skips cleanly elsewhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.incidents import Evidence, Incident
from services.localstack.stack import LocalStack

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Backend:
    name: str
    kafka_bootstrap: str
    mongo_uri: str


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(tmp_path_factory.mktemp("steward-home"), preferred_ports=False)
    stack.start_infrastructure()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def docker_backend() -> Iterator[Backend]:
    if not docker_available():
        pytest.skip("no Docker engine answers here: testcontainers variants skipped")
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.mongodb import MongoDbContainer

    with KafkaContainer().with_kraft() as kafka, MongoDbContainer("mongo:7") as mongo:
        yield Backend("docker", kafka.get_bootstrap_server(), mongo.get_connection_url())


@pytest.fixture(scope="session", params=["local", "docker"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Real Kafka-protocol and MongoDB-protocol servers: local ones, or Docker images."""
    if request.param == "docker":
        return request.getfixturevalue("docker_backend")
    stack: LocalStack = request.getfixturevalue("local_stack")
    return Backend("local", stack.endpoints.kafka, stack.endpoints.mongo_uri)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def model_cache() -> Path:
    """Where the default model bundle is cached between test runs (built once, well under 2 min)."""
    return Path(os.environ.get("STEWARD_TEST_MODEL_CACHE", REPO / ".steward" / "models"))


def build_incident(**overrides: Any) -> Incident:
    evidence = {
        "event_id": "evt-1",
        "message_id": "msg-1",
        "member_id": "U123",
        "channel_id": "C42",
        "text": "I will find you",
        "permalink": "https://acme.slack.com/archives/C42/p1",
        "occurred_at": datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    }
    evidence.update(overrides.pop("evidence", {}))
    fields: dict[str, Any] = {
        "incident_id": "inc-0001",
        "platform": "slack",
        "community_id": "acme",
        "channel_id": "C42",
        "severity": "high",
        "category": "threat",
        "categories": {"threat": 0.97, "insult": 0.41},
        "rule": "threat-high",
        "policy_version": "2025-03-01",
        "model_name": "steward-minilm",
        "model_version": "1.2.0",
        "evidence": Evidence(**evidence),
        "created_at": datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return Incident(**fields)


@pytest.fixture
def make_incident() -> Callable[..., Incident]:
    """A valid Incident; keyword arguments override fields (``evidence`` merges)."""
    return build_incident
