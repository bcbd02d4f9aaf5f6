"""Connections: one configured integration of one community on one platform, each with its
own secret. A Slack workspace, a Discord guild and a Discourse forum are three connections.

Secrets are named by environment variable in the file, never written in it, and are held
as ``SecretStr`` so that no log line or error message can show them.
"""

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

DEFAULT = "default"


class ConnectionsError(ValueError):
    pass


class Connection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="The URL segment.")
    platform: str
    secret: SecretStr = Field(default=SecretStr(""), exclude=True)
    secret_env: str | None = Field(default=None, description="Environment variable holding the secret.")
    community_id: str | None = Field(
        default=None, description="Overrides the community id the payload names."
    )

    @model_validator(mode="after")
    def _secret_named_once(self) -> "Connection":
        if self.secret.get_secret_value() and self.secret_env:
            raise ValueError("give the secret through secret_env or directly, not both")
        return self


def default_secret_env(platform: str) -> str:
    """``STEWARD_<PLATFORM>_SIGNING_SECRET``: the secret of a platform's default connection."""
    return f"STEWARD_{platform.upper()}_SIGNING_SECRET"


class Connections:
    """Every connection by (platform, name). Each platform has a ``default`` connection whose
    secret is ``STEWARD_<PLATFORM>_SIGNING_SECRET``, served at ``/webhooks/<platform>``."""

    def __init__(self, connections: list[Connection], environ: Mapping[str, str]) -> None:
        self._by_key: dict[tuple[str, str], Connection] = {}
        for connection in connections:
            key = (connection.platform, connection.name)
            if key in self._by_key:
                raise ConnectionsError(f"two connections named {connection.name!r} for {connection.platform}")
            if connection.secret_env:
                value = environ.get(connection.secret_env, "")
                if not value:
                    raise ConnectionsError(
                        f"connection {connection.name!r}: environment variable {connection.secret_env} is empty"
                    )
                connection = connection.model_copy(update={"secret": SecretStr(value)})
            self._by_key[key] = connection
        self._environ = environ

    @classmethod
    def load(cls, path: Path | None, platforms: list[str], environ: Mapping[str, str] | None = None,
             defaults: Mapping[str, SecretStr] | None = None) -> "Connections":
        environ = os.environ if environ is None else environ
        configured: list[Connection] = []
        if path is not None:
            try:
                document = yaml.safe_load(Path(path).read_text()) or {}
                configured = [Connection.model_validate(item) for item in document.get("connections", [])]
            except (OSError, yaml.YAMLError, ValidationError, AttributeError) as error:
                raise ConnectionsError(f"{path}: {error}") from None
            unknown = {c.platform for c in configured} - set(platforms)
            if unknown:
                raise ConnectionsError(f"{path}: unknown platforms {sorted(unknown)}; known: {platforms}")
        named = {(c.platform, c.name) for c in configured}
        for platform in platforms:
            if (platform, DEFAULT) not in named:
                secret = (defaults or {}).get(platform) or SecretStr(environ.get(default_secret_env(platform), ""))
                configured.append(Connection(name=DEFAULT, platform=platform, secret=secret))
        return cls(configured, environ)

    def get(self, platform: str, name: str) -> Connection | None:
        return self._by_key.get((platform, name))
