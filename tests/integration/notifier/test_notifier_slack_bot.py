"""SlackBotReceiver (chat.postMessage) and the per-channel pacer, against a real local HTTP
server standing in for Slack's Web API."""

import asyncio

import pytest

from services.notifier.receivers import (
    ChannelPacer,
    DeliveryFailed,
    DeliveryStatus,
    SlackBotReceiver,
    SlackWebhookReceiver,
)
from services.notifier.receivers.base import Notification

TOKEN = "xoxb-1-test-token"
FAST = {"max_attempts": 4, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}


def posted(post) -> dict:
    """Slack's answer to a successful chat.postMessage, echoing the channel."""
    return {"ok": True, "channel": post.body["channel"], "ts": "1763748300.000100"}


def bot(slack, channel: str = "C042", **kw) -> SlackBotReceiver:
    return SlackBotReceiver(TOKEN, channel, api_url=slack.base + "/", name="mods", **{**FAST, **kw})


async def deliver(receiver, notification: Notification):
    try:
        return await receiver.deliver(notification)
    finally:
        await receiver.aclose()


async def test_post_message_with_bearer_token_and_blocks(slack, make_incident) -> None:
    slack.default = (200, {}, posted)
    receipt = await deliver(bot(slack), Notification.of(make_incident(incident_id="inc-9")))

    assert receipt.status is DeliveryStatus.delivered
    assert (receipt.receiver, receipt.kind, receipt.attempts, receipt.response_code) == ("mods", "slack", 1, 200)
    assert receipt.reference == "C042/1763748300.000100"
    (post,) = slack.posts
    assert post.path == "/chat.postMessage"
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.content_type.startswith("application/json")
    assert set(post.body) == {"channel", "text", "blocks"}
    assert post.body["channel"] == "C042"
    assert post.body["text"].startswith("[HIGH] threat in acme")
    (actions,) = [b for b in post.body["blocks"] if b["type"] == "actions"]
    assert {e["value"] for e in actions["elements"]} == {'{"i":"inc-9","c":"acme"}'}
    assert TOKEN not in receipt.detail


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found", "not_in_channel", "some_new_error"])
async def test_api_error_fails_at_once(slack, make_incident, error: str) -> None:
    slack.default = (200, {}, {"ok": False, "error": error})
    with pytest.raises(DeliveryFailed) as info:
        await deliver(bot(slack), Notification.of(make_incident()))
    receipt = info.value.receipt
    assert receipt.status is DeliveryStatus.failed
    assert receipt.attempts == 1 and receipt.response_code == 200
    assert error in receipt.detail and receipt.reference is None
    assert len(slack.posts) == 1


@pytest.mark.parametrize("status", [429, 200])
async def test_ratelimited_waits_retry_after(slack, make_incident, status: int) -> None:
    slack.script.append((status, {"Retry-After": "0.5"}, {"ok": False, "error": "ratelimited"}))
    slack.default = (200, {}, posted)
    receipt = await deliver(bot(slack), Notification.of(make_incident()))
    assert receipt.ok and receipt.attempts == 2 and receipt.reference is not None
    gap = slack.posts[1].at - slack.posts[0].at
    # the backoff alone would have waited ~10 ms: the wait came from Retry-After
    assert gap >= 0.45, gap
    assert slack.posts[0].body == slack.posts[1].body


async def test_server_errors_are_retried(slack, make_incident) -> None:
    slack.script += [(503, {}, "upstream busy"), (200, {}, {"ok": False, "error": "internal_error"})]
    slack.default = (200, {}, posted)
    receipt = await deliver(bot(slack), Notification.of(make_incident()))
    assert receipt.ok and receipt.attempts == 3


async def test_exhausted_retries_say_why(slack, make_incident) -> None:
    slack.default = (500, {}, "internal")
    with pytest.raises(DeliveryFailed) as info:
        await deliver(bot(slack, max_attempts=2), Notification.of(make_incident()))
    assert info.value.receipt.attempts == 2
    assert "retries exhausted" in info.value.receipt.detail


# --------------------------------------------------------------------------- pacing

INTERVAL = 0.3


def _arrivals(slack, key) -> dict[str, list[float]]:
    """When the server got each post, by channel (or webhook path)."""
    times: dict[str, list[float]] = {}
    for post in slack.posts:
        times.setdefault(key(post), []).append(post.at)
    return times


async def test_one_channel_is_paced_while_channels_go_in_parallel(slack, make_incident) -> None:
    slack.default = (200, {}, posted)
    pacer = ChannelPacer(INTERVAL)
    receivers = [bot(slack, channel, pacer=pacer) for channel in ("C1", "C1", "C2")]
    notifications = [Notification.of(make_incident(incident_id=f"inc-{i}")) for i in range(3)]
    receipts = await asyncio.gather(*(deliver(r, n) for r, n in zip(receivers, notifications, strict=True)))
    assert all(r.ok for r in receipts)

    times = _arrivals(slack, lambda p: p.body["channel"])
    c1_first, c1_second = sorted(times["C1"])
    (c2,) = times["C2"]
    assert c1_second - c1_first >= INTERVAL * 0.95, c1_second - c1_first
    assert abs(c2 - c1_first) < INTERVAL / 2  # another channel did not wait


async def test_webhook_posts_share_the_pacer_by_url(slack, make_incident) -> None:
    pacer = ChannelPacer(INTERVAL)
    other_hook = slack.base + "/services/T000/B001/other"
    receivers = [
        SlackWebhookReceiver(url, name=name, pacer=pacer, **FAST)
        for name, url in (("a", slack.url), ("b", slack.url), ("c", other_hook))
    ]
    await asyncio.gather(*(deliver(r, Notification.of(make_incident())) for r in receivers))

    times = _arrivals(slack, lambda p: p.path)
    first, second = sorted(times["/services/T000/B000/secret"])
    (other,) = times["/services/T000/B001/other"]
    assert second - first >= INTERVAL * 0.95, second - first
    assert abs(other - first) < INTERVAL / 2


async def test_retry_after_holds_the_channel_for_every_receiver(slack, make_incident) -> None:
    slack.script.append((429, {"Retry-After": "0.6"}, {"ok": False, "error": "ratelimited"}))
    slack.default = (200, {}, posted)
    pacer = ChannelPacer(0.05)
    first, second = bot(slack, "C1", pacer=pacer), bot(slack, "C1", pacer=pacer)
    receipts = await asyncio.gather(
        deliver(first, Notification.of(make_incident(incident_id="inc-a"))),
        deliver(second, Notification.of(make_incident(incident_id="inc-b"))),
    )
    assert all(r.ok for r in receipts)
    limited, *rest = sorted(p.at for p in slack.posts)
    assert len(rest) == 2
    # the second receiver, queued behind the rate-limited post, waited out Retry-After too
    assert min(rest) - limited >= 0.55, [t - limited for t in rest]
