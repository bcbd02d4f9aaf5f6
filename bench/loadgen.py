"""A load generator for signed Slack webhooks: raw HTTP/1.1 over keep-alive connections.

Run as its own process (so it does not share an event loop with the server):
``python -m bench.loadgen --url http://127.0.0.1:8000/webhooks/slack --secret S``. Every
request carries a new Slack event_id, so none is answered from ingest's retry memory.
Prints one JSON line: requests, seconds, requests/s, latency percentiles, status counts.
"""

import argparse
import asyncio
import json
import math
import time
from urllib.parse import urlsplit

import uvloop

from services.ingest.signatures import sign_slack

TEXTS = ["Has anyone tried the new release yet?", "Thanks, that fixed my build!", "See you at the meetup."]


def signed_requests(host: str, path: str, secret: str, count: int, team: str) -> list[bytes]:
    now = int(time.time())
    requests = []
    for n in range(count):
        body = json.dumps({
            "type": "event_callback", "team_id": team, "event_id": f"EvBench{n:08d}", "event_time": now,
            "event": {"type": "message", "channel": f"C{n % 20}", "user": f"U{n % 500}",
                      "text": TEXTS[n % len(TEXTS)], "ts": f"{now}.{n:06d}"},
        }).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Slack-Request-Timestamp: {now}\r\n"
            f"X-Slack-Signature: {sign_slack(secret, now, body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


async def worker(host: str, port: int, requests: list[bytes], deadline: float,
                 latencies: list[float], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while requests and time.perf_counter() < deadline:
            request = requests.pop()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]  # nearest rank


async def run(url: str, secret: str, seconds: float, concurrency: int, team: str) -> dict:
    parts = urlsplit(url)
    requests = signed_requests(parts.netloc, parts.path, secret, int(seconds * 12_000) + 1000, team)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    # Warm up connections and code paths, then measure.
    await asyncio.gather(*(worker(parts.hostname, parts.port, requests, time.perf_counter() + 1, [], {})
                           for _ in range(concurrency)))
    started = time.perf_counter()
    await asyncio.gather(*(worker(parts.hostname, parts.port, requests, started + seconds, latencies, statuses)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "statuses": statuses,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--team", default="TBENCH")
    args = parser.parse_args()
    print(json.dumps(uvloop.run(run(args.url, args.secret, args.seconds, args.concurrency, args.team))))


if __name__ == "__main__":
    main()
