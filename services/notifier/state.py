"""The notifier's durable memory in MongoDB: which incident went to which receiver, and an
audit record of every delivery attempt. It is what makes a redelivered incident a no-op."""

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from schemas import Incident
from services.notifier.receivers.base import DeliveryReceipt, DeliveryStatus


class NotificationLog:
    def __init__(self, db: AsyncDatabase) -> None:
        self.incidents = db["notifier_incidents"]
        self.notifications = db["notifier_notifications"]
        self.attempts = db["notifier_delivery_attempts"]

    async def create_indexes(self) -> None:
        await self.notifications.create_index([("incident_id", 1)])
        await self.attempts.create_index([("incident_id", 1), ("receiver", 1)])

    async def remember_incident(self, incident: Incident) -> None:
        try:
            await self.incidents.insert_one(
                {"_id": incident.incident_id, **incident.model_dump(mode="json", exclude={"incident_id"})}
            )
        except DuplicateKeyError:
            pass

    @staticmethod
    def _key(incident_id: str, receiver: str, kind: str) -> str:
        # Per integration, so a retry after a partial failure resends only what failed.
        return f"{incident_id}/{receiver}/{kind}"

    async def already_notified(self, incident_id: str, receiver: str, kind: str) -> bool:
        found = await self.notifications.find_one(
            {"_id": self._key(incident_id, receiver, kind), "status": DeliveryStatus.delivered.value}
        )
        return found is not None

    async def suppressed(self, incident_id: str, receiver: str, reason: str) -> None:
        """Audit an incident a silence or a muted route kept from a receiver ("" for all)."""
        await self.attempts.insert_one({"incident_id": incident_id, "receiver": receiver, "kind": "suppressed",
                                        "status": "suppressed", "detail": reason, "finished_at": datetime.now(UTC)})

    async def record(self, receipt: DeliveryReceipt, trace_id: str | None) -> None:
        """Audit the attempt, and mark the notification done when it was delivered."""
        document = {**receipt.model_dump(mode="json"), "trace_id": trace_id}
        await self.attempts.insert_one(dict(document))
        if receipt.ok:
            await self.notifications.update_one(
                {"_id": self._key(receipt.incident_id, receipt.receiver, receipt.kind)},
                {"$set": document},
                upsert=True,
            )
