"""Open-loop sender of signed Slack Events API webhooks, for ``bench.e2e_pipeline``.

Run by the benchmark as its own process (it must not share an event loop, or a GIL, with
the Slack stand-in that times the alerts):
``python -m bench.pipeline_driver --spec '{"url": ..., "secret": ..., "rate": 100, ...}'``.

It builds the messages first (deterministic from the spec's seed), opens a few keep-alive
connections, prints ``ready`` and waits for a line on stdin; then it sends message ``n`` at
``start + n / rate`` whatever happened to the earlier ones (open loop: a slow ingest does
not slow the sender down, it only gets more requests in flight, on up to
``max_connections`` keep-alive connections, opened as needed). A send that finds every
connection busy waits for one; its lateness (actual write minus scheduled time) is recorded,
so a sender that fell behind is visible rather than hidden.

Content: mostly benign chatter from the demo community's texts, from a pool of members and
channels with a skew (the top tenth of members, and of channels, carry a little over half
the traffic, as in real communities); an exact ``harmful_share`` of the messages, at seeded random positions, are
the demo's harmful texts, each from a member of its own and carrying a unique token
``ref <phase>h<n>`` (also its member id), which the benchmark finds in the Slack alert.

Writes one JSON file (``out``): per message ``[n, token, harmful, scheduled, sent, done,
status]`` (epoch seconds; status 0 = the connection failed or no answer in time), this
process's CPU seconds while sending, the connections it opened and the achieved rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit

from services.demo.community import ANSWERS, CHATTER, HARMFUL, QUESTIONS
from services.ingest.signatures import sign_slack

BENIGN = (*QUESTIONS, *ANSWERS, *CHATTER)
COLUMNS = ["n", "token", "harmful", "scheduled", "sent", "done", "status"]
INITIAL_CONNECTIONS = 16
ANSWER_TIMEOUT_S = 30.0  # longer than ingest's own 2.5 s publish timeout: a missing answer is a failure


def token_of(phase: str, n: int) -> str:
    return f"{phase}h{n:06d}"


def skewed(rng: random.Random, size: int) -> int:
    """An index in ``range(size)``: half the picks go to the first tenth (a community's active
    core), the rest to anyone, so the top tenth carries a little over half the traffic and no
    single member or channel dominates."""
    return rng.randrange(max(1, size // 10)) if rng.random() < 0.5 else rng.randrange(size)


def build_events(spec: dict) -> list[tuple[int, str, bool, dict]]:
    """The messages to send: (n, token or "", harmful, Slack event), deterministic."""
    rng = random.Random(spec.get("seed", 7))
    count = int(spec["rate"] * spec["seconds"])
    harmful_at = set(rng.sample(range(count), round(count * spec["harmful_share"])))
    phase, base_ts = spec["phase"], int(time.time())
    events = []
    for n in range(count):
        if n in harmful_at:
            token = token_of(phase, n)
            channel, text = HARMFUL[rng.randrange(len(HARMFUL))]
            member, text, channel = f"U{token.upper()}", f"{text} (ref {token})", f"C{channel.upper()}"
        else:
            token = ""
            text = " ".join(rng.choice(BENIGN) for _ in range(rng.randint(1, 2)))
            member, channel = f"U{skewed(rng, spec['members']):06d}", f"C{skewed(rng, spec['channels']):04d}"
        # ts: unique per message of the phase (Slack's message id within a channel)
        event = {"type": "message", "channel": channel, "user": member, "text": text,
                 "ts": f"{base_ts}.{n:06d}"}
        events.append((n, token, bool(token), event))
    return events


def request_bytes(spec: dict, host: str, path: str, n: int, event: dict) -> bytes:
    """One signed webhook, signed now (Slack signs each delivery as it sends it)."""
    body = json.dumps({"type": "event_callback", "team_id": spec["team"], "event_id": f"Ev{spec['phase']}{n:07d}",
                       "event_time": int(float(event["ts"])), "event": event}).encode()
    now = int(time.time())
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {now}\r\n"
            f"X-Slack-Signature: {sign_slack(spec['secret'], now, body)}\r\n\r\n").encode()
    return head + body


class Connections:
    """Keep-alive HTTP/1.1 connections, one request at a time each, opened on demand up to
    ``limit``; a caller finding all busy at the limit waits for the next one freed."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.waiting: asyncio.Queue = asyncio.Queue()
        self.waiters = 0

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.opened -= 1
            raise

    async def acquire(self):
        if self.idle:
            return self.idle.pop()
        if self.opened < self.limit:
            return await self.open()
        self.waiters += 1
        try:
            return await asyncio.wait_for(self.waiting.get(), ANSWER_TIMEOUT_S)
        finally:
            self.waiters -= 1

    def release(self, connection) -> None:
        if self.waiters:
            self.waiting.put_nowait(connection)
        else:
            self.idle.append(connection)

    def discard(self, connection) -> None:
        connection[1].close()
        self.opened -= 1
        if self.waiters:  # a caller waits for a freed connection: this one will not come back
            asyncio.get_running_loop().create_task(self._replace())

    async def _replace(self) -> None:
        try:
            self.waiting.put_nowait(await self.open())
        except OSError:
            pass  # the waiter gives up after ANSWER_TIMEOUT_S

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def exchange(connection, request: bytes) -> int:
    """Write one request, read its whole answer; the HTTP status."""
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def send_all(spec: dict, events: list, pool: Connections, host: str, path: str) -> tuple[list, float]:
    """Send every event at its scheduled time; rows as in ``COLUMNS`` and the CPU seconds."""
    loop = asyncio.get_running_loop()
    rows: list[list] = []

    async def send(n: int, token: str, harmful: bool, event: dict, scheduled: float) -> None:
        try:
            connection = await pool.acquire()
        except (OSError, TimeoutError):
            connection = None
        request = request_bytes(spec, host, path, n, event)
        sent = time.time()
        status = 0  # no connection, a broken one, or no answer in time
        if connection is not None:
            try:
                status = await asyncio.wait_for(exchange(connection, request), ANSWER_TIMEOUT_S)
                pool.release(connection)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
                pool.discard(connection)
        rows.append([n, token, int(harmful), round(scheduled, 6), round(sent, 6), round(time.time(), 6), status])

    cpu = time.process_time()
    wall0, start = time.time(), loop.time()
    tasks = []
    for n, token, harmful, event in events:
        delay = start + n / spec["rate"] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(n, token, harmful, event, wall0 + n / spec["rate"])))
    await asyncio.gather(*tasks)
    return sorted(rows), time.process_time() - cpu


async def run(spec: dict) -> dict:
    parts = urlsplit(spec["url"])
    events = build_events(spec)
    pool = Connections(parts.hostname, parts.port, spec["max_connections"])
    pool.idle = [await pool.open() for _ in range(min(INITIAL_CONNECTIONS, spec["max_connections"]))]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    try:
        rows, cpu_s = await send_all(spec, events, pool, parts.netloc, parts.path)
    finally:
        pool.close()
    sent = sorted(r[4] for r in rows)
    return {
        "phase": spec["phase"], "team": spec["team"], "rate_per_s": spec["rate"], "seconds": spec["seconds"],
        "messages": len(rows), "harmful": sum(r[2] for r in rows), "columns": COLUMNS, "rows": rows,
        "cpu_s": round(cpu_s, 3), "connections_opened": pool.opened,
        "achieved_rate_per_s": round((len(sent) - 1) / (sent[-1] - sent[0]), 1) if len(sent) > 1 else None,
    }


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--spec", required=True, help="JSON: url, secret, team, phase, rate, seconds, "
                        "harmful_share, members, channels, max_connections, seed, out")
    spec = json.loads(parser.parse_args().spec)
    out = uvloop.run(run(spec))
    with open(spec["out"], "w") as file:
        json.dump(out, file)


if __name__ == "__main__":
    main()
