"""Health, readiness and metrics endpoints against real and missing dependencies."""

import pytest
from fastapi.testclient import TestClient

from services.metrics.app import create_service
from services.runtime.settings import MetricsSettings

pytestmark = pytest.mark.integration


def test_ready_when_broker_and_store_answer(local_stack, unique):
    settings = MetricsSettings(kafka_bootstrap=local_stack.endpoints.kafka,
                               mongo_uri=local_stack.endpoints.mongo_uri, mongo_db=f"health_{unique}")
    with TestClient(create_service(settings).app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"broker": "ok", "mongodb": "ok"}
        assert client.get("/healthz").json()["status"] == "alive"
        exposition = client.get("/metrics").text
        assert "steward_dead_letters" in exposition or "faststream_" in exposition


def test_not_ready_and_saying_why_when_dependencies_are_down():
    settings = MetricsSettings(kafka_bootstrap="127.0.0.1:1", mongo_uri="mongodb://127.0.0.1:1/?directConnection=true",
                               mongo_timeout_ms=500)
    client = TestClient(create_service(settings).app)  # no lifespan: nothing to connect to
    ready = client.get("/readyz")
    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["broker"] != "ok" and checks["mongodb"] != "ok"
    alive = client.get("/healthz")
    assert alive.status_code == 200  # liveness does not restart pods for a dependency outage
