"""The one place a MongoDB client is built: PyMongo's async API (motor's successor)."""

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.settings import RuntimeSettings


def make_mongo(settings: RuntimeSettings) -> AsyncMongoClient:
    return AsyncMongoClient(
        settings.mongo_uri,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        tz_aware=True,
        appname=f"steward-{settings.service_name}",
    )


def database(client: AsyncMongoClient, settings: RuntimeSettings) -> AsyncDatabase:
    return client[settings.mongo_db]


async def ping(client: AsyncMongoClient) -> None:
    await client.admin.command("ping")
