"""``python -m services.ingest.discord_bridge``: the Gateway bridge, publishing to Kafka.

Exits 0 on SIGTERM/SIGINT, 2 when the token is missing, 1 when Discord refuses the bot for
good (bad token, disallowed intents); every other failure is retried.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from services.ingest.discord_bridge.gateway import GatewayClient, GatewayConfig, GatewayError
from services.ingest.discord_bridge.settings import DiscordBridgeSettings
from services.ingest.platforms.discord import GatewayMemory
from services.ingest.publish import ActivityPublisher
from services.runtime.broker import make_broker
from services.runtime.telemetry import setup_logging, setup_tracing

log = logging.getLogger("steward.discord")


async def start_broker(broker: KafkaBroker) -> None:
    """Start the producer, retrying with backoff until the broker answers."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(Exception),
        before_sleep=lambda state: log.warning("Kafka not reachable yet (%s); retrying", state.outcome.exception()),
    ):
        with attempt:
            try:
                await broker.start()
            except Exception:
                await broker.stop()
                raise


async def serve(settings: DiscordBridgeSettings) -> None:
    registry = CollectorRegistry()
    tracer_provider = setup_tracing(settings)
    broker, _ = make_broker(settings, registry=registry, tracer_provider=tracer_provider)
    publisher = ActivityPublisher(broker, settings.publish_timeout_s)  # before start: it registers
    await start_broker(broker)
    client = GatewayClient(
        GatewayConfig.from_settings(settings), publisher.publish, memory=GatewayMemory(settings.discord_memory_size)
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, client.stop)
    log.info("Discord bridge started: gateway %s, intents %d, publishing to %s",
             settings.discord_gateway_url, settings.discord_intents, settings.kafka_bootstrap)
    try:
        await client.run()
    finally:
        await broker.stop()
        tracer_provider.shutdown()
        log.info("Discord bridge stopped: %s", client.counts)


def main() -> int:
    settings = DiscordBridgeSettings()
    setup_logging(settings)
    if not settings.discord_bot_token.get_secret_value().strip():
        log.error("STEWARD_DISCORD_BOT_TOKEN is not set: the bridge needs the bot's token")
        return 2
    try:
        asyncio.run(serve(settings))
    except GatewayError as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
