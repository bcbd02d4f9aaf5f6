"""SlackWebhookReceiver against a real local HTTP server standing in for Slack."""

import time

import httpx
import pytest

from services.notifier.receivers import (
    DeliveryFailed,
    DeliveryStatus,
    SlackWebhookReceiver,
)
from services.notifier.receivers.base import Notification


def fast(url: str, **kw) -> SlackWebhookReceiver:
    options = {"max_attempts": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    options.update(kw)
    return SlackWebhookReceiver(url, name="mods", **options)


async def test_posts_block_kit_json(slack, make_incident) -> None:
    receiver = fast(slack.url)
    try:
        receipt = await receiver.deliver(Notification.of(make_incident(incident_id="inc-77")))
    finally:
        await receiver.aclose()
    assert receipt.status is DeliveryStatus.delivered
    assert (receipt.receiver, receipt.kind, receipt.attempts, receipt.response_code) == (
        "mods",
        "slack",
        1,
        200,
    )
    (post,) = slack.posts
    assert post.path == "/services/T000/B000/secret"
    assert post.content_type.startswith("application/json")
    assert post.body["text"].startswith("[HIGH] threat in acme")
    actions = [b for b in post.body["blocks"] if b["type"] == "actions"]
    assert {e["value"] for e in actions[0]["elements"]} == {'{"i":"inc-77","c":"acme"}'}


async def test_429_retry_after_is_honoured(slack, make_incident) -> None:
    slack.script.append((429, {"Retry-After": "1"}, "rate_limited"))
    receiver = fast(slack.url)
    try:
        receipt = await receiver.deliver(Notification.of(make_incident()))
    finally:
        await receiver.aclose()
    assert receipt.ok and receipt.attempts == 2 and receipt.response_code == 200
    assert len(slack.posts) == 2
    gap = slack.posts[1].at - slack.posts[0].at
    # the backoff alone would have waited ~10 ms: the wait came from Retry-After
    assert gap >= 0.95, gap
    assert slack.posts[0].body == slack.posts[1].body


async def test_retry_after_is_capped(slack, make_incident) -> None:
    slack.script.append((429, {"Retry-After": "120"}, "rate_limited"))
    receiver = fast(slack.url, retry_after_max_s=0.2)
    t0 = time.monotonic()
    try:
        receipt = await receiver.deliver(Notification.of(make_incident()))
    finally:
        await receiver.aclose()
    assert receipt.ok and receipt.attempts == 2
    gap = slack.posts[1].at - slack.posts[0].at
    assert 0.18 <= gap < 2, gap
    assert time.monotonic() - t0 < 2


async def test_transient_5xx_then_success(slack, make_incident) -> None:
    slack.script += [(500, {}, "oops"), (503, {}, "busy")]
    async with httpx.AsyncClient() as client:  # a shared client is used, not closed
        receiver = SlackWebhookReceiver(
            slack.url, client, name="mods", backoff_initial_s=0.01, backoff_max_s=0.02
        )
        receipt = await receiver.deliver(Notification.of(make_incident()))
        await receiver.aclose()
        assert not client.is_closed
    assert receipt.ok and receipt.attempts == 3
    assert len(slack.posts) == 3


async def test_5xx_forever_raises_after_bounded_attempts(slack, make_incident) -> None:
    slack.default = (500, {}, "internal_error")
    receiver = fast(slack.url, max_attempts=3)
    try:
        with pytest.raises(DeliveryFailed) as info:
            await receiver.deliver(Notification.of(make_incident(incident_id="inc-500")))
    finally:
        await receiver.aclose()
    receipt = info.value.receipt
    assert receipt.status is DeliveryStatus.failed
    assert receipt.attempts == 3 and receipt.response_code == 500
    assert "retries exhausted" in receipt.detail and "internal_error" in receipt.detail
    assert len(slack.posts) == 3
    assert "inc-500" in str(info.value) and "after 3 attempt" in str(info.value)


async def test_4xx_fails_at_once(slack, make_incident) -> None:
    slack.default = (404, {}, "no_service")
    receiver = fast(slack.url)
    try:
        with pytest.raises(DeliveryFailed) as info:
            await receiver.deliver(Notification.of(make_incident()))
    finally:
        await receiver.aclose()
    assert info.value.receipt.attempts == 1
    assert info.value.receipt.response_code == 404
    assert "no_service" in info.value.receipt.detail
    assert len(slack.posts) == 1


async def test_connection_refused_is_retried_then_fails(make_incident, closed_port) -> None:
    receiver = fast(f"http://127.0.0.1:{closed_port}/services/T/B/secret-token", max_attempts=3)
    try:
        with pytest.raises(DeliveryFailed) as info:
            await receiver.deliver(Notification.of(make_incident()))
    finally:
        await receiver.aclose()
    receipt = info.value.receipt
    assert receipt.attempts == 3 and receipt.response_code is None
    assert "ConnectError" in receipt.detail
    assert "secret-token" not in receipt.detail  # the webhook URL is a secret
