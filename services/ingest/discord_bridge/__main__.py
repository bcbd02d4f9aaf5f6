"""``python -m services.ingest.discord_bridge``: the Gateway bridge, publishing to Kafka.

Exits 0 on SIGTERM/SIGINT, 2 when the token is missing, 1 when Discord refuses the bot for
good (bad token, disallowed intents); every other failure is retried.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys


from services.ingest.discord_bridge.gateway import GatewayClient, GatewayConfig, GatewayError
from services.ingest.discord_bridge.settings import DiscordBridgeSettings
from services.ingest.platforms.discord import GatewayMemory
from services.ingest.publish import ActivityPublisher
from services.runtime.telemetry import setup_logging, setup_tracing

log = logging.getLogger("steward.discord")


async def serve(settings: DiscordBridgeSettings) -> None:
    tracer_provider = setup_tracing(settings)
    publisher = ActivityPublisher(settings, settings.publish_timeout_s)
    await publisher.start()
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
        await publisher.stop()
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
