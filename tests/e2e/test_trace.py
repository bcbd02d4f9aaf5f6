"""One OpenTelemetry trace from the webhook to the Slack alert, on real parts.

Ingest, moderation and the notifier run in this process (each built by its module's
``create_service`` and started through its own lifespan) against a LocalStack of their own:
tansu, nx-27017 and a real local HTTP server standing in for Slack's incoming webhook. An
in-memory exporter on every service's tracer provider captures their spans. A signed Slack
webhook carrying a known ``traceparent`` must produce spans of all three services in that
trace, and the notifier's "notify ..." span must descend, parent by parent, from ingest's
request span: one connected trace, not merely a shared trace id.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.ingest.app import create_service as create_ingest
from services.ingest.signatures import sign_slack
from services.localstack.stack import LocalStack
from services.moderation.app import create_service as create_moderation
from services.moderation.model.bundle import ensure_serving_bundle
from services.notifier.app import create_service as create_notifier
from services.runtime.settings import (
    IngestSettings,
    ModerationSettings,
    NotifierSettings,
)
from tests.support import SlackStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

THREAT = "Post that again and I will find where you live and hurt you."
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN_ID = "b7ad6b7169203331"  # the webhook caller's span: not ours, so not captured
WEBHOOK_PATH = "/webhooks/slack"
DELIVERY_TIMEOUT_S = 60
SERVICES = ("steward-ingest", "steward-moderation", "steward-notifier")


@pytest.fixture
def slack_webhook():
    with SlackStandIn() as slack:
        yield slack


@pytest.fixture
def infrastructure(tmp_path):
    """This test's own tansu, nx-27017 and SMTP sink, with the contract topics created.
    Sync on purpose: start_infrastructure() runs its own event loop."""
    stack = LocalStack(tmp_path / "home", preferred_ports=False)
    try:
        stack.start_infrastructure()
        yield stack
    finally:
        stack.stop()


def routing_yaml(tmp_path: Path) -> Path:
    """Everything to one Slack receiver at once (group_wait 0s), nothing else."""
    path = tmp_path / "routing.yaml"
    path.write_text(
        "receivers:\n"
        "  - name: slack-mods\n"
        "    slack: {}\n"  # webhook_url: the settings' slack_webhook_url
        "route:\n"
        "  receiver: slack-mods\n"
        "  group_by: [community, category]\n"
        "  group_wait: 0s\n"
        "  group_interval: 5m\n"
        "  repeat_interval: 4h\n"
    )
    return path


def capture(exporter: InMemorySpanExporter, services) -> list[TracerProvider]:
    """The exporter on every service's provider and on the global one, once per provider."""
    providers: list[TracerProvider] = []
    for provider in [s.tracer_provider for s in services] + [trace.get_tracer_provider()]:
        if isinstance(provider, TracerProvider) and all(provider is not p for p in providers):
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            providers.append(provider)
    return providers


def service_of(span: ReadableSpan) -> str:
    return span.resource.attributes.get("service.name", "?")


def describe(spans: list[ReadableSpan]) -> str:
    return "\n".join(
        f"  {service_of(s)} {s.name!r} kind={s.kind.name} trace={s.context.trace_id:032x} "
        f"span={s.context.span_id:016x} parent={(f'{s.parent.span_id:016x}' if s.parent else None)}"
        for s in sorted(spans, key=lambda s: s.start_time or 0)
    )


def chain_to_root(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    """``span`` and its ancestors among the captured spans, nearest first."""
    chain = [span]
    while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
        chain.append(by_id[chain[-1].parent.span_id])
        assert len(chain) < 100, "a cycle in the parent links"
    return chain


def signed_slack_event(secret: str, team: str, event_id: str) -> tuple[bytes, dict[str, str]]:
    ts = f"{time.time():.6f}"
    body = json.dumps({
        "type": "event_callback", "team_id": team, "event_id": event_id, "event_time": int(float(ts)),
        "event": {"type": "message", "channel": "C0TRACE", "user": "U0HARM", "text": THREAT, "ts": ts},
    }).encode()
    now = int(time.time())
    return body, {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign_slack(secret, now, body),
        "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01",
    }


async def test_one_trace_runs_from_the_webhook_to_the_slack_alert(
    infrastructure, slack_webhook, model_cache, tmp_path
):
    endpoints = infrastructure.endpoints
    run = uuid.uuid4().hex[:10]
    team = f"T0TRACE{run.upper()}"
    bundle = await asyncio.to_thread(ensure_serving_bundle, model_cache)
    common = {"kafka_bootstrap": endpoints.kafka, "mongo_uri": endpoints.mongo_uri,
              "home": tmp_path / "steward", "shutdown_grace_s": 5}

    ingest = create_ingest(IngestSettings(**common, slack_signing_secret=endpoints.slack_secret))
    moderation = create_moderation(ModerationSettings(**common, model_dir=bundle, model_threads=1))
    notifier = create_notifier(NotifierSettings(
        **common, routing_file=routing_yaml(tmp_path), slack_webhook_url=slack_webhook.url,
        slack_channel_interval_s=0, consumer_group=f"steward-notifier-trace-{run}"))
    services = (ingest, moderation, notifier)
    exporter = InMemorySpanExporter()
    capture(exporter, services)

    def ours() -> list[dict]:
        return [p for p in slack_webhook.posts if team in json.dumps(p)]

    async with AsyncExitStack() as running:
        # Consumers first, so that they are in their groups when the webhook's event lands.
        for service in (notifier, moderation, ingest):
            await running.enter_async_context(service.app.router.lifespan_context(service.app))

        body, headers = signed_slack_event(endpoints.slack_secret, team, f"Ev{run}")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ingest.app), base_url="http://ingest") as client:
            answer = await client.post(WEBHOOK_PATH, content=body, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1

        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while not ours():
            assert time.monotonic() < deadline, f"no Slack alert for {team} within {DELIVERY_TIMEOUT_S}s"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # a duplicate post, if one were coming, has time to arrive
        for service in services:
            service.tracer_provider.force_flush()
        # Snapshot before the lifespans end: each one shuts its provider (and so the exporter) down.
        spans = list(exporter.get_finished_spans())

    [post] = ours()
    assert "find where you live" in json.dumps(post), "the alert carries the message"
    assert len(slack_webhook.posts) == 1, "the Slack webhook got exactly one post"

    traced = [s for s in spans if s.context.trace_id == int(TRACE_ID, 16)]
    seen = describe(spans)
    by_id = {s.context.span_id: s for s in traced}
    problems: list[str] = []  # all of them at once, so that one run tells the whole story

    # ingest: FastAPI's server span of the webhook, child of the caller's traceparent
    requests = [s for s in traced if service_of(s) == "steward-ingest" and s.kind == SpanKind.SERVER
                and s.attributes.get("url.path") == WEBHOOK_PATH]
    if len(requests) != 1:
        problems.append(f"expected one steward-ingest server span for {WEBHOOK_PATH}, found {len(requests)}")
    request = requests[0] if requests else None
    if request is not None:
        if request.parent is None or request.parent.span_id != int(CALLER_SPAN_ID, 16):
            problems.append("ingest's request span does not continue the webhook's traceparent")
        if request.attributes.get("http.response.status_code") != 200:
            problems.append(f"ingest's request span says {request.attributes.get('http.response.status_code')}")

    # moderation: the span its incident's (and verdict's) headers were made from
    moderate = [s for s in traced if service_of(s) == "steward-moderation" and s.name == "moderate"]
    if not moderate:
        problems.append("no steward-moderation 'moderate' span in the trace")

    # notifier: the delivery to Slack
    notifies = [s for s in traced if s.name == "notify slack-mods"]
    if len(notifies) != 1:
        problems.append(f"expected one 'notify slack-mods' span in the trace, found {len(notifies)}")
    for notify in notifies[:1]:
        if service_of(notify) != "steward-notifier":
            problems.append(f"the 'notify slack-mods' span belongs to {service_of(notify)!r} "
                            "(its tracer provider's resource), not steward-notifier")
        # one connected trace: notify -> ... -> moderate -> ... -> the webhook's request span
        chain = chain_to_root(notify, by_id)
        names = " <- ".join(f"{service_of(s)}:{s.name}" for s in chain)
        if request is None or chain[-1] is not request:
            problems.append(f"the notify span's ancestors stop short of ingest's request span: {names}")
        if not any(s in moderate for s in chain):
            problems.append(f"the notify span's ancestors skip moderation's 'moderate' span: {names}")

    missing = set(SERVICES) - {service_of(s) for s in traced}
    if missing:
        problems.append(f"no span of {sorted(missing)} in the webhook's trace")

    assert not problems, "\n".join(problems) + f"\ncaptured spans:\n{seen}"
