import pytest

from services.ingest.platforms import MalformedPayload
from services.ingest.platforms.generic import normalize

EVENT = {
    "event_id": "e1", "platform": "generic", "community_id": "c", "member_id": "m",
    "kind": "message_posted", "message_id": "x", "text": "hello", "occurred_at": "2026-01-05T10:00:00Z",
}


def test_single_object_and_array():
    assert len(normalize(EVENT).events) == 1
    assert [e.event_id for e in normalize([EVENT, {**EVENT, "event_id": "e2"}]).events] == ["e1", "e2"]


def test_received_at_is_stamped_by_ingest():
    [event] = normalize({**EVENT, "received_at": "2000-01-01T00:00:00Z"}).events
    assert event.received_at.year >= 2026


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"kind": "message_liked"}, "kind"),
        ({"occurred_at": "2026-01-05T10:00:00"}, "time zone"),
        ({"message_id": None}, "needs a message_id"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_invalid_events_are_rejected_with_the_field(change, reason):
    with pytest.raises(MalformedPayload, match=reason):
        normalize({**EVENT, **change})
