"""Waiting for dependencies at start: they may come up after us, so retry with backoff."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

log = logging.getLogger("steward.startup")


async def wait_for(name: str, probe: Callable[[], Awaitable[Any]]) -> None:
    """Call ``probe`` until it succeeds, logging each failure's type (never its secrets)."""
    async for attempt in AsyncRetrying(
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(Exception),
        before_sleep=lambda state: log.warning(
            "%s not reachable yet (%s); retrying", name, type(state.outcome.exception()).__name__
        ),
    ):
        with attempt:
            await probe()


async def start_closing_on_failure(client: Any) -> None:
    """``client.start()``; a failed start is stopped so that no connection leaks."""
    try:
        await client.start()
    except Exception:
        await client.stop()
        raise


async def start_producer(producer: AIOKafkaProducer) -> None:
    await wait_for("Kafka", lambda: start_closing_on_failure(producer))
