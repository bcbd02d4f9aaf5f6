"""The Discord Gateway bridge against a real local websocket server speaking the Gateway
protocol: HELLO, IDENTIFY, READY, heartbeats, DISPATCH, RECONNECT, close codes, RESUME with
replay, INVALID_SESSION, and a failing publisher. Events are collected by an in-test
callable (the lead's e2e test covers Kafka)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from schemas import MemberActivity
from services.ingest.discord_bridge import DEFAULT_INTENTS, GatewayClient, GatewayConfig, GatewayError

TOKEN = "bot-token-for-tests"
GUILD, CHANNEL, USER = "197038439483310086", "290926798999357250", "80351110224678912"
HEARTBEAT_MS = 200


def message(n: int) -> tuple[str, dict[str, Any], str]:
    """A MESSAGE_CREATE dispatch and the event_id it must become."""
    message_id = str(1180000000000000000 + n)
    data = {"id": message_id, "channel_id": CHANNEL, "guild_id": GUILD, "content": f"message {n}",
            "author": {"id": USER, "username": "nelly"}, "timestamp": "2023-11-29T10:00:00+00:00",
            "edited_timestamp": None, "type": 0}
    return "MESSAGE_CREATE", data, f"discord:{GUILD}:{message_id}:created"


def reaction(n: int) -> tuple[str, dict[str, Any], str]:
    message_id = str(1180000000000000000 + n)
    data = {"user_id": USER, "channel_id": CHANNEL, "message_id": message_id, "guild_id": GUILD,
            "emoji": {"id": None, "name": "🔥"}, "member": {"user": {"id": USER}}}
    return "MESSAGE_REACTION_ADD", data, f"discord:{GUILD}:{message_id}:{USER}:🔥:reacted"


class Collector:
    """The publish callable: records events once "acknowledged"; can fail or hold."""

    def __init__(self) -> None:
        self.events: list[MemberActivity] = []
        self.calls = 0
        self.failures_left = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def publish(self, events: list[MemberActivity]) -> None:
        self.calls += 1
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker unavailable")
        await self.gate.wait()
        self.events.extend(events)

    @property
    def ids(self) -> list[str]:
        return [e.event_id for e in self.events]

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        await until(lambda: len(self.events) >= count, timeout)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


class Session:
    """One Gateway session's event log, so that a RESUME can replay what came after a seq."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.log: list[tuple[int, str, dict[str, Any]]] = []
        self.event_ids: dict[int, str] = {}


class Link:
    """One client connection, seen from the server: heartbeats answered, the rest queued."""

    def __init__(self, gateway: FakeGateway, ws: ServerConnection) -> None:
        self.gateway, self.ws = gateway, ws
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.heartbeats: list[Any] = []
        self.ack = True
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame["op"] == 1:
                    self.heartbeats.append(frame["d"])
                    self.gateway.heartbeats.append(frame["d"])
                    if self.ack:
                        await self.ws.send(json.dumps({"op": 11}))
                else:
                    await self.inbox.put(frame)
        except ConnectionClosed:
            pass

    async def send(self, op: int, d: Any = None, *, s: int | None = None, t: str | None = None) -> None:
        await self.ws.send(json.dumps({"op": op, "d": d, "s": s, "t": t}))

    async def hello(self) -> None:
        await self.send(10, {"heartbeat_interval": HEARTBEAT_MS})

    async def expect(self, op: int, timeout: float = 5) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.inbox.get(), timeout)
        assert frame["op"] == op, f"expected op {op}, got {frame}"
        return frame["d"]

    async def expect_identify(self) -> None:
        d = await self.expect(2)
        assert d["token"] == TOKEN
        assert d["intents"] == DEFAULT_INTENTS
        assert set(d["properties"]) == {"os", "browser", "device"}
        self.gateway.identifies += 1

    async def event(self, session: Session, t: str, d: dict[str, Any], event_id: str | None = None) -> int:
        seq = len(session.log) + 1
        session.log.append((seq, t, d))
        if event_id:
            session.event_ids[seq] = event_id
        await self.send(0, d, s=seq, t=t)
        return seq

    async def ready(self, session: Session) -> None:
        await self.event(session, "READY", {
            "v": 10, "user": {"id": "1", "username": "steward", "bot": True}, "guilds": [],
            "session_id": session.session_id, "resume_gateway_url": f"{self.gateway.url}/resume",
            "application": {"id": "1", "flags": 0},
        })

    async def expect_resume(self, session: Session, seq: int) -> None:
        d = await self.expect(6)
        assert d == {"token": TOKEN, "session_id": session.session_id, "seq": seq}
        assert self.ws.request.path == "/resume?v=10&encoding=json"  # resume_gateway_url + query
        self.gateway.resumes.append(d["seq"])

    async def replay_after(self, session: Session, seq: int) -> None:
        for s, t, d in session.log:
            if s > seq:
                await self.send(0, d, s=s, t=t)
        await self.event(session, "RESUMED", {})


Scenario = Callable[[Link, int], Awaitable[None]]


class FakeGateway:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.connections = 0
        self.identifies = 0
        self.resumes: list[int] = []
        self.heartbeats: list[Any] = []
        self.done = asyncio.Event()
        self.errors: list[BaseException] = []
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        link = Link(self, ws)
        try:
            await self.scenario(link, index)
        except BaseException as error:  # surfaced by the test, not swallowed by the server
            self.errors.append(error)
            self.done.set()
            raise
        await link.reader  # leave closing to the client


async def run_bridge(scenario: Scenario, collector: Collector, timeout: float = 20) -> tuple[FakeGateway, GatewayClient]:
    gateway = FakeGateway(scenario)
    async with serve(gateway.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        gateway.url = f"ws://127.0.0.1:{port}"
        client = GatewayClient(
            GatewayConfig(
                token=SecretStr(TOKEN), gateway_url=f"{gateway.url}/?v=10&encoding=json", intents=DEFAULT_INTENTS,
                connect_timeout_s=3, reconnect_backoff_initial_s=0.05, reconnect_backoff_max_s=0.5,
                invalid_session_delay_s=(0.1, 0.2), publish_backoff_initial_s=0.1, publish_backoff_max_s=0.4,
            ),
            collector.publish,
        )
        task = asyncio.create_task(client.run())
        try:
            done = asyncio.create_task(gateway.done.wait())
            await asyncio.wait({done, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # a GatewayError, for the test to see
            assert gateway.done.is_set(), "the scenario did not finish in time"
        finally:
            client.stop()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
    if gateway.errors:
        raise gateway.errors[0]
    return gateway, client


def assert_exactly_once(collector: Collector, expected: list[str]) -> None:
    assert len(collector.ids) == len(set(collector.ids)), f"duplicates: {collector.ids}"
    assert collector.ids == expected


@pytest.mark.parametrize("how", ["reconnect_op", "close_4000"])
async def test_resume_replays_what_was_not_published(how: str, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    collector = Collector()
    session = Session("session-1")
    first = [message(1), message(2), reaction(1)]
    missed = [message(3), message(4)]
    later = message(5)

    async def scenario(link: Link, index: int) -> None:
        await link.hello()
        if index == 0:
            await link.expect_identify()
            await link.ready(session)
            for t, d, event_id in first:
                await link.event(session, t, d, event_id)
            await collector.wait_for(3)
            await until(lambda: 4 in link.heartbeats)  # heartbeats carry the last published seq
            # The broker stalls: the next events are received but never acknowledged.
            collector.gate.clear()
            calls = collector.calls
            for t, d, event_id in missed:
                await link.event(session, t, d, event_id)
            await until(lambda: collector.calls > calls)
            if how == "reconnect_op":
                await link.send(7)
            else:
                await link.ws.close(4000, "unknown error")
        elif index == 1:
            await link.expect_resume(session, seq=4)  # the last *published* event, not the last received
            collector.gate.set()
            await link.replay_after(session, 4)
            t, d, event_id = later
            await link.event(session, t, d, event_id)
            await collector.wait_for(6)
            link.gateway.done.set()
        else:
            raise AssertionError(f"unexpected connection {index}")

    gateway, client = await run_bridge(scenario, collector)
    assert_exactly_once(collector, [e for _, _, e in first + missed + [later]])
    assert (gateway.identifies, gateway.resumes, gateway.connections) == (1, [4], 2)
    assert all(d is None or isinstance(d, int) for d in gateway.heartbeats)
    assert client.session_id == "session-1"
    assert client.seq == 8  # READY 1, events 2-6, RESUMED 7 (published before it), event 8
    client_logs = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    assert client_logs and not [r for r in client_logs if TOKEN in r.getMessage()], "the token was logged"

async def test_invalid_session_means_identify_again():
    collector = Collector()
    sessions = [Session("session-1"), Session("session-2"), Session("session-3")]

    async def scenario(link: Link, index: int) -> None:
        await link.hello()
        if index == 0:
            await link.expect_identify()
            await link.ready(sessions[0])
            t, d, event_id = message(1)
            await link.event(sessions[0], t, d, event_id)
            await collector.wait_for(1)
            await link.send(9, False)  # not resumable: a fresh IDENTIFY after 1-5 s (here 0.1-0.2)
        elif index == 1:
            await link.expect_identify()
            await link.ready(sessions[1])
            t, d, event_id = message(2)
            await link.event(sessions[1], t, d, event_id)
            await collector.wait_for(2)
            await link.ws.close(4000, "unknown error")
        elif index == 2:
            await link.expect_resume(sessions[1], seq=2)
            await link.send(9, False)  # the resume is refused
        elif index == 3:
            await link.expect_identify()
            await link.ready(sessions[2])
            t, d, event_id = message(3)
            await link.event(sessions[2], t, d, event_id)
            await collector.wait_for(3)
            link.gateway.done.set()
        else:
            raise AssertionError(f"unexpected connection {index}")

    gateway, client = await run_bridge(scenario, collector)
    assert_exactly_once(collector, [message(n)[2] for n in (1, 2, 3)])
    assert (gateway.identifies, gateway.resumes, gateway.connections) == (3, [2], 4)
    assert client.session_id == "session-3"


async def test_failing_publish_is_retried_on_a_live_connection():
    collector = Collector()
    session = Session("session-1")
    events = [message(1), reaction(1), message(2)]

    async def scenario(link: Link, index: int) -> None:
        assert index == 0, "the connection must stay up while publishing is retried"
        await link.hello()
        await link.expect_identify()
        await link.ready(session)
        await until(lambda: 1 in link.heartbeats)
        collector.failures_left = 4  # ~0.75-1.5 s of a broker outage
        beats = len(link.heartbeats)
        for t, d, event_id in events:
            await link.event(session, t, d, event_id)
        await collector.wait_for(3)
        # a beat after the publish succeeded may already carry 4; none may carry 2 or 3
        failing_beats = link.heartbeats[beats:]
        assert failing_beats.count(1) >= 2, "heartbeats go on while publishing fails"
        assert set(failing_beats) <= {1, 4} and failing_beats == sorted(failing_beats), \
            "the sequence does not pass an unpublished event"
        await until(lambda: 4 in link.heartbeats)
        link.gateway.done.set()

    gateway, client = await run_bridge(scenario, collector)
    assert_exactly_once(collector, [e for _, _, e in events])
    assert collector.calls >= 5
    assert client.counts["publish_failures"] == 4
    assert gateway.connections == 1 and gateway.resumes == []


async def test_zombie_connection_is_closed_and_resumed():
    collector = Collector()
    session = Session("session-1")

    async def scenario(link: Link, index: int) -> None:
        await link.hello()
        if index == 0:
            await link.expect_identify()
            link.ack = False  # heartbeats go unanswered
            await link.ready(session)
            t, d, event_id = message(1)
            await link.event(session, t, d, event_id)
        elif index == 1:
            await link.expect_resume(session, seq=2)
            await link.replay_after(session, 2)
            t, d, event_id = message(2)
            await link.event(session, t, d, event_id)
            await collector.wait_for(2)
            link.gateway.done.set()

    gateway, _ = await run_bridge(scenario, collector)
    assert_exactly_once(collector, [message(1)[2], message(2)[2]])
    assert gateway.resumes == [2]


async def test_authentication_failure_stops_with_a_clear_error():
    async def scenario(link: Link, index: int) -> None:
        assert index == 0, "a refused token is not retried"
        await link.hello()
        await link.expect_identify()
        await link.ws.close(4004, "Authentication failed.")

    with pytest.raises(GatewayError, match="4004.*token"):
        await run_bridge(scenario, Collector(), timeout=5)
