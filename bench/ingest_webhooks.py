"""Benchmark: signed Slack webhooks/s through the real ingest, against the local broker.

Run: ``.venv/bin/python -m bench.ingest_webhooks``. It starts tansu, then serves, one after
the other with the same production server settings, a bare FastAPI endpoint (the baseline)
and the real ingest (signature check, normalization, publish awaiting acks=all), and drives
each from a separate load-generator process on loopback. Writes
``bench/results/ingest_webhooks.json``.
"""

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from services.localstack.processes import Child, free_port
from services.localstack.stack import SERVER_OPTIONS, LocalStack
from services.runtime.broker import ensure_topics

RESULTS = Path(__file__).with_name("results") / "ingest_webhooks.json"
SECRET = "bench-signing-secret"
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
CONCURRENCY = tuple(int(c) for c in os.environ.get("BENCH_CONCURRENCY", "8,32").split(","))


def serve(target: str, factory: bool, env: dict, folder: Path) -> tuple[Child, int]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), target,
            "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS, "--log-level", "warning"]
    child = Child(target, argv, folder / f"{target.replace(':', '_')}.log", env).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return child, port
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(child.tail())


def load(port: int, concurrency: int) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--url", f"http://127.0.0.1:{port}/webhooks/slack",
         "--secret", SECRET, "--seconds", str(SECONDS), "--concurrency", str(concurrency)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        stack = LocalStack(Path(folder), preferred_ports=False)
        try:
            bootstrap = stack.start_broker()
            asyncio.run(ensure_topics(bootstrap, partitions=3))
            env = {"STEWARD_KAFKA_BOOTSTRAP": bootstrap, "STEWARD_SLACK_SIGNING_SECRET": SECRET,
                   "STEWARD_LOG_LEVEL": "WARNING"}
            runs = {}
            for name, target, factory in (("bare_fastapi", "bench.bare_app:app", False),
                                          ("ingest", "services.ingest.app:create_app", True)):
                child, port = serve(target, factory, env, Path(folder))
                try:
                    runs[name] = {str(c): load(port, c) for c in CONCURRENCY}
                finally:
                    child.stop()
        finally:
            stack.stop()
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores; server and load generator share them",
        "server": "uvicorn " + " ".join(SERVER_OPTIONS) + ", one worker",
        "seconds_per_run": SECONDS,
        "runs": runs,
        "ingest_vs_bare_throughput": {
            c: round(runs["ingest"][c]["requests_per_s"] / runs["bare_fastapi"][c]["requests_per_s"], 2)
            for c in runs["ingest"]
        },
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
