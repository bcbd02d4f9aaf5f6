"""Every MongoDB index Steward uses, created in one go (the Kubernetes index Job, upgrades).

Each service also creates its own indexes at start; this lets operators create them ahead of
a deploy (large collections build indexes for minutes) without starting a consumer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo.asynchronous.database import AsyncDatabase

from services.metrics.identity.store import IdentityStore
from services.metrics.store import MetricsStore
from services.moderation.feedback import FeedbackStore, IncidentArchive
from services.notifier.silences.store import SilenceStore
from services.notifier.state import NotificationLog
from services.notifier.store import escalation_timers, group_timers
from services.runtime.settings import MetricsSettings


def index_builders(db: AsyncDatabase, *, prefix: str = "notifier") -> dict[str, Callable[[], Awaitable[None]]]:
    """What creates each service's indexes, by a name operators recognise."""
    metrics = MetricsStore(db, facts_ttl_days=MetricsSettings().facts_ttl_days)
    return {
        "moderation incidents": IncidentArchive(db).create_indexes,
        "moderation feedback": FeedbackStore(db).create_indexes,
        "metrics KPIs": metrics.create_indexes,
        "metrics identities": IdentityStore(db).create_indexes,
        "notifier notifications": NotificationLog(db, prefix).create_indexes,
        "notifier groups": group_timers(db[f"{prefix}_groups"], "indexes").create_indexes,
        "notifier escalations": escalation_timers(db[f"{prefix}_escalations"], "indexes").create_indexes,
        "notifier silences": SilenceStore(db).create_indexes,
    }


async def create_all(db: AsyncDatabase) -> list[str]:
    """Create every index (existing ones are kept); the names of what was done, in order."""
    done = []
    for name, build in index_builders(db).items():
        await build()
        done.append(name)
    return done
