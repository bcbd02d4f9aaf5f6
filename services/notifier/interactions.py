"""Slack interactivity: a moderator clicks a decision button on an alert; the decision is
published as ``ModeratorFeedback`` and the message is updated in place through the
payload's ``response_url``."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, BackgroundTasks, HTTPException, Request, Response

from schemas.feedback import FeedbackAction, FeedbackSource, ModeratorFeedback
from services.ingest.signatures import SignatureError, verify_slack
from services.notifier.receivers.slack import (
    ACTION_IDS,
    ACTIONS_BLOCK_ID,
    escape_mrkdwn,
    parse_button_value,
)

__all__ = [
    "INTERACTIONS_PATH",
    "Click",
    "MalformedInteraction",
    "build_interactions_router",
    "click_from_payload",
    "decided_blocks",
    "read_payload",
    "updated_message",
]

log = logging.getLogger(__name__)

INTERACTIONS_PATH = "/slack/interactions"
BODY_LIMIT = 1 << 20
"""A block_actions payload carries the whole message, still far below this."""
UPDATE_TIMEOUT_S = 5.0
KEEPS_BUTTONS = frozenset({FeedbackAction.acknowledged, FeedbackAction.escalated})
"""After these the incident is still open: someone may still resolve it."""
_ACTION_BY_ID = {action_id: action for action, action_id in ACTION_IDS.items()}
_DECISIONS = {
    FeedbackAction.acknowledged: ("✅", "Acknowledged"),
    FeedbackAction.resolved: ("☑️", "Resolved"),
    FeedbackAction.false_positive: ("🚫", "Marked a false positive"),
    FeedbackAction.escalated: ("⏫", "Escalated"),
}
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{1,40}")


class MalformedInteraction(ValueError):
    """A signed request whose payload is not what Slack sends (answered 400)."""


@dataclass(frozen=True)
class Click:
    """One click on one of our decision buttons."""

    feedback: ModeratorFeedback
    user_id: str | None
    response_url: str | None
    message: dict[str, Any] | None
    """The message as it was when clicked (``text``, ``blocks``), when Slack sent it."""


def read_payload(body: bytes) -> dict[str, Any]:
    """The ``payload`` JSON of Slack's form-encoded interactivity request."""
    try:
        form = parse_qs(body.decode(), strict_parsing=False)
    except UnicodeDecodeError:
        raise MalformedInteraction("body is not UTF-8") from None
    values = form.get("payload")
    if not values:
        raise MalformedInteraction("no payload field in the form body")
    try:
        payload = json.loads(values[0])
    except json.JSONDecodeError as error:
        raise MalformedInteraction(f"payload is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedInteraction("payload is not a JSON object")
    return payload


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def click_from_payload(payload: dict[str, Any]) -> Click | None:
    """The decision a ``block_actions`` payload carries; ``None`` when it is not one of our
    buttons (another app's action, the "Open message" link, a modal, a shortcut)."""
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise MalformedInteraction("block_actions without an actions list")
    ours = [a for a in actions if isinstance(a, dict) and a.get("action_id") in _ACTION_BY_ID]
    if not ours:
        return None
    clicked = ours[0]  # one click, one action
    action_id = clicked["action_id"]
    try:
        incident_id, community_id = parse_button_value(clicked.get("value"))
    except ValueError as error:
        raise MalformedInteraction(str(error)) from None

    user = _mapping(payload.get("user"))
    user_id = user.get("id") if isinstance(user.get("id"), str) else None
    moderator = user.get("username") or user.get("name") or user_id
    if not isinstance(moderator, str) or not moderator:
        raise MalformedInteraction("no user in the payload")

    action_ts = clicked.get("action_ts")
    try:
        decided_at = datetime.fromtimestamp(float(action_ts), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise MalformedInteraction(f"action_ts {action_ts!r} is not a Slack timestamp") from None

    message = payload.get("message") if isinstance(payload.get("message"), dict) else None
    container = _mapping(payload.get("container"))
    message_ts = container.get("message_ts") or _mapping(message).get("ts")
    channel_id = container.get("channel_id") or _mapping(payload.get("channel")).get("id")
    # Slack resends the very same payload for the same click: the same id, so one decision
    key = json.dumps([channel_id, message_ts, action_ts, action_id])
    feedback_id = "slack-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    try:
        feedback = ModeratorFeedback(
            feedback_id=feedback_id,
            incident_id=incident_id,
            community_id=community_id,
            action=_ACTION_BY_ID[action_id],
            moderator=moderator,
            source=FeedbackSource.slack,
            decided_at=decided_at,
        )
    except ValueError as error:  # pydantic's ValidationError
        raise MalformedInteraction(f"not a valid decision: {error}") from None
    response_url = payload.get("response_url")
    return Click(
        feedback=feedback,
        user_id=user_id,
        response_url=response_url if isinstance(response_url, str) else None,
        message=message,
    )


def _who(click: Click) -> str:
    if click.user_id and _SLACK_USER_ID.fullmatch(click.user_id):
        return f"<@{click.user_id}>"
    return escape_mrkdwn(click.feedback.moderator)


def decision_line(action: FeedbackAction, who: str, decided_at: datetime) -> dict[str, Any]:
    """The context block saying who decided what, and when."""
    emoji, verb = _DECISIONS[action]
    when = decided_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {
        "type": "context",
        "block_id": f"steward_decision_{action.value}",
        "elements": [{"type": "mrkdwn", "text": f"{emoji} {verb} by {who} · {when}"}],
    }


def decided_blocks(
    blocks: list[dict[str, Any]], action: FeedbackAction, who: str, decided_at: datetime
) -> list[dict[str, Any]]:
    """The message's blocks with the decision shown where the buttons are. The buttons stay
    after an acknowledgement or an escalation, and go after a resolution or a false positive.
    A later click of the same decision replaces its line rather than adding another."""
    line = decision_line(action, who, decided_at)
    out = [b for b in blocks if not (isinstance(b, dict) and b.get("block_id") == line["block_id"])]
    at = next((i for i, b in enumerate(out) if isinstance(b, dict) and b.get("block_id") == ACTIONS_BLOCK_ID), None)
    if at is None:
        out.append(line)
    elif action in KEEPS_BUTTONS:
        out.insert(at, line)
    else:
        out[at] = line
    return out


def updated_message(click: Click) -> dict[str, Any] | None:
    """The body for ``response_url`` that rewrites the clicked message; ``None`` when Slack
    did not send the message's blocks."""
    message = click.message or {}
    blocks = message.get("blocks")
    if not isinstance(blocks, list):
        return None
    feedback = click.feedback
    _, verb = _DECISIONS[feedback.action]
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    decided = f"{verb} by {escape_mrkdwn(feedback.moderator)}"
    return {
        "replace_original": True,
        "text": f"{text} · {decided}" if text else decided,
        "blocks": decided_blocks(blocks, feedback.action, _who(click), feedback.decided_at),
    }


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_LIMIT:
        raise HTTPException(413, f"body over {BODY_LIMIT} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise HTTPException(413, f"body over {BODY_LIMIT} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def build_interactions_router(
    signing_secret: str,
    publish: Callable[[ModeratorFeedback], Awaitable[None]],
    *,
    http_client: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """``POST /slack/interactions``: Slack's interactivity request URL.

    401 when the signature (``X-Slack-Signature`` over the raw body, with
    ``X-Slack-Request-Timestamp``) is missing, wrong or stale; 400 for a malformed payload;
    200 for anything not one of our buttons. A click on one of ours is published (503 when
    that fails, so the click can be tried again), then answered 200; the message is updated
    after the answer, and a failed update is only logged.
    """
    router = APIRouter(tags=["slack"])

    async def update_message(click: Click) -> None:
        body = updated_message(click)
        if body is None or not click.response_url:
            log.info("feedback %s: no message or response_url to update", click.feedback.feedback_id)
            return
        try:
            if http_client is not None:
                response = await http_client.post(click.response_url, json=body, timeout=UPDATE_TIMEOUT_S)
            else:
                async with httpx.AsyncClient(timeout=UPDATE_TIMEOUT_S) as client:
                    response = await client.post(click.response_url, json=body)
        except httpx.HTTPError as error:
            log.warning("feedback %s: message update failed: %s: %s",
                        click.feedback.feedback_id, type(error).__name__, error)
            return
        if not response.is_success:
            log.warning("feedback %s: message update answered HTTP %d %s",
                        click.feedback.feedback_id, response.status_code, response.text[:200])

    @router.post(
        INTERACTIONS_PATH,
        summary="Slack interactivity callback (the alert's decision buttons)",
        responses={400: {"description": "Malformed payload"}, 401: {"description": "Bad signature"},
                   503: {"description": "The decision could not be published; click again"}},
    )
    async def slack_interactions(request: Request, background: BackgroundTasks) -> Response:
        body = await _read_limited(request)
        try:
            verify_slack(
                signing_secret,
                timestamp=request.headers.get("X-Slack-Request-Timestamp"),
                body=body,
                signature=request.headers.get("X-Slack-Signature"),
                now=clock(),
            )
        except SignatureError as error:
            raise HTTPException(401, f"signature rejected: {error}") from None
        try:
            click = click_from_payload(read_payload(body))
        except MalformedInteraction as error:
            raise HTTPException(400, f"malformed Slack interaction: {error}") from None
        if click is None:
            return Response(status_code=200)
        try:
            await publish(click.feedback)
        except Exception as error:
            log.exception("feedback %s on incident %s not published",
                          click.feedback.feedback_id, click.feedback.incident_id)
            raise HTTPException(503, f"the decision could not be recorded ({type(error).__name__}); "
                                     "click again") from None
        # Slack wants its answer within 3 s; the message update needs no answer
        background.add_task(update_message, click)
        return Response(status_code=200)

    return router
