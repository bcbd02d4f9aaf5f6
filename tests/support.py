"""Helpers shared by the integration and end-to-end tests."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from aiokafka import AIOKafkaConsumer


async def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(records) < expected and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def wait_until(predicate, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


class _Server(ThreadingHTTPServer):
    # the notifier posts up to 32 at once; the default backlog of 5 would reset connections,
    # and posts that fail every retry go to the fallback receiver instead
    request_queue_size = 128
    daemon_threads = True


class SlackStandIn:
    """A real local HTTP server in place of Slack's incoming webhook: records each accepted
    post's JSON. ``delay_s`` makes it slow, so that posts are still in flight when a test acts;
    ``refuse(status, retry_after)`` makes it answer an error (500, or 429 with Retry-After)
    until ``accept()``: refused posts are counted in ``refused``, not recorded."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.posts: list[dict] = []
        self.refused = 0
        self._answer: tuple[int, str | None] = (200, None)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay_s)
                status, retry_after = stand_in._answer
                if status == 200:
                    stand_in.posts.append(json.loads(body))
                else:
                    stand_in.refused += 1
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"rate_limited" if status == 429 else b"error")

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/x"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def refuse(self, status: int, retry_after: str | None = None) -> None:
        self._answer = (status, retry_after)

    def accept(self) -> None:
        self._answer = (200, None)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
