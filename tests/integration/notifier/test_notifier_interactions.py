"""The Slack interactivity callback served by uvicorn on a free port, signed like Slack signs,
with the message update going to the real local fake Slack (its response_url)."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from schemas.feedback import FeedbackAction, FeedbackSource, ModeratorFeedback
from services.ingest.signatures import sign_slack
from services.notifier.interactions import INTERACTIONS_PATH, build_interactions_router
from services.notifier.receivers.slack import (
    ACTIONS_BLOCK_ID,
    button_value,
    render_blocks,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ACTION_TS = "1795284300.123456"  # 2026-11-21 18:05:00 UTC


@dataclass
class Notifier:
    url: str
    http: httpx.AsyncClient
    published: list[ModeratorFeedback] = field(default_factory=list)
    publish_error: Exception | None = None

    async def send(self, body: bytes, *, timestamp: int | None = None, signature: str | None = None,
                   secret: str = SECRET) -> httpx.Response:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": signature or sign_slack(secret, ts, body),
        }
        return await self.http.post(self.url, content=body, headers=headers)

    async def click(self, payload: dict, **kw) -> httpx.Response:
        return await self.send(urlencode({"payload": json.dumps(payload)}).encode(), **kw)


@pytest.fixture
async def notifier() -> AsyncIterator[Notifier]:
    box: dict[str, Notifier] = {}

    async def publish(feedback: ModeratorFeedback) -> None:
        if box["n"].publish_error is not None:
            raise box["n"].publish_error
        box["n"].published.append(feedback)

    app = FastAPI()
    app.include_router(build_interactions_router(SECRET, publish))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(timeout=10) as http:
        box["n"] = Notifier(f"http://127.0.0.1:{port}{INTERACTIONS_PATH}", http)
        try:
            yield box["n"]
        finally:
            server.should_exit = True
            await serving


def block_actions(incident, response_url: str, action_id: str = "steward_ack",
                  action_ts: str = ACTION_TS) -> dict:
    message = {"type": "message", "ts": "1795284000.000100", **render_blocks(incident)}
    return {
        "type": "block_actions",
        "user": {"id": "U0MOD", "username": "alice", "name": "alice", "team_id": "T1"},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": "C0MODS"},
        "channel": {"id": "C0MODS", "name": "mods"},
        "message": message,
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": ACTIONS_BLOCK_ID,
                "value": button_value(incident),
                "action_ts": action_ts,
            }
        ],
    }


async def updates(slack, count: int = 1, timeout_s: float = 5.0) -> list:
    """The posts the fake Slack got, once there are ``count`` (the update runs after the answer)."""
    deadline = time.monotonic() + timeout_s
    while len(slack.posts) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return list(slack.posts)


async def test_click_publishes_feedback_and_updates_the_message(notifier, slack, make_incident) -> None:
    incident = make_incident(incident_id="inc-42")
    response_url = slack.base + "/actions/T1/42/secret"
    answer = await notifier.click(block_actions(incident, response_url))

    assert answer.status_code == 200, answer.text
    (feedback,) = notifier.published
    assert (feedback.incident_id, feedback.community_id, feedback.action) == (
        "inc-42", "acme", FeedbackAction.acknowledged,
    )  # fmt: skip
    assert feedback.moderator == "alice" and feedback.source is FeedbackSource.slack
    assert feedback.decided_at.isoformat() == "2026-11-21T18:05:00.123456+00:00"

    (update,) = await updates(slack)
    assert update.path == "/actions/T1/42/secret"
    assert update.body["replace_original"] is True
    assert update.body["text"].endswith("Acknowledged by alice")
    blocks = update.body["blocks"]
    assert [b.get("block_id") for b in blocks].count(ACTIONS_BLOCK_ID) == 1  # still resolvable
    lines = [b["elements"][0]["text"] for b in blocks if b.get("block_id") == "steward_decision_acknowledged"]
    assert lines == ["✅ Acknowledged by <@U0MOD> · 2026-11-21 18:05 UTC"]


async def test_resolving_drops_the_buttons(notifier, slack, make_incident) -> None:
    payload = block_actions(make_incident(), slack.base + "/actions/r", "steward_resolve")
    assert (await notifier.click(payload)).status_code == 200
    (update,) = await updates(slack)
    assert ACTIONS_BLOCK_ID not in [b.get("block_id") for b in update.body["blocks"]]
    assert notifier.published[0].action is FeedbackAction.resolved


async def test_a_repeated_click_has_the_same_feedback_id(notifier, slack, make_incident) -> None:
    payload = block_actions(make_incident(), slack.base + "/actions/r")
    for _ in range(2):  # Slack resending the same click
        assert (await notifier.click(payload)).status_code == 200
    later = block_actions(make_incident(), slack.base + "/actions/r", action_ts="1795284360.000001")
    assert (await notifier.click(later)).status_code == 200
    first, resent, other = (f.feedback_id for f in notifier.published)
    assert first == resent and other != first


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"signature": "v0=" + "0" * 64}, "does not match"),
        ({"secret": "another-secret"}, "does not match"),
        ({"timestamp": int(time.time()) - 3600}, "outside the 300s window"),
    ],
)
async def test_a_bad_signature_is_401(notifier, slack, make_incident, kw, why) -> None:
    answer = await notifier.click(block_actions(make_incident(), slack.base + "/actions/r"), **kw)
    assert answer.status_code == 401
    assert why in answer.json()["detail"]
    assert notifier.published == [] and slack.posts == []


async def test_missing_signature_headers_are_401(notifier) -> None:
    answer = await notifier.http.post(notifier.url, content=b"payload=%7B%7D")
    assert answer.status_code == 401 and "missing" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"token=abc", "no payload field"),
        (b"payload=%7Bnot-json", "payload is not JSON"),
    ],
)
async def test_a_malformed_payload_is_400(notifier, body: bytes, why: str) -> None:
    answer = await notifier.send(body)
    assert answer.status_code == 400
    assert why in answer.json()["detail"]
    assert notifier.published == []


async def test_a_button_without_a_community_is_400(notifier, slack, make_incident) -> None:
    payload = block_actions(make_incident(), slack.base + "/actions/r")
    payload["actions"][0]["value"] = "inc-0001"  # a message rendered before the community was carried
    answer = await notifier.click(payload)
    assert answer.status_code == 400 and "incident reference" in answer.json()["detail"]


async def test_other_actions_are_ignored(notifier, slack, make_incident) -> None:
    payload = block_actions(make_incident(), slack.base + "/actions/r", "steward_open_permalink")
    answer = await notifier.click(payload)
    assert answer.status_code == 200
    assert (await notifier.click({"type": "view_submission", "view": {}})).status_code == 200
    await asyncio.sleep(0.1)
    assert notifier.published == [] and slack.posts == []


async def test_publish_failure_is_503_and_nothing_is_updated(notifier, slack, make_incident) -> None:
    notifier.publish_error = RuntimeError("broker unreachable")
    answer = await notifier.click(block_actions(make_incident(), slack.base + "/actions/r"))
    assert answer.status_code == 503
    assert "could not be recorded" in answer.json()["detail"]
    await asyncio.sleep(0.2)
    assert slack.posts == []


async def test_a_failed_update_still_answers_200(notifier, slack, make_incident) -> None:
    slack.default = (404, {}, "expired_url")
    answer = await notifier.click(block_actions(make_incident(), slack.base + "/actions/old"))
    assert answer.status_code == 200
    assert len(notifier.published) == 1
    assert len(await updates(slack)) == 1  # tried once, logged, not retried
