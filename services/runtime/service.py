"""The shell every Steward service runs in: a FastAPI app whose lifespan owns the broker,
the MongoDB client and telemetry, and which serves /healthz, /readyz and /metrics.

A service module builds a :class:`Service`, registers its subscribers on ``service.broker``
and its routes on ``service.app``; nothing else about process wiring lives in services.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Response
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.runtime.broker import make_broker
from services.runtime.deadletter import DeadLetterPolicy
from services.runtime.lag import ConsumerLag
from services.runtime.mongo import database, make_mongo, ping
from services.runtime.settings import RuntimeSettings
from services.runtime.startup import start_closing_on_failure, wait_for
from services.runtime.telemetry import setup_logging, setup_tracing

log = logging.getLogger("steward.service")

Hook = Callable[[], Awaitable[None]]
CHECK_TIMEOUT_S = 2.0
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Service:
    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        title: str,
        uses_mongo: bool = True,
    ) -> None:
        self.settings = settings
        self.title = title
        setup_logging(settings)
        self.registry = CollectorRegistry()
        self.tracer_provider = setup_tracing(settings)
        self.broker: KafkaBroker
        self.dead_letters: DeadLetterPolicy
        self.broker, self.dead_letters = make_broker(
            settings, registry=self.registry, tracer_provider=self.tracer_provider
        )
        self.mongo: AsyncMongoClient | None = make_mongo(settings, self.registry) if uses_mongo else None
        self.lag = ConsumerLag(self.registry, settings.lag_interval_s)
        self._on_startup: list[Hook] = []
        self._on_shutdown: list[Hook] = []
        # FastAPI's own OpenTelemetry support: one server span per request, continuing the
        # caller's traceparent. Per-dependency spans and FastAPI's metrics are off (they cost
        # more than a webhook's own work; Prometheus covers metrics).
        self.app = FastAPI(
            title=title,
            lifespan=self._lifespan,
            telemetry={
                "tracer_provider": self.tracer_provider,
                "operation_spans": False,
                "metrics": False,
                "logs": False,
                "exclude": lambda scope: scope.get("path") in UNTRACED_PATHS,
            },
        )
        self.app.state.service = self
        self._add_operational_routes()


    @property
    def db(self) -> AsyncDatabase:
        assert self.mongo is not None, f"{self.title} does not use MongoDB"
        return database(self.mongo, self.settings)

    def on_startup(self, hook: Hook) -> Hook:
        """Run after the store is reachable and before the broker starts consuming."""
        self._on_startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        self._on_shutdown.append(hook)
        return hook

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(self.broker, title=self.title, version="1.0.0")
        return spec.to_specification().to_jsonable()

    async def check(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the reason it is not."""
        results: dict[str, str] = {}

        async def run(name: str, probe: Callable[[], Awaitable[Any]]) -> None:
            try:
                outcome = await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
                results[name] = "ok" if outcome is not False else "unreachable"
            except Exception as error:  # reported, not raised: this is a health answer
                results[name] = f"{type(error).__name__}: {error}"[:300]

        probes = [run("broker", lambda: self.broker.ping(timeout=CHECK_TIMEOUT_S))]
        if self.mongo is not None:
            probes.append(run("mongodb", lambda: ping(self.mongo)))
        await asyncio.gather(*probes)
        return results

    def _add_operational_routes(self) -> None:
        app = self.app

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, Any]:
            # Liveness: the process answers. Dependencies are reported, not enforced, so an
            # outage of the broker does not make Kubernetes restart every pod at once.
            return {"status": "alive", "service": self.settings.service_name, "checks": await self.check()}

        @app.get("/readyz", include_in_schema=False)
        async def readyz(response: Response) -> dict[str, Any]:
            checks = await self.check()
            ready = all(v == "ok" for v in checks.values())
            response.status_code = 200 if ready else 503
            return {"status": "ready" if ready else "not ready", "checks": checks}

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def _lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        if self.mongo is not None:
            await wait_for("MongoDB", lambda: ping(self.mongo))
        for hook in self._on_startup:
            await hook()
        await wait_for("Kafka", lambda: start_closing_on_failure(self.broker))
        self.lag.start(self.broker)
        log.info("%s started", self.title)
        try:
            yield
        finally:
            # SIGTERM (uvicorn has stopped taking requests and finished those in flight):
            # stop fetching, let in-flight handlers finish and commit (up to
            # shutdown_grace_s), then close what they used.
            log.info("%s stopping: finishing in-flight work", self.title)
            await self.lag.stop()
            await self.broker.stop()
            for hook in self._on_shutdown:
                await hook()
            if self.mongo is not None:
                await self.mongo.close()
            self.tracer_provider.shutdown()
            log.info("%s stopped", self.title)
