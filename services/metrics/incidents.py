"""Incidents and moderators' decisions, kept per incident by idempotent operators.

Both topics are small, and every write here is an upsert with ``$set`` / ``$min`` /
``$max``: a redelivery, or feedback that arrives before its incident, changes nothing twice.
While a community is being rebuilt, both generations receive them.
"""

from __future__ import annotations

from schemas import Incident, ModeratorFeedback
from services.metrics.kpis.safety import ACK_ACTIONS
from services.metrics.store import MetricsStore, generation_key


async def _generations(store: MetricsStore, community_id: str) -> list[str]:
    generation = (await store.generations([community_id]))[community_id]
    keys = [generation_key(community_id, generation.current)]
    if generation.building is not None:
        keys.append(generation_key(community_id, generation.building))
    return keys


async def record_incident(store: MetricsStore, incident: Incident, generations: list[str] | None = None) -> None:
    for key in generations or await _generations(store, incident.community_id):
        await store.record_incident(
            key, incident.incident_id, occurred_at=incident.evidence.occurred_at.timestamp(),
            raised_at=incident.created_at.timestamp(), severity=incident.severity.value,
            category=incident.category)


async def record_decision(store: MetricsStore, decision: ModeratorFeedback, generations: list[str] | None = None) -> None:
    for key in generations or await _generations(store, decision.community_id):
        await store.record_decision(
            key, decision.incident_id, decided_at=decision.decided_at.timestamp(),
            acknowledges=decision.action.value in ACK_ACTIONS,
            false_positive=decision.action.value == "false_positive")
