"""Fixtures for the notifier's unit tests."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.incidents import Evidence, Incident


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
    return build_incident
