"""Configuration of the Reddit poller (environment variables, prefix ``STEWARD_``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.runtime.settings import RuntimeSettings


def normalize_subreddit(name: str) -> str:
    """``/r/Python/``, ``r/Python`` and ``Python`` all name the subreddit ``Python``."""
    name = name.strip().strip("/")
    if name.lower().startswith("r/"):
        name = name[2:]
    return name.strip("/")


class RedditSettings(RuntimeSettings):
    service_name: str = "ingest-reddit"

    reddit_client_id: str = Field(default="", description="The app's client id (Reddit 'script' app).")
    reddit_client_secret: SecretStr = Field(default=SecretStr(""), description="The app's secret.")
    reddit_username: str | None = Field(
        default=None, description="With a password: the password grant; else client_credentials."
    )
    reddit_password: SecretStr | None = None
    reddit_user_agent: str = Field(
        default="python:steward-ingest-reddit:0.1.0 (by /u/steward-bot)",
        description="Reddit asks for <platform>:<app id>:<version> (by /u/<username>).",
    )
    reddit_subreddits: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Subreddits to poll: comma-separated or a JSON list."
    )
    reddit_poll_interval_s: float = Field(default=60.0, gt=0)
    reddit_api_url: str = "https://oauth.reddit.com"
    reddit_token_url: str = "https://www.reddit.com/api/v1/access_token"
    reddit_backfill: int = Field(
        default=0, ge=0, description="Items per subreddit and kind published on the very first run."
    )
    reddit_page_limit: int = Field(default=100, ge=1, le=100)
    reddit_max_pages: int = Field(
        default=10, ge=1, description="Pages read per cycle; Reddit serves about 1000 items at most."
    )
    reddit_lookback_s: float = Field(
        default=0.0,
        ge=0,
        description="Also look this far behind the cursor for items that appeared late "
        "(Reddit's comment listing is eventually consistent).",
    )
    reddit_http_timeout_s: float = Field(default=30.0, gt=0)
    reddit_max_attempts: int = Field(default=5, ge=1, description="Tries per request on 5xx/429.")
    reddit_backoff_initial_s: float = Field(default=1.0, gt=0)
    reddit_backoff_max_s: float = Field(default=60.0, gt=0)
    reddit_cursor_collection: str = "ingest_reddit_cursors"
    publish_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for the broker's ack.")

    @field_validator("reddit_subreddits", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list | tuple):
            names = [normalize_subreddit(str(v)) for v in value]
            return list(dict.fromkeys(n for n in names if n))
        return value

    @property
    def uses_password_grant(self) -> bool:
        return bool(self.reddit_username and self.reddit_password)
