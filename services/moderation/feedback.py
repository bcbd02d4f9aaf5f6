"""Moderator feedback in MongoDB: every decision stored once, each incident's latest state,
and the incidents' evidence, so that decisions become labels (for replay scoring) and
training rows (for the next model).

Collections:
- ``moderation_feedback``: one document per ``feedback_id`` (insert once: redelivery is a no-op);
- ``moderation_feedback_state``: one per incident, its latest decision (bounded, no arrays);
- ``moderation_incidents``: one per ``incident_id``, what the incident was about (its evidence text).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from schemas import Incident
from schemas.feedback import FeedbackAction, ModeratorFeedback

FEEDBACK = "moderation_feedback"
STATE = "moderation_feedback_state"
ARCHIVE = "moderation_incidents"

DUPLICATE_KEY = 11000
HARMFUL_ACTIONS = frozenset(
    {FeedbackAction.acknowledged, FeedbackAction.resolved, FeedbackAction.escalated}
)


async def _insert_once(collection, document: dict) -> bool:
    try:
        await collection.insert_one(document)
    except DuplicateKeyError:
        return False
    return True


class FeedbackStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.feedback = db[FEEDBACK]
        self.state = db[STATE]

    async def create_indexes(self) -> None:
        await self.feedback.create_index([("incident_id", 1)])
        await self.state.create_index([("community_id", 1)])

    async def record(self, feedback: ModeratorFeedback) -> bool:
        """Store one decision; False when this ``feedback_id`` was already stored.

        The incident's latest state is brought up to date either way (a retry after a
        failure between the two writes must still land it); it is idempotent."""
        inserted = await _insert_once(self.feedback, {
            "_id": feedback.feedback_id,
            "incident_id": feedback.incident_id,
            "community_id": feedback.community_id,
            "action": feedback.action.value,
            "moderator": feedback.moderator,
            "source": feedback.source.value,
            "note": feedback.note,
            "decided_at": feedback.decided_at,
        })
        await self._apply_state(feedback)
        return inserted

    async def _apply_state(self, feedback: ModeratorFeedback) -> None:
        fields = {
            "incident_id": feedback.incident_id,
            "community_id": feedback.community_id,
            "last_action": feedback.action.value,
            "false_positive": feedback.action is FeedbackAction.false_positive,
            "decided_at": feedback.decided_at,
        }
        # Only a decision at least as recent as the stored one replaces it. No upsert with
        # a filter (the filter would miss an existing newer state and collide on _id):
        # update when not older, else create; a duplicate then means a newer state exists.
        result = await self.state.update_one(
            {"_id": feedback.incident_id, "decided_at": {"$lte": feedback.decided_at}},
            {"$set": fields},
        )
        if result.matched_count:
            return
        await _insert_once(self.state, {"_id": feedback.incident_id, **fields})

    async def labels_for(self, community_id: str) -> dict[str, bool]:
        """incident_id -> True when confirmed harmful (its latest decision acknowledged,
        resolved or escalated it), False when its latest decision was false_positive."""
        labels: dict[str, bool] = {}
        async for doc in self.state.find({"community_id": community_id}):
            labels[doc["incident_id"]] = not doc["false_positive"]
        return labels

    async def states_for(self, community_id: str) -> list[dict]:
        return [doc async for doc in self.state.find({"community_id": community_id})]


class IncidentArchive:
    """What each incident was about, kept once per incident_id (moderation calls ``remember``)."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.incidents = db[ARCHIVE]

    async def create_indexes(self) -> None:
        await self.incidents.create_index([("community_id", 1)])

    async def remember(self, incident: Incident) -> bool:
        """False when this incident_id is already archived (a redelivery)."""
        return await _insert_once(self.incidents, self._document(incident))

    async def remember_all(self, incidents: list[Incident]) -> int:
        """Archive a batch in one round trip; returns how many were new. Incidents already
        archived (a redelivered batch) are skipped, any other write error is raised."""
        if not incidents:
            return 0
        try:
            result = await self.incidents.insert_many([self._document(i) for i in incidents], ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise
            return error.details.get("nInserted", 0)
        return len(result.inserted_ids)

    @staticmethod
    def _document(incident: Incident) -> dict:
        return {
            "_id": incident.incident_id,
            "community_id": incident.community_id,
            "event_id": incident.evidence.event_id,
            "text": incident.evidence.text,
            "category": incident.category,
            "categories": sorted(incident.categories),
            "severity": incident.severity.value,
            "rule": incident.rule,
            "policy_version": incident.policy_version,
            "model_version": incident.model_version,
            "created_at": incident.created_at,
        }


async def export_training_rows(db: AsyncDatabase, community_id: str) -> list[dict]:
    """One row per incident with feedback and archived text: the evidence text, the
    categories that fired when confirmed harmful (``[]`` for a false positive), and the action."""
    states = await FeedbackStore(db).states_for(community_id)
    if not states:
        return []
    ids = [s["incident_id"] for s in states]
    archived = {doc["_id"]: doc async for doc in db[ARCHIVE].find({"_id": {"$in": ids}})}
    rows = []
    for state in sorted(states, key=lambda s: s["incident_id"]):
        incident = archived.get(state["incident_id"])
        if incident is None or not incident.get("text"):
            continue
        harmful = not state["false_positive"]
        rows.append({
            "text": incident["text"],
            "labels": list(incident.get("categories") or [incident["category"]]) if harmful else [],
            "community_id": community_id,
            "incident_id": state["incident_id"],
            "action": state["last_action"],
        })
    return rows


async def read_training_rows(settings, community_id: str) -> list[dict]:
    """:func:`export_training_rows` with its own client, for the command line."""
    from services.runtime.mongo import database, make_mongo

    client = make_mongo(settings)
    try:
        return await export_training_rows(database(client, settings), community_id)
    finally:
        await client.close()


def write_jsonl(rows: Iterable[dict], path: Path) -> int:
    """Write one JSON object per line; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            count += 1
    return count
