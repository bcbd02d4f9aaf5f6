"""The notifier's durable memory in MongoDB: the incidents it knows (and which are still
active), which notification went to which receiver, and an audit record of every delivery
attempt. It is what makes a redelivered incident, or a resent notification, a no-op."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas import Incident
from services.notifier.receivers.base import DeliveryReceipt, DeliveryStatus

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

    async def remember_incident(self, incident: Incident, now: datetime, traceparent: str | None = None) -> bool:
        """Store the incident as active, raised ``now`` (when the notifier learnt of it: a
        replayed old incident is new to its receivers); ``False`` when already known."""
        try:
            await self.incidents.insert_one({
                "_id": incident.incident_id,
                **incident.model_dump(mode="json", exclude={"incident_id"}),
                "active": True,
                "raised_epoch": now.timestamp(),
                "labels": incident.labels(),
                "traceparent": traceparent,
            })
            return True
        except DuplicateKeyError:
            return False

    async def close_incident(self, incident_id: str, why: str) -> bool:
        """Mark it no longer active (resolved, a false positive, or expired)."""
        done = await self.incidents.update_one({"_id": incident_id, "active": True},
                                               {"$set": {"active": False, "closed_by": why}})
        return bool(done.modified_count)

    async def active_labels(self, since: datetime, same: Mapping[str, str]) -> list[dict[str, str]]:
        """Labels of the incidents still active and raised after ``since`` that have the
        label values of ``same``: the sources an inhibition rule may look at."""
        query: dict[str, Any] = {"active": True, "raised_epoch": {"$gte": since.timestamp()}}
        query.update({f"labels.{name}": value for name, value in same.items()})
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

    async def suppressed(self, incident_id: str, receiver: str, reason: str) -> None:
        """Audit an incident a silence, an inhibition or a muted route kept from a receiver
        ("" for all)."""
        await self.attempts.insert_one({"incident_id": incident_id, "receiver": receiver, "kind": "suppressed",
                                        "status": "suppressed", "detail": reason, "finished_at": datetime.now(UTC)})

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
