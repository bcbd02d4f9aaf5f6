"""The notifier's durable memory in MongoDB: the incidents it knows (and which are still
active), which notification went to which receiver, and an audit record of every delivery
attempt. It is what makes a redelivered incident, or a resent notification, a no-op."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from schemas import Incident
from services.notifier.receivers.base import DeliveryReceipt, DeliveryStatus

DUPLICATE_KEY = 11000
_INCIDENT_FIELDS = ("active", "raised_epoch", "labels", "traceparent", "closed_by")


class NotificationLog:
    def __init__(self, db: AsyncDatabase, prefix: str = "notifier") -> None:
        self.incidents = db[f"{prefix}_incidents"]
        self.notifications = db[f"{prefix}_notifications"]
        self.attempts = db[f"{prefix}_delivery_attempts"]

    async def create_indexes(self) -> None:
        await self.incidents.create_index([("active", ASCENDING), ("raised_epoch", ASCENDING)])
        # inhibition looks for active sources of the same community (and often member)
        await self.incidents.create_index([("labels.community", ASCENDING), ("active", ASCENDING)])
        await self.notifications.create_index([("incident_id", ASCENDING)])
        await self.attempts.create_index([("incident_id", ASCENDING), ("receiver", ASCENDING)])

    # ------------------------------------------------------------------ incidents

    async def remember_incidents(self, incidents: Sequence[tuple[Incident, str | None]], now: datetime) -> set[str]:
        """Store the incidents (each with its traceparent) as active, raised ``now`` (when the
        notifier learnt of them: a replayed old incident is new to its receivers). Returns
        the ids that were new; the others were known already (a redelivery)."""
        documents = [{
            "_id": incident.incident_id,
            **incident.model_dump(mode="json", exclude={"incident_id"}),
            "active": True,
            "raised_epoch": now.timestamp(),
            "labels": incident.labels(),
            "traceparent": traceparent,
        } for incident, traceparent in incidents]
        if not documents:
            return set()
        try:
            await self.incidents.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            failed = {e["index"] for e in error.details.get("writeErrors", ()) if e.get("code") == DUPLICATE_KEY}
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", ())):
                raise
            return {d["_id"] for i, d in enumerate(documents) if i not in failed}
        return {d["_id"] for d in documents}

    async def close_incident(self, incident_id: str, why: str) -> bool:
        """Mark it no longer active (resolved, a false positive, or expired)."""
        done = await self.incidents.update_one({"_id": incident_id, "active": True},
                                               {"$set": {"active": False, "closed_by": why}})
        return bool(done.modified_count)

    async def active_labels(self, since: datetime, alike: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """Labels of the incidents still active and raised after ``since`` that have the
        label values of one of ``alike``: the sources an inhibition rule may look at."""
        if not alike:
            return []
        query: dict[str, Any] = {"active": True, "raised_epoch": {"$gte": since.timestamp()}}
        if all(alike):  # an empty one (a rule with no equal labels) narrows nothing
            query["$or"] = [{f"labels.{name}": value for name, value in same.items()} for same in alike]
        return [d["labels"] async for d in self.incidents.find(query, {"labels": 1})]

    async def load(self, incident_ids: Iterable[str]) -> dict[str, tuple[Incident, Mapping[str, Any]]]:
        """The stored incidents by id, each with its notifier fields (``active``, ...)."""
        ids = list(incident_ids)
        found: dict[str, tuple[Incident, Mapping[str, Any]]] = {}
        async for doc in self.incidents.find({"_id": {"$in": ids}}):
            extra = {k: doc.pop(k, None) for k in _INCIDENT_FIELDS}
            doc["incident_id"] = doc.pop("_id")
            found[doc["incident_id"]] = (Incident.model_validate(doc), extra)
        return found

    # ------------------------------------------------------------------ notifications

    @staticmethod
    def _key(notification_key: str, receiver: str, kind: str) -> str:
        # Per integration, so a retry after a partial failure resends only what failed.
        return f"{notification_key}/{receiver}/{kind}"

    async def already_notified(self, notification_key: str, receiver: str, kinds: Iterable[str]) -> set[str]:
        """Which of the integration ``kinds`` of ``receiver`` got this notification already."""
        keys = {self._key(notification_key, receiver, kind): kind for kind in kinds}
        found = self.notifications.find(
            {"_id": {"$in": list(keys)}, "status": DeliveryStatus.delivered.value}, {"_id": 1})
        return {keys[d["_id"]] async for d in found}

    async def suppressed(self, held: Iterable[tuple[str, str, str]]) -> None:
        """Audit incidents a silence, an inhibition or a muted route kept from a receiver:
        ``(incident_id, receiver ("" for all), reason)``."""
        documents = [{"incident_id": incident_id, "receiver": receiver, "kind": "suppressed", "status": "suppressed",
                      "detail": reason, "finished_at": datetime.now(UTC)} for incident_id, receiver, reason in held]
        if documents:
            await self.attempts.insert_many(documents)

    async def record(self, receipt: DeliveryReceipt, trace_id: str | None, *, fallback_for: str | None = None) -> None:
        """Audit the attempt, and mark the notification done when it was delivered."""
        document = {**receipt.model_dump(mode="json"), "trace_id": trace_id}
        if fallback_for is not None:
            document["fallback_for"] = fallback_for
        writes = [self.attempts.insert_one(dict(document))]
        if receipt.ok:
            writes.append(self.notifications.replace_one(
                {"_id": self._key(receipt.notification_key or receipt.incident_id, receipt.receiver, receipt.kind)},
                document,
                upsert=True,
            ))
        await asyncio.gather(*writes)


def expired(raised_epoch: float | None, now: datetime, active_for: timedelta) -> bool:
    return raised_epoch is not None and raised_epoch < (now - active_for).timestamp()
