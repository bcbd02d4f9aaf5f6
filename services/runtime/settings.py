"""Configuration from environment variables (prefix ``STEWARD_``), one class per service.

Every field is documented in README.md under "Configuration"; keep the two in step.
"""

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    """Settings every service reads: where the broker, the store and the state live."""

    model_config = SettingsConfigDict(env_prefix="STEWARD_", env_file=".env", extra="ignore")

    service_name: str = "steward"
    home: Path = Field(
        default=Path(".steward"),
        description="Local state: model bundles, the local stack's data and logs.",
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = Field(
        default=False,
        description="Idempotent producer; turn on for Apache Kafka (tansu does not support it).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=10, description="Consumer long-poll wait; the 500 ms default adds latency per hop."
    )
    kafka_request_timeout_ms: int = 10_000

    mongo_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongo_db: str = "steward"
    mongo_timeout_ms: int = 5_000

    consumer_max_attempts: int = Field(
        default=5, ge=1, description="Handler attempts before an event goes to <topic>.dlq."
    )
    consumer_backoff_initial_s: float = Field(default=0.2, gt=0)
    consumer_backoff_max_s: float = Field(default=5.0, gt=0)
    shutdown_grace_s: float = Field(
        default=20.0, gt=0,
        description="On SIGTERM, how long in-flight batches may take to finish and commit before they are "
                    "abandoned (redelivered to the next owner). Keep it under the pod's termination grace period.",
    )
    lag_interval_s: float = Field(
        default=10.0, gt=0, description="How often each consumer's lag is sampled into steward_consumer_lag."
    )

    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP traces endpoint; tracing exports nothing when unset."
    )
    log_level: str = "INFO"

    @property
    def model_cache(self) -> Path:
        return self.home / "models"


class IngestSettings(RuntimeSettings):
    service_name: str = "ingest"
    slack_signing_secret: SecretStr = SecretStr("")
    generic_signing_secret: SecretStr = SecretStr("")
    connections_file: Path | None = Field(
        default=None, description="YAML list of connections: one per community and platform."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Larger bodies get 413.")
    recent_event_ids: int = Field(
        default=100_000, ge=0, description="Acked event ids remembered to answer retries at once."
    )
    signature_tolerance_s: int = Field(default=300, description="Replay window for signed webhooks.")
    publish_timeout_s: float = Field(
        default=2.5,
        description="Longest wait for the broker's ack before answering 503; below Slack's 3 s.",
    )
    retry_after_s: int = Field(default=5, description="Retry-After sent with a 503.")


class ModerationSettings(RuntimeSettings):
    service_name: str = "moderation"
    batch_max: int = Field(default=64, ge=1, description="Most messages classified in one model call.")
    batch_wait_ms: int = Field(
        default=10, ge=0, description="Longest wait for a batch to fill: latency traded for throughput."
    )
    model_threads: int = Field(
        default=2, ge=1, description="Model threads in this process. With N consumers on one host, "
        "give each cores/N: on 2 cores, 2 consumers of 1 thread outrun 1 consumer of 2.",
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="Longest wait for the acks of a batch's verdicts and incidents "
        "before the batch is retried.",
    )
    model_dir: Path | None = Field(
        default=None, description="Model bundle to load; the default bundle when unset."
    )
    model_scheme: str | None = Field(
        default=None,
        description="Crosswalk scheme (toxic-bert, detoxify, openai, llama-guard) when model_dir "
        "is another Hugging Face text-classification model rather than a Steward bundle.",
    )
    policy_dir: Path | None = Field(
        default=None,
        description="Folder of <community_id>.yaml policies (default.yaml for the rest); "
        "the built-in default policy when unset.",
    )


class MetricsSettings(RuntimeSettings):
    service_name: str = "metrics"
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="Keys accepted by the read API; open when empty."
    )
    timezones: dict[str, str] = Field(
        default_factory=dict,
        description='Community time zones, e.g. {"acme": "Europe/Paris"}; UTC for the rest. '
        "Changing one needs a backfill of that community.",
    )
    batch_max: int = Field(default=10_000, ge=1, description="Most records folded in one transaction.")
    batch_wait_ms: int = Field(default=500, ge=0, description="Longest wait for a batch to fill.")
    dedupe_window_hours: float = Field(
        default=48, gt=0, description="How far back a re-published event id is recognised."
    )
    facts_ttl_days: int = Field(
        default=90, ge=8, description="Raw facts kept this long; counters and sealed KPIs for good."
    )
    member_cache: int = Field(default=100_000, ge=0, description="Member states cached per partition.")
    gauge_communities: int = Field(
        default=50, ge=0, description="Most communities exported as Prometheus gauges (label cardinality)."
    )
    gauge_interval_s: float = Field(default=60, gt=0, description="How often the KPI gauges are refreshed.")

    @field_validator("timezones")
    @classmethod
    def _known_zones(cls, zones: dict[str, str]) -> dict[str, str]:
        for community, name in zones.items():
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as error:
                raise ValueError(f"community {community!r}: unknown time zone {name!r}") from error
        return zones

    def timezone_of(self, community_id: str) -> str:
        return self.timezones.get(community_id, "UTC")


class NotifierSettings(RuntimeSettings):
    service_name: str = "notifier"
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="Keys accepted by the silences API; open when empty."
    )
    routing_file: Path | None = Field(
        default=None, description="Routing tree YAML; the built-in default routing when unset."
    )
    slack_webhook_url: str | None = Field(
        default=None, description="Slack incoming webhook; alerts go to the console when unset."
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, description="Bot token (xoxb-...) for chat.postMessage to a receiver's channel."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Verifies Slack's interactivity callbacks (the alert's buttons)."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api", description="Slack Web API base; a local stand-in in tests."
    )
    slack_channel_interval_s: float = Field(
        default=1.0, ge=0,
        description="Least time from the end of one post to a Slack channel (or webhook) to the next; "
                    "Slack allows about one message a second per channel.",
    )
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "steward@localhost"
    email_to: list[str] = Field(default_factory=list)
    consumer_group: str = Field(
        default="steward-notifier",
        description="Kafka consumer group of the incidents (and, with -feedback, the decisions); "
                    "replicas of one deployment share it.",
    )
    dispatch_lease_s: float = Field(
        default=30.0, gt=0,
        description="How long a replica owns a notification it is sending; a crashed replica's work is "
                    "taken over after this. Longer than a delivery with its retries.",
    )
    dispatch_poll_s: float = Field(
        default=1.0, gt=0, description="How often a replica looks for timers another replica set."
    )
    incident_active_s: float = Field(
        default=86400.0, gt=0,
        description="An incident nobody resolves stops being reminded of, and stops inhibiting others, "
                    "this long after it arrived.",
    )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.dispatch_lease_s)

    @property
    def poll(self) -> timedelta:
        return timedelta(seconds=self.dispatch_poll_s)

    @property
    def incident_active_for(self) -> timedelta:
        return timedelta(seconds=self.incident_active_s)
