from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import MemberActivity
from schemas.export import drifted
from services.moderation.outcome import stable_id


def test_committed_json_schemas_match_the_models():
    assert drifted() == [], "run 'steward schemas export' and commit schemas/jsonschema"


def test_partition_key_groups_a_member_of_a_community():
    base = dict(event_id="e", platform="slack", community_id="c", member_id="m", kind="member_joined",
                occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert MemberActivity(**base).partition_key() == MemberActivity(**{**base, "event_id": "f"}).partition_key()
    assert MemberActivity(**base).partition_key() != MemberActivity(**{**base, "member_id": "n"}).partition_key()


def test_timestamps_are_normalized_to_utc_and_naive_ones_refused():
    event = MemberActivity(event_id="e", platform="slack", community_id="c", member_id="m", kind="member_joined",
                           occurred_at="2026-01-01T12:00:00+02:00")
    assert event.occurred_at == datetime(2026, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValidationError, match="time zone"):
        MemberActivity(event_id="e", platform="slack", community_id="c", member_id="m", kind="member_joined",
                       occurred_at="2026-01-01T12:00:00")


def test_incident_ids_are_stable_per_event():
    assert stable_id("inc", "slack:T1:Ev1") == stable_id("inc", "slack:T1:Ev1")
    assert stable_id("inc", "slack:T1:Ev1") != stable_id("inc", "slack:T1:Ev2")


@pytest.mark.parametrize(
    "service, channels",
    [
        ("ingest", {"community.activity.v1"}),
        ("moderation", {"community.activity.v1:moderation", "moderation.feedback.v1:moderation",
                        "moderation.verdicts.v1", "moderation.incidents.v1"}),
        ("metrics", {"community.activity.v1:metrics", "moderation.verdicts.v1:metrics",
                     "moderation.incidents.v1:metrics", "moderation.feedback.v1:metrics"}),
        ("notifier", {"moderation.incidents.v1:notifier", "moderation.feedback.v1:notifier"}),
    ],
)
def test_asyncapi_is_generated_from_the_apps_and_committed(service, channels):
    import importlib
    import json
    from pathlib import Path

    document = importlib.import_module(f"services.{service}.app").create_service().asyncapi()
    assert set(document["channels"]) == channels
    committed = Path(__file__).resolve().parents[2] / "docs" / "asyncapi" / f"{service}.asyncapi.json"
    assert json.loads(committed.read_text()) == json.loads(json.dumps(document)), (
        "run 'steward schemas asyncapi' and commit docs/asyncapi"
    )
