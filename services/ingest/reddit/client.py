"""A small Reddit OAuth API client: token handling, rate limits, bounded retries.

- Token: ``POST {token_url}`` with HTTP basic auth (client id, secret) and
  ``grant_type=client_credentials`` or ``grant_type=password``; refreshed a margin before
  ``expires_in`` runs out, and once more on a 401.
- Rate limits: Reddit sends ``X-Ratelimit-Remaining`` (requests left in the window) and
  ``X-Ratelimit-Reset`` (seconds until the window resets); when none are left the client
  waits for the reset. A 429 waits ``Retry-After`` (or the reset) and tries again.
- 5xx and transport errors are retried with exponential backoff, a bounded number of times.

Neither the secret, the password nor the token is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

import httpx

from services.ingest.reddit.settings import RedditSettings

log = logging.getLogger("steward.ingest.reddit")

Sleep = Callable[[float], Awaitable[None]]
TOKEN_MARGIN_S = 60.0
MAX_WAIT_S = 600.0


class RedditApiError(Exception):
    """A request failed for good (after retries, or with a non-retryable status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RedditAuthError(RedditApiError):
    """Reddit refused the credentials: retrying does not help until they are fixed."""


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class RedditClient:
    def __init__(
        self,
        settings: RedditSettings,
        *,
        http: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._http = http or httpx.AsyncClient(timeout=settings.reddit_http_timeout_s)
        self._owns_http = http is None
        self._sleep = sleep
        self._clock = clock
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = asyncio.Lock()
        self._blocked_until = 0.0  # the clock time before which the rate limit says wait
        self.requests = 0
        self.token_fetches = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    @property
    def _headers(self) -> dict[str, str]:
        return {"User-Agent": self.settings.reddit_user_agent}

    # -- token ---------------------------------------------------------------------------

    def _token_fresh(self) -> bool:
        return self._token is not None and self._clock() < self._token_expires_at

    async def _access_token(self, *, force: bool = False) -> str:
        async with self._token_lock:
            if force or not self._token_fresh():
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> None:
        s = self.settings
        if s.uses_password_grant:
            assert s.reddit_password is not None
            form = {"grant_type": "password", "username": s.reddit_username or "",
                    "password": s.reddit_password.get_secret_value()}
        else:
            form = {"grant_type": "client_credentials"}
        auth = (s.reddit_client_id, s.reddit_client_secret.get_secret_value())
        response = await self._send(
            lambda: self._http.post(s.reddit_token_url, data=form, auth=auth, headers=self._headers),
            what="access token",
        )
        if response.status_code in (400, 401, 403):
            raise RedditAuthError(f"Reddit refused the credentials ({response.status_code})",
                                  response.status_code)
        if response.status_code != 200:
            raise RedditApiError(f"access token: HTTP {response.status_code}", response.status_code)
        body = response.json()
        token = body.get("access_token")
        if not token:
            # Reddit answers 200 with {"error": "invalid_grant"} for a wrong password.
            raise RedditAuthError(f"no access token in the answer: {body.get('error', 'unknown error')}")
        expires_in = float(body.get("expires_in") or 3600)
        margin = min(TOKEN_MARGIN_S, expires_in / 2)
        self._token = str(token)
        self._token_expires_at = self._clock() + expires_in - margin
        self.token_fetches += 1
        log.info("reddit access token obtained (%s grant, valid %.0f s)", form["grant_type"], expires_in)

    # -- requests ------------------------------------------------------------------------

    def _note_rate_limit(self, response: httpx.Response) -> None:
        remaining = _float(response.headers.get("x-ratelimit-remaining"))
        reset = _float(response.headers.get("x-ratelimit-reset"))
        if remaining is not None and reset is not None and remaining < 1:
            self._blocked_until = max(self._blocked_until, self._clock() + min(reset, MAX_WAIT_S))

    async def _wait_rate_limit(self) -> None:
        wait = self._blocked_until - self._clock()
        if wait > 0:
            log.info("reddit rate limit exhausted; waiting %.1f s for the reset", wait)
            await self._sleep(wait)
            self._blocked_until = 0.0

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        delay = min(s.reddit_backoff_max_s, s.reddit_backoff_initial_s * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    async def _send(
        self, request: Callable[[], Awaitable[httpx.Response]], *, what: str
    ) -> httpx.Response:
        """One request with rate-limit waits and bounded retries of 429, 5xx and transport errors."""
        attempts = self.settings.reddit_max_attempts
        for attempt in range(1, attempts + 1):
            await self._wait_rate_limit()
            try:
                self.requests += 1
                response = await request()
            except httpx.TransportError as error:
                if attempt == attempts:
                    raise RedditApiError(f"{what}: {type(error).__name__} after {attempts} tries") from error
                delay = self._backoff(attempt)
                log.warning("%s: %s; retry %d/%d in %.1f s", what, type(error).__name__,
                            attempt, attempts - 1, delay)
                await self._sleep(delay)
                continue
            self._note_rate_limit(response)
            status = response.status_code
            if status == 429 or status >= 500:
                if attempt == attempts:
                    raise RedditApiError(f"{what}: HTTP {status} after {attempts} tries", status)
                if status == 429:
                    delay = (_float(response.headers.get("retry-after"))
                             or _float(response.headers.get("x-ratelimit-reset"))
                             or self._backoff(attempt))
                    # The wait covers the window's reset too: no second wait before the retry.
                    delay = max(delay, self._blocked_until - self._clock())
                    delay = min(max(delay, 0.0), MAX_WAIT_S)
                    self._blocked_until = 0.0
                else:
                    delay = self._backoff(attempt)
                log.warning("%s: HTTP %d; retry %d/%d in %.1f s", what, status, attempt, attempts - 1, delay)
                await self._sleep(delay)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET an API path with the bearer token; one token refresh on a 401."""
        url = self.settings.reddit_api_url.rstrip("/") + path
        for refreshed in (False, True):
            token = await self._access_token(force=refreshed)
            response = await self._send(
                lambda token=token: self._http.get(
                    url, params=params, headers={**self._headers, "Authorization": f"bearer {token}"}
                ),
                what=f"GET {path}",
            )
            if response.status_code == 401 and not refreshed:
                log.info("reddit answered 401 for %s; refreshing the token", path)
                continue
            if response.status_code != 200:
                raise RedditApiError(f"GET {path}: HTTP {response.status_code}", response.status_code)
            return response.json()
        raise RedditAuthError(f"GET {path}: 401 with a fresh token", 401)

    async def listing(
        self, subreddit: str, endpoint: str, *, limit: int = 100, after: str | None = None
    ) -> dict[str, Any]:
        """``GET /r/{subreddit}/{endpoint}`` (``new`` or ``comments``): one Listing page."""
        params: dict[str, Any] = {"limit": limit, "raw_json": 1}
        if after:
            params["after"] = after
        body = await self.get(f"/r/{subreddit}/{endpoint}", params)
        if not isinstance(body, dict) or body.get("kind") != "Listing":
            raise RedditApiError(f"/r/{subreddit}/{endpoint}: not a Listing")
        return body


__all__ = ["RedditApiError", "RedditAuthError", "RedditClient"]
