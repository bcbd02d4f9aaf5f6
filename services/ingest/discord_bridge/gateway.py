"""A Discord Gateway client that turns server activity into published MemberActivity.

One connection at a time, three tasks on it:

- the *reader* answers the Gateway's control opcodes at once (heartbeat ACK, heartbeat
  request, RECONNECT, INVALID_SESSION) and queues every DISPATCH, in order, with its
  sequence number and its normalized event;
- the *heartbeat* sends op 1 every ``heartbeat_interval`` (the first after a random
  fraction of it) and declares the connection a zombie when the previous beat got no ACK;
- the *publisher* publishes queued events through the injected ``publish`` callable and
  only then advances :attr:`GatewayClient.seq`, the sequence sent in RESUME.

Never losing an event: ``seq`` is the last sequence whose event (and every one before it)
the broker acknowledged. A failing publish is retried with backoff while the connection
stays up (the reader and the heartbeat go on); if the queue of unpublished dispatches fills
up, the reader stops reading, the missed ACK closes the connection, and the RESUME that
follows asks Discord to replay everything after ``seq``. Replays carry the same event_id,
so the worst case is a duplicate that downstream consumers ignore, never a gap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from schemas import MemberActivity
from services.ingest.discord_bridge.settings import DiscordBridgeSettings
from services.ingest.platforms.discord import GatewayMemory, normalize_dispatch

log = logging.getLogger("steward.discord")
# websockets logs every frame at DEBUG, IDENTIFY and RESUME (the token) included: its logger
# for the Gateway never goes below INFO, whatever STEWARD_LOG_LEVEL says.
frames_log = logging.getLogger("steward.discord.websocket")
frames_log.setLevel(max(logging.INFO, frames_log.level))

Publish = Callable[[list[MemberActivity]], Awaitable[None]]

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 7, 9, 10, 11

FATAL_CLOSE_CODES = {
    4004: "authentication failed: the bot token (STEWARD_DISCORD_BOT_TOKEN) is wrong or was reset",
    4010: "invalid shard: check STEWARD_DISCORD_SHARD_ID / STEWARD_DISCORD_SHARD_COUNT",
    4011: "sharding required: the bot is in too many guilds for one connection; set shards",
    4012: "invalid API version in STEWARD_DISCORD_GATEWAY_URL",
    4013: "invalid intents in STEWARD_DISCORD_INTENTS",
    4014: "disallowed intents: enable the privileged Server Members and Message Content intents "
    "for the bot in the Developer Portal, or remove them from STEWARD_DISCORD_INTENTS",
}
NEW_SESSION_CLOSE_CODES = {4007, 4009}  # invalid seq, session timed out: identify anew
RESUMABLE_CLOSE = 4000  # our own close when we mean to resume (1000/1001 end the session)
BATCH = 100  # events published in one call
MAX_MESSAGE_BYTES = 1 << 26  # a large guild's GUILD_CREATE is big


class GatewayError(Exception):
    """Discord refused the bridge for good (bad token, intents, shard): retrying cannot help."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"Discord gateway closed with {code}: {reason}" if code else reason)
        self.code = code


class _Reconnect(Exception):
    def __init__(self, reason: str, *, resume: bool = True, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.resume = resume
        self.delay_s = delay_s


@dataclass(frozen=True)
class GatewayConfig:
    token: SecretStr
    gateway_url: str
    intents: int
    shard: tuple[int, int] | None = None
    connect_timeout_s: float = 15.0
    reconnect_backoff_initial_s: float = 1.0
    reconnect_backoff_max_s: float = 60.0
    invalid_session_delay_s: tuple[float, float] = (1.0, 5.0)
    publish_backoff_initial_s: float = 0.5
    publish_backoff_max_s: float = 30.0
    max_pending_events: int = 10_000

    def __repr__(self) -> str:  # the token is a SecretStr already; keep reprs short anyway
        return f"GatewayConfig(gateway_url={self.gateway_url!r}, intents={self.intents})"

    @classmethod
    def from_settings(cls, settings: DiscordBridgeSettings) -> GatewayConfig:
        shard = None
        if settings.discord_shard_id is not None and settings.discord_shard_count is not None:
            shard = (settings.discord_shard_id, settings.discord_shard_count)
        return cls(
            token=settings.discord_bot_token,
            gateway_url=settings.discord_gateway_url,
            intents=settings.discord_intents,
            shard=shard,
            connect_timeout_s=settings.discord_connect_timeout_s,
            reconnect_backoff_initial_s=settings.discord_reconnect_backoff_initial_s,
            reconnect_backoff_max_s=settings.discord_reconnect_backoff_max_s,
            invalid_session_delay_s=(
                settings.discord_invalid_session_delay_min_s, settings.discord_invalid_session_delay_max_s
            ),
            publish_backoff_initial_s=settings.discord_publish_backoff_initial_s,
            publish_backoff_max_s=settings.discord_publish_backoff_max_s,
            max_pending_events=settings.discord_max_pending_events,
        )


def backoff_s(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half the capped delay, plus up to the other half."""
    delay = min(maximum, initial * 2 ** max(0, attempt - 1))
    return delay / 2 + rng.uniform(0, delay / 2)


def with_query_of(url: str, template: str) -> str:
    """``url`` with ``template``'s query (v=10&encoding=json) when it has none: READY's
    resume_gateway_url comes bare and Discord asks clients to add the parameters."""
    parts, query = urlsplit(url), urlsplit(template).query
    if parts.query or not query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def bot_token(token: SecretStr) -> str:
    value = token.get_secret_value().strip()
    return value[4:] if value.lower().startswith("bot ") else value


class GatewayClient:
    """Holds one Gateway session open, resuming it across disconnects; see the module doc."""

    def __init__(
        self,
        config: GatewayConfig,
        publish: Publish,
        *,
        memory: GatewayMemory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._publish = publish
        self.memory = memory if memory is not None else GatewayMemory()
        self._rng = rng or random.Random()
        self._stopping = asyncio.Event()
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.seq: int | None = None  # last sequence whose event is published: what RESUME sends
        self.received_seq: int | None = None
        self._acked = True
        self._became_healthy = False
        self.counts = {
            "connections": 0, "identifies": 0, "resumes": 0, "published": 0, "ignored": 0,
            "malformed": 0, "publish_failures": 0, "replayed_skipped": 0,
        }

    # ------------------------------------------------------------------ public

    def stop(self) -> None:
        """Ask :meth:`run` to close the connection and return."""
        self._stopping.set()

    @property
    def can_resume(self) -> bool:
        return self.session_id is not None and self.seq is not None

    async def run(self) -> None:
        """Connect, and reconnect, until :meth:`stop`; raises :class:`GatewayError` when
        Discord refuses the bot for good (bad token, disallowed intents...)."""
        failures = 0
        while not self._stopping.is_set():
            resume = self.can_resume
            # Resume where READY said to; after a few failed tries there, through the main URL.
            use_resume_url = resume and self.resume_url and failures < 3
            url = with_query_of(self.resume_url, self.config.gateway_url) if use_resume_url \
                else self.config.gateway_url
            delay: float | None = None
            try:
                await self._connection(url, resume)
            except _Reconnect as request:
                delay = request.delay_s
                if not request.resume:
                    self._forget_session(str(request))
                log.info("reconnecting to the Discord gateway (%s; will %s)", request,
                         "resume" if self.can_resume else "identify")
            except GatewayError:
                raise
            except Exception as error:  # the network, the handshake, a malformed frame
                log.warning("Discord gateway connection failed: %s: %s", type(error).__name__, error)
            if self._stopping.is_set():
                break
            # A connection that reached READY or RESUMED was healthy: start the backoff over.
            failures = 0 if self._became_healthy else failures + 1
            if delay is None:
                delay = (
                    backoff_s(failures, self.config.reconnect_backoff_initial_s,
                              self.config.reconnect_backoff_max_s, self._rng)
                    if failures else self._rng.uniform(0, self.config.reconnect_backoff_initial_s)
                )
            await self._sleep_unless_stopping(delay)

    # ------------------------------------------------------------------ one connection

    async def _connection(self, url: str, resume: bool) -> None:
        """One websocket, from HELLO to its end. Returns when stopping; raises _Reconnect."""
        self._became_healthy = False
        self.counts["connections"] += 1
        ws = await connect(url, max_size=MAX_MESSAGE_BYTES, ping_interval=None, close_timeout=2,
                           open_timeout=self.config.connect_timeout_s, logger=frames_log)
        close_code, close_reason = RESUMABLE_CLOSE, "reconnecting"
        tasks: list[asyncio.Task] = []
        try:
            hello = await asyncio.wait_for(self._receive(ws), self.config.connect_timeout_s)
            if hello.get("op") != HELLO:
                raise _Reconnect(f"expected HELLO, got op {hello.get('op')}")
            interval_s = float(hello["d"]["heartbeat_interval"]) / 1000
            self._acked = True
            queue: asyncio.Queue[tuple[int | None, MemberActivity | None]] = asyncio.Queue(
                self.config.max_pending_events
            )
            tasks = [
                asyncio.create_task(self._heartbeat(ws, interval_s), name="discord-heartbeat"),
                asyncio.create_task(self._publisher(queue), name="discord-publisher"),
                asyncio.create_task(self._reader(ws, queue, resume), name="discord-reader"),
                asyncio.create_task(self._stopping.wait(), name="discord-stop"),
            ]
            if resume:
                await self._send_resume(ws)
            else:
                await self._send_identify(ws)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._stopping.is_set():
                close_code, close_reason = 1000, "stopping"
                return
            for task in done:
                task.result()  # raises the _Reconnect / GatewayError that ended the connection
            raise _Reconnect("a gateway task ended")
        except _Reconnect as request:
            if not request.resume:
                close_code = 1000  # the session is gone anyway
            raise
        except GatewayError:
            close_code, close_reason = 1000, "refused"
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await ws.close(close_code, close_reason)
            except Exception:  # already gone
                pass

    async def _receive(self, ws: ClientConnection) -> dict[str, Any]:
        try:
            raw = await ws.recv()
        except ConnectionClosed as closed:
            raise self._closed(closed) from None
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise _Reconnect("a gateway frame that is not a JSON object")
        return payload

    def _closed(self, closed: ConnectionClosed) -> Exception:
        code = closed.rcvd.code if closed.rcvd else None
        if code in FATAL_CLOSE_CODES:
            return GatewayError(code, FATAL_CLOSE_CODES[code])
        if code in NEW_SESSION_CLOSE_CODES:
            return _Reconnect(f"closed by Discord with {code}, a new session is needed", resume=False)
        return _Reconnect(f"closed by Discord with {code if code is not None else 'no close frame'}")

    async def _send(self, ws: ClientConnection, op: int, d: Any) -> None:
        try:
            await ws.send(json.dumps({"op": op, "d": d}))
        except ConnectionClosed as closed:
            raise self._closed(closed) from None

    async def _send_identify(self, ws: ClientConnection) -> None:
        self._forget_session(None)
        d: dict[str, Any] = {
            "token": bot_token(self.config.token),
            "intents": self.config.intents,
            "properties": {"os": sys.platform, "browser": "steward", "device": "steward"},
        }
        if self.config.shard:
            d["shard"] = list(self.config.shard)
        self.counts["identifies"] += 1
        log.info("identifying to the Discord gateway (intents %d)", self.config.intents)
        await self._send(ws, IDENTIFY, d)

    async def _send_resume(self, ws: ClientConnection) -> None:
        self.counts["resumes"] += 1
        log.info("resuming Discord session after sequence %s", self.seq)
        await self._send(ws, RESUME, {
            "token": bot_token(self.config.token), "session_id": self.session_id, "seq": self.seq,
        })

    def _forget_session(self, why: str | None) -> None:
        if why and self.session_id:
            log.warning("Discord session %s is gone (%s): events after sequence %s that were not "
                        "received cannot be replayed", self.session_id, why, self.seq)
        self.session_id, self.resume_url, self.seq, self.received_seq = None, None, None, None

    # ------------------------------------------------------------------ tasks

    async def _heartbeat(self, ws: ClientConnection, interval_s: float) -> None:
        await asyncio.sleep(interval_s * self._rng.random())
        while True:
            if not self._acked:
                raise _Reconnect("no heartbeat ACK since the last beat: zombie connection")
            self._acked = False
            await self._send(ws, HEARTBEAT, self.seq)
            await asyncio.sleep(interval_s)

    async def _reader(self, ws: ClientConnection, queue: asyncio.Queue, resumed: bool) -> None:
        while True:
            payload = await self._receive(ws)
            op = payload.get("op")
            if op == DISPATCH:
                await self._dispatch(payload, queue, resumed)
            elif op == HEARTBEAT_ACK:
                self._acked = True
            elif op == HEARTBEAT:
                await self._send(ws, HEARTBEAT, self.seq)
            elif op == RECONNECT:
                raise _Reconnect("Discord asked to reconnect", delay_s=0)
            elif op == INVALID_SESSION:
                if payload.get("d"):
                    raise _Reconnect("invalid session, resumable")
                low, high = self.config.invalid_session_delay_s
                raise _Reconnect("invalid session, not resumable", resume=False,
                                 delay_s=self._rng.uniform(low, high))

    async def _dispatch(self, payload: dict[str, Any], queue: asyncio.Queue, resumed: bool) -> None:
        seq, name, data = payload.get("s"), payload.get("t"), payload.get("d")
        if seq is not None:
            if resumed and self.seq is not None and seq <= self.seq:
                self.counts["replayed_skipped"] += 1  # published before the resume already
                return
            self.received_seq = seq
        if name == "READY":
            self.session_id = data["session_id"]
            self.resume_url = data.get("resume_gateway_url")
            self._became_healthy = True
            log.info("Discord session %s ready", self.session_id)
        elif name == "RESUMED":
            self._became_healthy = True
            log.info("Discord session %s resumed", self.session_id)
        event = None
        if isinstance(name, str) and isinstance(data, dict):
            try:
                event = normalize_dispatch(name, data, received_at=datetime.now(UTC), memory=self.memory)
            except Exception as error:  # one malformed event never stops the stream
                self.counts["malformed"] += 1
                log.error("Discord %s (sequence %s) could not be mapped: %s", name, seq, error)
            self.memory.observe(name, data)
        if event is None:
            self.counts["ignored"] += 1
        await queue.put((seq, event))

    async def _publisher(self, queue: asyncio.Queue) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            events = [event for _, event in batch if event is not None]
            if events:
                await self._publish_until_acked(events)
                self.counts["published"] += len(events)
            last = next((s for s, _ in reversed(batch) if s is not None), None)
            if last is not None:
                self.seq = last  # no await since the publish: a cancel cannot split the two

    async def _publish_until_acked(self, events: list[MemberActivity]) -> None:
        attempt = 0
        while True:
            try:
                await self._publish(events)
                if attempt:
                    log.info("published %d Discord event(s) after %d failed attempt(s)", len(events), attempt)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                attempt += 1
                self.counts["publish_failures"] += 1
                delay = backoff_s(attempt, self.config.publish_backoff_initial_s,
                                  self.config.publish_backoff_max_s, self._rng)
                log.warning("publishing %d Discord event(s) failed (%s: %s); retry %d in %.1f s, "
                            "connection kept", len(events), type(error).__name__, error, attempt, delay)
                await asyncio.sleep(delay)

    async def _sleep_unless_stopping(self, delay_s: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), delay_s)
        except TimeoutError:
            pass
