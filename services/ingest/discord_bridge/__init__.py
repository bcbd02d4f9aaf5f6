"""The Discord Gateway bridge: a long-running process that holds a Gateway session open and
publishes what members do in a server to ``community.activity.v1``.

Discord sends no HTTP webhooks for server messages; only a Gateway (websocket) client sees
them. Run it with ``python -m services.ingest.discord_bridge``; see docs/platforms/discord.md.
"""

from services.ingest.discord_bridge.gateway import GatewayClient, GatewayConfig, GatewayError, Publish
from services.ingest.discord_bridge.settings import DEFAULT_INTENTS, DiscordBridgeSettings

__all__ = [
    "DEFAULT_INTENTS", "DiscordBridgeSettings", "GatewayClient", "GatewayConfig", "GatewayError", "Publish",
]
