"""What every contract shares: strictness, UTC timestamps and a schema version."""

from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict


def _as_utc(value: datetime) -> datetime:
    # A naive timestamp is ambiguous on the wire; refusing it beats guessing a zone.
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC offset)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every message on a topic.

    ``schema_version`` is the major version of the contract, and equals the ``vN`` suffix
    of its topic: a breaking change gets a new topic, an additive one keeps the version.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = 1

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()
