"""The bridge's configuration: environment variables with the ``STEWARD_`` prefix."""

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.settings import RuntimeSettings

# Gateway intents (https://discord.com/developers/docs/events/gateway#gateway-intents)
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1  # privileged: "Server Members Intent" in the developer portal
GUILD_MESSAGES = 1 << 9
GUILD_MESSAGE_REACTIONS = 1 << 10
MESSAGE_CONTENT = 1 << 15  # privileged: "Message Content Intent"; without it content is ""
GUILD_SCHEDULED_EVENTS = 1 << 16
DEFAULT_INTENTS = (
    GUILDS | GUILD_MEMBERS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS | GUILD_SCHEDULED_EVENTS | MESSAGE_CONTENT
)  # 99843

DEFAULT_GATEWAY_URL = "wss://gateway.discord.gg/?v=10&encoding=json"


class DiscordBridgeSettings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="STEWARD_", env_file=".env", extra="ignore")

    service_name: str = "discord-bridge"
    discord_bot_token: SecretStr = Field(
        default=SecretStr(""), description="The bot's token (Developer Portal > Bot); never logged."
    )
    discord_gateway_url: str = Field(
        default=DEFAULT_GATEWAY_URL,
        description="Where to IDENTIFY; its query (v=10&encoding=json) is also added to resume URLs.",
    )
    discord_intents: int = Field(default=DEFAULT_INTENTS, ge=0, description="Gateway intents bit field.")
    discord_shard_id: int | None = Field(default=None, ge=0)
    discord_shard_count: int | None = Field(default=None, ge=1)
    discord_connect_timeout_s: float = Field(default=15.0, gt=0, description="Open and HELLO deadline.")
    discord_reconnect_backoff_initial_s: float = Field(default=1.0, gt=0)
    discord_reconnect_backoff_max_s: float = Field(default=60.0, gt=0)
    discord_invalid_session_delay_min_s: float = Field(default=1.0, ge=0)
    discord_invalid_session_delay_max_s: float = Field(default=5.0, ge=0)
    discord_publish_backoff_initial_s: float = Field(default=0.5, gt=0)
    discord_publish_backoff_max_s: float = Field(default=30.0, gt=0)
    discord_max_pending_events: int = Field(
        default=10_000, ge=1,
        description="Dispatches received but not yet published; when full the bridge stops reading, "
        "misses a heartbeat ACK, reconnects and resumes from the last published event.",
    )
    discord_memory_size: int = Field(
        default=100_000, ge=0, description="Recent message authors and member joins remembered."
    )
    publish_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for the broker's ack.")

    @model_validator(mode="after")
    def _shards_together(self) -> "DiscordBridgeSettings":
        if (self.discord_shard_id is None) != (self.discord_shard_count is None):
            raise ValueError("set discord_shard_id and discord_shard_count together, or neither")
        if self.discord_shard_id is not None and self.discord_shard_id >= self.discord_shard_count:
            raise ValueError("discord_shard_id must be below discord_shard_count")
        return self
