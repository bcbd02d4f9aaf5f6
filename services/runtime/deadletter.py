"""The consumer wrapper every Steward consumer runs under.

FastStream's ack policies alone either commit past a failing message (it is lost) or
redeliver it in a hot loop. This middleware sits inside the ack middleware instead: it
retries the handler with bounded exponential backoff and, once the attempts are spent,
publishes the original record with its error to ``<topic>.dlq``. Only then does the
handler return normally, so the offset is committed after the effect, or the dead letter,
is durable. A record that cannot be parsed is poison from the start and skips the retries.

An outage of the store or the broker is not the event's fault: dead-lettering would empty
the topic into its DLQ for the length of the outage. Such a failure is retried without end
instead, holding the partition (its lag grows and alerts), and the consumer resumes by
itself when the dependency is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, KafkaTimeoutError
from faststream.middlewares import BaseMiddleware
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from schemas.topics import dead_letter

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker
    from faststream.message import StreamMessage

log = logging.getLogger("steward.consumer")

HEADER_PREFIX = "x-steward-dlq-"


class PoisonEvent(Exception):
    """Raised by a handler for an event that no retry can fix (it goes straight to the DLQ)."""


class Outage(Exception):
    """A dependency (store, broker) is unreachable: retried until it is back, never dead-lettered."""


def consumer_group(context: Any) -> str | None:
    """The group of the subscriber handling the current message (FastStream's context)."""
    return getattr(context.get("handler_"), "group_id", None)


def is_outage(error: BaseException) -> bool:
    # aiokafka marks its request timeout non-retriable, but it is what an unreachable broker raises
    return isinstance(error, (Outage, ConnectionFailure, KafkaTimeoutError)) or (
        isinstance(error, KafkaError) and bool(getattr(error, "retriable", False)))


def is_permanent(error: BaseException) -> bool:
    return isinstance(
        error, (PoisonEvent, ValidationError, UnicodeDecodeError, json.JSONDecodeError)
    )


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 5.0


class DeadLetterPolicy:
    """A FastStream broker middleware factory; bind it to the broker that owns it."""

    def __init__(self, retry: RetryPolicy, registry: CollectorRegistry) -> None:
        self.retry = retry
        self._broker: KafkaBroker | None = None
        self.dead_letters = Counter(
            "steward_dead_letters",
            "Events sent to a dead-letter topic",
            ["topic", "error_type"],
            registry=registry,
        )
        self.handler_failures = Counter(
            "steward_handler_failures",
            "Failed handler attempts (each retry counts)",
            ["topic", "error_type"],
            registry=registry,
        )
        self.outage_waits = Counter(
            "steward_outage_waits",
            "Times a consumer held its partition because a dependency was down (retried, not dead-lettered)",
            ["topic", "error_type"],
            registry=registry,
        )

    def bind(self, broker: KafkaBroker) -> None:
        self._broker = broker

    def __call__(self, msg: Any, /, *, context: Any) -> _RetryThenDeadLetter:
        return _RetryThenDeadLetter(msg, context=context, policy=self)

    async def dead_letter(
        self, msg: StreamMessage[Any], error: BaseException, attempts: int, group: str | None = None
    ) -> None:
        """Dead-letter every record of ``msg`` (one, or a batch) with the error."""
        raw = msg.raw_message
        for record in raw if isinstance(raw, (list, tuple)) else (raw,):
            await self.dead_letter_record(record, error, attempts, group)

    async def dead_letter_record(
        self, record: ConsumerRecord, error: BaseException, attempts: int, group: str | None = None
    ) -> None:
        """Publish the original record with its error; retried until the broker takes it.

        Batch handlers call this for the one record of a batch that is poison, and go on
        with the others."""
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                f"{HEADER_PREFIX}error-type": type(error).__name__,
                f"{HEADER_PREFIX}error-message": str(error)[:2000],
                f"{HEADER_PREFIX}attempts": str(attempts),
                f"{HEADER_PREFIX}topic": record.topic,
                f"{HEADER_PREFIX}partition": str(record.partition),
                f"{HEADER_PREFIX}offset": str(record.offset),
                # Several groups read one topic: say whose handler gave up.
                f"{HEADER_PREFIX}group": group or "",
                f"{HEADER_PREFIX}failed-at": datetime.now(UTC).isoformat(),
            }
        )
        await self.publish(record.value, record.topic, record.key, headers, error)
        log.warning(
            "dead-lettered %s[%s]@%s after %s attempt(s): %s: %s",
            record.topic, record.partition, record.offset, attempts, type(error).__name__, error,
        )

    async def publish(self, value: bytes | None, topic: str, key: bytes | None, headers: dict[str, str],
                      error: BaseException) -> None:
        """Put ``value`` on ``topic``'s dead-letter topic; retried until the broker takes it."""
        assert self._broker is not None, "DeadLetterPolicy.bind(broker) was not called"
        target = dead_letter(topic)
        delay = self.retry.backoff_initial_s
        while True:
            try:
                await self._broker.publish(value, target, key=key, headers=headers)
                break
            except asyncio.CancelledError:
                raise
            except Exception as publish_error:  # the broker is down: keep the event, keep trying
                log.error("dead-lettering to %s failed, retrying in %.1fs: %r", target, delay, publish_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry.backoff_max_s)
        self.dead_letters.labels(topic, type(error).__name__).inc()


class _RetryThenDeadLetter(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: DeadLetterPolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        retry = self.policy.retry
        raw = msg.raw_message
        topic = (raw[0] if isinstance(raw, (list, tuple)) else raw).topic
        attempts = 0

        def count_failure(error: BaseException) -> bool:
            self.policy.handler_failures.labels(topic, type(error).__name__).inc()
            return not is_permanent(error)

        while True:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(retry.max_attempts),
                    wait=wait_exponential(multiplier=retry.backoff_initial_s, max=retry.backoff_max_s),
                    retry=retry_if_exception(count_failure),
                    reraise=True,
                ):
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        return await call_next(msg)
            except asyncio.CancelledError:
                raise  # shutting down: no ack, the record is redelivered to the next owner
            except Exception as error:
                if is_outage(error):
                    self.policy.outage_waits.labels(topic, type(error).__name__).inc()
                    log.warning("%s: a dependency is down (%s: %s); holding the partition, retrying in %.1fs",
                                topic, type(error).__name__, error, retry.backoff_max_s)
                    await asyncio.sleep(retry.backoff_max_s)
                    continue
                await self.policy.dead_letter(msg, error, attempts, consumer_group(self.context))
                return None
