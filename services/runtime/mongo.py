"""The one place a MongoDB client is built: PyMongo's async API (motor's successor)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from services.runtime.settings import RuntimeSettings


class CommandCounter(CommandListener):
    """Counts the commands a client sends: each is one round trip to the server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.commands = Counter("steward_mongo_commands", "MongoDB commands sent (round trips)",
                                ["command"], registry=registry)

    def started(self, event: CommandStartedEvent) -> None:
        self.commands.labels(event.command_name).inc()

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass


def make_mongo(settings: RuntimeSettings, registry: CollectorRegistry | None = None) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        appname=f"steward-{settings.service_name}",
        event_listeners=[CommandCounter(registry)] if registry is not None else [],
    )


def database(client: AsyncMongoClient, settings: RuntimeSettings) -> AsyncDatabase:
    return client[settings.mongo_db]


async def ping(client: AsyncMongoClient) -> None:
    await client.admin.command("ping")
