"""build_receivers: which integrations a routing receiver gets, from config and settings."""

import pytest

from services.notifier.receivers import (
    ConsoleReceiver,
    EmailReceiver,
    ReceiverGroup,
    SlackBotReceiver,
    SlackWebhookReceiver,
    build_receivers,
)
from services.notifier.routing import load_default_routing, load_routing
from services.runtime.settings import NotifierSettings


def settings(**kw) -> NotifierSettings:
    return NotifierSettings(_env_file=None, **kw)


@pytest.fixture(autouse=True)
def _no_steward_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("STEWARD_"):
            monkeypatch.delenv(key)


def test_nothing_configured_falls_back_to_console() -> None:
    receivers = build_receivers(load_default_routing(), settings())
    assert set(receivers) == {"console", "moderators"}
    assert all(isinstance(r, ConsoleReceiver) for r in receivers.values())
    mods = receivers["moderators"]
    assert mods.name == "moderators"
    assert "slack (no webhook URL)" in mods.note and "email (no smtp_host)" in mods.note


def test_only_slack_configured_drops_email() -> None:
    receivers = build_receivers(
        load_default_routing(),
        settings(slack_webhook_url="https://hooks.example/T/B/x", email_to=["m@x.org"]),
        slack_options={"max_attempts": 2},
    )
    mods = receivers["moderators"]
    assert isinstance(mods, SlackWebhookReceiver)
    assert mods.url == "https://hooks.example/T/B/x" and mods.max_attempts == 2


def test_slack_and_email_make_a_group_with_fallbacks_from_settings() -> None:
    cfg = load_routing(
        """
receivers:
  - name: mods
    slack: {webhook_url: "https://hooks.example/own"}
    email: {}
  - name: legal
    email: {to: [legal@x.org]}
route: {receiver: mods}
"""
    )
    s = settings(
        slack_webhook_url="https://hooks.example/global",
        smtp_host="mail.x.org",
        smtp_port=587,
        smtp_username="bot",
        smtp_password="pw",
        smtp_starttls=True,
        email_from="steward@x.org",
        email_to=["mods@x.org"],
    )
    receivers = build_receivers(cfg, s)
    mods = receivers["mods"]
    assert isinstance(mods, ReceiverGroup) and mods.name == "mods"
    slack, email = mods.members
    assert isinstance(slack, SlackWebhookReceiver) and slack.url == "https://hooks.example/own"
    assert isinstance(email, EmailReceiver)
    assert (email.host, email.port, email.username, email.password, email.starttls) == (
        "mail.x.org",
        587,
        "bot",
        "pw",
        True,
    )
    assert email.sender == "steward@x.org" and email.recipients == ["mods@x.org"]
    legal = receivers["legal"]
    assert isinstance(legal, EmailReceiver) and legal.recipients == ["legal@x.org"]
    assert legal.name == "legal"


def test_email_without_recipients_falls_back() -> None:
    cfg = load_routing("receivers: [{name: e, email: {}}]\nroute: {receiver: e}\n")
    (r,) = build_receivers(cfg, settings(smtp_host="mail.x.org")).values()
    assert isinstance(r, ConsoleReceiver) and "email (no recipients)" in r.note


BOT_ROUTING = """
receivers:
  - name: mods
    slack: {channel: C0MODS}
  - name: legal
    slack: {channel: C0LEGAL, webhook_url: "https://hooks.example/legal"}
  - name: hook
    slack: {}
route: {receiver: mods}
"""


def test_a_channel_with_a_bot_token_posts_with_chat_post_message() -> None:
    s = settings(
        slack_bot_token="xoxb-1",
        slack_api_url="http://127.0.0.1:9/api",
        slack_webhook_url="https://hooks.example/global",
        slack_channel_interval_s=0.25,
    )
    receivers = build_receivers(load_routing(BOT_ROUTING), s, slack_options={"max_attempts": 2})
    mods, legal, hook = receivers["mods"], receivers["legal"], receivers["hook"]
    assert isinstance(mods, SlackBotReceiver) and isinstance(legal, SlackBotReceiver)
    assert (mods.name, mods.channel, mods.api_url, mods.max_attempts) == (
        "mods", "C0MODS", "http://127.0.0.1:9/api", 2,
    )  # fmt: skip
    assert legal.channel == "C0LEGAL"  # the channel wins over the entry's webhook
    assert isinstance(hook, SlackWebhookReceiver) and hook.url == "https://hooks.example/global"
    # one pacer for every Slack receiver, so two of them posting to one channel are spaced
    assert mods.pacer is legal.pacer is hook.pacer and mods.pacer.interval_s == 0.25


def test_a_channel_without_a_bot_token_is_left_out() -> None:
    receivers = build_receivers(
        load_routing(BOT_ROUTING), settings(slack_webhook_url="https://hooks.example/global")
    )
    mods = receivers["mods"]
    assert isinstance(mods, ConsoleReceiver)
    assert "slack (a channel but no bot token)" in mods.note
    assert isinstance(receivers["hook"], SlackWebhookReceiver)
