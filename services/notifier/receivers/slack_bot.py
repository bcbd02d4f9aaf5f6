"""Slack with a bot token: chat.postMessage to a channel, so the message can later be
updated in place when a moderator clicks one of its buttons."""

from __future__ import annotations

import json
from typing import Any

import httpx

from services.notifier.receivers.base import Notification
from services.notifier.receivers.slack import (
    Outcome,
    SlackPoster,
    Verdict,
    parse_retry_after,
    render_notification,
)

__all__ = ["TRANSIENT_ERRORS", "SlackBotReceiver"]

RATE_LIMITED_ERRORS = frozenset({"ratelimited", "rate_limited"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
"""Web API errors worth a retry. Any other ``ok: false`` error (``invalid_auth``,
``channel_not_found``, ``not_in_channel``, ``missing_scope``, ``is_archived``, ...) fails at
once: retrying a request Slack refused would not help and would hold the channel's slots."""


class SlackBotReceiver(SlackPoster):
    """Posts the Block Kit message with ``chat.postMessage`` and a bot token (``xoxb-``).

    Slack answers API errors with HTTP 200 and ``{"ok": false, "error": ...}``:
    ``ratelimited`` (or HTTP 429) is rate limiting, with ``Retry-After``; errors like
    ``invalid_auth``, ``channel_not_found``, ``not_in_channel`` fail at once; HTTP 5xx,
    408, Slack's ``internal_error``-like errors and connection errors are retried with
    backoff. The receipt's ``reference`` is ``CHANNEL/ts`` of the posted message. Paced
    under the channel. ``options``: ``SlackPoster``'s keywords (retries, timeout, pacer).
    """

    def __init__(
        self,
        token: str,
        channel: str,
        client: httpx.AsyncClient | None = None,
        *,
        api_url: str = "https://slack.com/api",
        **options: Any,
    ) -> None:
        if not token:
            raise ValueError("a bot token is needed for chat.postMessage")
        super().__init__(client, **options)
        self.channel = channel
        self.api_url = api_url.rstrip("/")
        self.pace_key = f"channel:{channel}"
        self._token = token

    def _payload(self, notification: Notification) -> dict[str, Any]:
        return {"channel": self.channel, **render_notification(notification)}

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        return await self._http().post(
            f"{self.api_url}/chat.postMessage",
            content=json.dumps(payload).encode(),
            headers={
                "Authorization": f"Bearer {self._token}",
                # without the charset Slack adds a missing_charset warning to every answer
                "Content-Type": "application/json; charset=utf-8",
            },
            timeout=self.timeout_s,
        )

    def _target(self) -> str:
        return f"{self.api_url}/chat.postMessage"

    def _judge(self, response: httpx.Response) -> Verdict:
        code = response.status_code
        if code == 429:
            wait = parse_retry_after(response)
            return Verdict(Outcome.rate_limited, f"rate limited (HTTP 429, Retry-After {wait})", wait)
        if code >= 500 or code == 408:
            return Verdict(Outcome.transient, f"HTTP {code} {response.text[:200]}".strip())
        if not response.is_success:
            return Verdict(Outcome.permanent, f"HTTP {code} {response.text[:200]}".strip())
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            # a proxy's error page, say: nothing says the post failed for good
            return Verdict(Outcome.transient, f"HTTP {code}, not a Web API answer: {response.text[:200]}")
        if answer.get("ok") is True:
            channel, ts = answer.get("channel"), answer.get("ts")
            reference = f"{channel}/{ts}" if channel and ts else None
            return Verdict(Outcome.delivered, f"HTTP {code} ok, ts {ts}", reference=reference)
        error = str(answer.get("error") or "unknown_error")
        detail = f"Slack API error {error} (HTTP {code})"
        if error in RATE_LIMITED_ERRORS:
            wait = parse_retry_after(response)
            return Verdict(Outcome.rate_limited, f"{detail}, Retry-After {wait}", wait)
        if error in TRANSIENT_ERRORS:
            return Verdict(Outcome.transient, detail)
        return Verdict(Outcome.permanent, detail)
