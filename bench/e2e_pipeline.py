"""Benchmark: the whole system, from a signed webhook to the moderator's Slack alert.

Run: ``.venv/bin/python -m bench.e2e_pipeline`` (the full run, about 10-15 minutes: a tuning
sweep, then the rate ladder; ``--no-tune`` skips the sweep) or ``--quick`` (a short smoke run
written to ``--results`` or a temporary file, never over the full run's figures).

Setup. A fresh temporary home; ``LocalStack(home, preferred_ports=False)`` starts the real
tansu broker, nx-27017 and the SMTP sink, then the four real services under uvicorn
(ingest, metrics and notifier by ``LocalStack.start_services``; moderation, on the int8
ONNX serving bundle, spawned by the bench with the same command line, as its settings must
not reach metrics) with their defaults except: ``STEWARD_LAG_INTERVAL_S=1`` (lag sampled
every second), ``STEWARD_SLACK_CHANNEL_INTERVAL_S=0`` (Slack's own pacing, one message a
second per channel, would otherwise be the whole figure: every alert goes to one webhook)
and the routing file below. Fresh services first get a few warm-up messages (consumer
groups join, connections open), waited for and not counted. A local Slack stand-in (a
``ThreadingHTTPServer`` in this process, answering 200) records each post's arrival
(``time.time()``), the message token and the Slack team (community) it names.

Routing: one receiver, ``slack`` (the stand-in's webhook); the root route takes every
incident, whatever its severity, with ``group_wait: 0s`` and ``group_by: [community,
category, member]``. Every harmful message comes from a member of its own, so each incident
is a group of its own and gets one notification at once: the figure is the latency of one
harmful message to its alert, not Alertmanager-style grouping delays (the default routing
waits 10 s to group). Slack only, no email: the notifier spends about 5 ms of CPU building
each email (bench.notifier_latency), which would be a second path's cost in this one.

Load. ``bench.pipeline_driver``, a separate process, sends signed Slack Events API
webhooks (``sign_slack`` with the stack's secret, to ``<ingest>/webhooks/slack``) open loop
at a steady rate R for S seconds on keep-alive connections (opened as needed, up to
``--max-connections``): message n is due at start + n/R whatever happened to the earlier
ones. Mostly benign demo chatter from a pool of ``--members`` members in ``--channels``
channels (the top tenth carry a little over half the traffic); an exact
``--harmful-share`` (default 5%) are the demo's harmful texts, each from its own member and carrying a unique token
(``ref r0500h000123``) that the alert quotes. Each rate uses a new Slack team (community),
so alerts of one rate cannot be taken for another's. Every webhook must get a 2xx; others
are counted.

Latency: Slack arrival minus the message's scheduled send time (open loop: if the sender
could not write on time, e.g. every connection was busy, the wait counts; the write's
lateness is reported too). Over the harmful messages the model flagged: the verdicts topic
is read after each rate, and a harmful message whose verdict is ``flagged: false`` raises
no incident (reported as not flagged), while one with no verdict yet when the wait ends
counts as a missing alert. A missing alert is only known to be slower than the wait: a
percentile it could fall on is reported as unknown with its lower bound, never understated
(``bench.notifier_latency.channel_figures``). Alerts for benign messages (model false
positives) are counted apart.

Per stage: every service's ``/metrics`` is scraped once a second. Throughput over the steady
window (the sending window less its first fifth, at most 5 s): ingest's
``steward_ingest_events_published_total``; moderation's ``steward_model_latency_seconds_count``
(one per classified text: its verdicts); ``faststream_received_messages_total`` of
moderation's activity consumer, of metrics' activity, verdicts and incidents consumers and
of the notifier's incidents consumer; the notifier's
``steward_notifier_deliveries_total{status="delivered"}``. Lag:
``steward_consumer_lag`` summed per group over partitions (and moderation processes): its
maximum, its value at the end of sending and its growth (least-squares slope over the
sending window, records/s). CPU seconds of every stack process (``/proc/<pid>/stat``), of
the driver, of this process (stand-in and scraper) and of the rest of the machine (other
users of the shared cores) over the sending window.

A rate is unbounded when a group's lag grows by more than 5% of its input rate (and over
1 record/s), the alert latency of the last third of the sends is over twice the first
third's (and 250 ms more), the sender fell under 95% of the rate, a webhook got no 2xx, or
the pipeline did not drain within ``--drain-s``. The knee is the lowest unbounded rate;
the limiting stage is the one whose lag grows fastest relative to its input there (else
ingest when the sends fell behind, else the notifier when its deliveries fell behind its
intake), with each process's CPU (cores) beside it. Between rates the bench waits until
every group's lag is 0 and every alert arrived; a rate that does not drain stops the
ladder (higher rates: "not run: backlog"). Target (the issue): p99 under 1 s at 500/s.

Tuning (before the ladder, at ``--tune-rate``, each config on freshly started services,
infrastructure kept): consumer fetch wait 10 vs 500 ms (moderation's and the notifier's
consumers; metrics pins its own 250 ms), moderation batch 64 vs 16, one
moderation process with 2 model threads vs two processes of 1 thread in one consumer group.
Producer linger is not a setting (``linger_ms=0`` is fixed in ``services/runtime/broker.py``
for every producer, ingest's included), so it is not swept. The config with the lowest
p99 (then p50) runs the ladder, on fresh services (or on the last config's own, drained
and warm, when that one is chosen).

Writes ``bench/results/e2e_pipeline.json`` and ``bench/results/e2e_pipeline.md`` (the same
figures as markdown tables, generated from the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.loadgen import percentile
from bench.notifier_latency import CpuWindow, channel_figures, machine
from bench.slack_receiver import start_slack_receiver
from schemas import topics

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).with_name("results") / "e2e_pipeline.json"
MODEL_CACHE = REPO / ".steward" / "models"
TARGET = {"rate_per_s": 500.0, "p99_ms_below": 1000.0}
SERVICE_NAMES = ("ingest", "moderation", "metrics", "notifier")  # LocalStack's SERVICES
TOKEN = re.compile(rb"ref ([a-z0-9]+h\d{6})")
TEAM_PREFIX = "TE2E"
TEAM = re.compile(rb"TE2E[A-Z0-9]+")
SCRAPE_INTERVAL_S = 1.0
LAG_GROWTH_SHARE = 0.05  # a group whose lag grows by more than this share of its input falls behind
LAG_GROWTH_FLOOR = 1.0  # records/s: below it a slope is a batch's saw-tooth, not a trend
RISE_FACTOR, RISE_MIN_MS = 2.0, 250.0
WARMUP = {"rate": 10.0, "seconds": 3.0, "harmful_share": 0.3}
BUDGET_S = 23 * 60  # stop climbing (reported) rather than run past the ~25 minutes asked


# --- configurations ------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """What the tuning sweep varies. The defaults are the services' own."""

    name: str
    fetch_max_wait_ms: int = 10
    batch_max: int = 64
    batch_wait_ms: int = 10
    moderation_processes: int = 1
    model_threads: int = 2

    def env(self) -> dict[str, str]:
        # every consumer reads the fetch wait (metrics pins its own, see services/metrics/app.py)
        return {"STEWARD_KAFKA_FETCH_MAX_WAIT_MS": str(self.fetch_max_wait_ms)}

    def moderation_env(self) -> dict[str, str]:
        # STEWARD_BATCH_* are also metrics' settings: given to moderation only
        return {"STEWARD_BATCH_MAX": str(self.batch_max), "STEWARD_BATCH_WAIT_MS": str(self.batch_wait_ms),
                "STEWARD_MODEL_THREADS": str(self.model_threads)}


DEFAULT = Config("default")
TUNE_CONFIGS = {
    c.name: c for c in (
        DEFAULT,
        Config("fetch-wait-500ms", fetch_max_wait_ms=500),
        Config("batch-16", batch_max=16),
        Config("moderation-2x1-thread", moderation_processes=2, model_threads=1),
    )
}


def routing_yaml(slack_url: str) -> str:
    return f"""\
receivers:
  - name: slack
    slack: {{webhook_url: "{slack_url}"}}
route:
  receiver: slack
  group_by: [community, category, member]
  group_wait: 0s
"""


# --- the Slack stand-in (in this process) ----------------------------------------------------

class Alerts:
    """Slack posts: arrival times by token, and posts without a token (benign messages'
    alerts) by team."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_token: dict[str, list[float]] = defaultdict(list)
        self.untokened: Counter = Counter()

    def add(self, body: bytes, at: float) -> None:
        token, team = TOKEN.search(body), TEAM.search(body)
        with self.lock:
            if token:
                self.by_token[token.group(1).decode()].append(at)
            else:
                self.untokened[team.group(0).decode() if team else None] += 1

    def arrived(self, tokens: set[str]) -> int:
        with self.lock:
            return sum(1 for t in tokens if t in self.by_token)

    def seen(self, prefix: str) -> dict[str, list[float]]:
        with self.lock:
            return {t: list(v) for t, v in self.by_token.items() if t.startswith(prefix)}


def start_slack_stand_in(alerts: Alerts) -> ThreadingHTTPServer:
    return start_slack_receiver(alerts.add)


# --- scraping /metrics -------------------------------------------------------------------------

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
# metric name -> (key in a sample, the label that splits it or None)
SCRAPED = {
    "steward_ingest_events_published_total": ("published", None),
    "steward_ingest_webhooks_total": ("webhooks", "outcome"),
    "steward_model_latency_seconds_count": ("classified", None),
    "faststream_received_messages_total": ("received", "handler"),
    "steward_notifier_deliveries_total": ("delivered", "status"),
    "steward_consumer_lag": ("lag", "group"),
}


def parse_metrics(text: str) -> dict[str, float]:
    """The few series the bench needs from a Prometheus text page, summed over the labels
    that do not matter: ``{"received:<topic>": n, "lag:<group>": n, ...}``."""
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.startswith(("steward_", "faststream_received_messages_total")):
            continue
        name, _, rest = line.partition("{")
        if not rest:
            name, _, value = line.partition(" ")
            labels = ""
        else:
            labels, _, value = rest.rpartition("} ")
        if name not in SCRAPED:
            continue
        key, split = SCRAPED[name]
        if split is not None:
            key = f"{key}:{dict(LABEL.findall(labels)).get(split, '')}"
        out[key] += float(value.split()[0])
    return dict(out)


@dataclass
class Sample:
    t: float
    values: dict[str, float]  # "<role>/<key>" for counters; "lag:<group>" over every service


class Sampler:
    """Scrapes every service's /metrics once a second in a thread. A tick where a service did
    not answer is dropped (a counter summed over moderation processes would be short)."""

    def __init__(self, services: dict[str, str]) -> None:
        self.services = services  # the stack's endpoints.services: changes on restarts
        self.samples: list[Sample] = []
        self.dropped: list[float] = []  # when a tick was dropped (services restarting, or one too busy)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                self.tick(client)
                self._stop.wait(max(0.0, SCRAPE_INTERVAL_S - (time.monotonic() - began)))

    def tick(self, client: httpx.Client) -> None:
        targets = dict(self.services)
        if not targets:
            return
        values: dict[str, float] = defaultdict(float)
        at = time.time()
        try:
            for name, url in targets.items():
                role = name.split("-", 1)[0]  # moderation-2 counts as moderation
                for key, value in parse_metrics(client.get(url + "/metrics").text).items():
                    values[key if key.startswith("lag:") else f"{role}/{key}"] += value
        except httpx.HTTPError:
            self.dropped.append(at)
            return
        self.samples.append(Sample((at + time.time()) / 2, dict(values)))

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.t <= end]


# --- starting services ----------------------------------------------------------------------

def is_service(name: str) -> bool:
    return name.split("-", 1)[0] in SERVICE_NAMES  # moderation-2 too; not tansu, nx-27017, smtp-sink


def stop_services(stack, grace_s: float = 30.0) -> None:
    """Stop the four services (and extra moderation processes) together: SIGTERM to all, then
    wait (one after the other would add their shutdowns up); the infrastructure stays."""
    services = [c for c in stack.children if is_service(c.name)]
    for child in services:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in services:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
        stack.children.remove(child)
    stack.endpoints.services.clear()


def start_services(stack, config: Config, base_env: dict[str, str]) -> None:
    """The services as LocalStack starts them, all at once. Moderation's processes get the
    config's settings, which ``LocalStack.start_services`` would give every service
    (``STEWARD_BATCH_*`` are metrics' settings too), so they are spawned here with the same
    command line; more than one share its consumer group."""
    from services.localstack.processes import free_port
    from services.localstack.stack import SERVER_OPTIONS

    stack.service_env = {**base_env, **config.env()}
    moderation_env = {**stack.service_environment("moderation"), **config.moderation_env()}
    spawned = []
    for index in range(1, config.moderation_processes + 1):
        name, port = "moderation" if index == 1 else f"moderation-{index}", free_port()
        child = stack._spawn(
            name, [sys.executable, "-m", "uvicorn", "--factory", "services.moderation.app:create_app",
                   "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS, "--timeout-graceful-shutdown", "20"],
            env=moderation_env)
        stack.endpoints.services[name] = f"http://127.0.0.1:{port}"
        spawned.append((name, child))
    stack.start_services(("ingest", "metrics", "notifier"))  # spawns them, waits until they are ready
    for name, child in spawned:
        stack.wait_ready(name, child, 180)


# --- the driver process ------------------------------------------------------------------------

def drive(spec: dict, folder: Path, cpu: CpuWindow) -> tuple[dict, float, float, dict]:
    """Run ``bench.pipeline_driver``: it prepares, says ready, and sends on our go. Returns
    its output, when sending began and ended here, and the CPU seconds over that window."""
    out_path = folder / f"driver-{spec['phase']}.json"
    process = subprocess.Popen([sys.executable, "-m", "bench.pipeline_driver", "--spec",
                                json.dumps({**spec, "out": str(out_path)})],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the driver failed before it was ready (exit {process.wait()})")
        cpu.start()
        began = time.time()
        process.stdin.write("go\n")
        process.stdin.flush()
        if process.wait(spec["seconds"] + 300) != 0:
            raise RuntimeError(f"the driver exited with {process.returncode}")
        ended = time.time()
        output = json.loads(out_path.read_text())
        return output, began, ended, cpu.stop(output["cpu_s"])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- reading verdicts ---------------------------------------------------------------------------

async def verdict_ends(bootstrap: str) -> dict[int, int]:
    """Where the verdicts topic ends now (tansu may answer a little short: harmless, the
    records read before a rate's own are filtered out by team)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topics.VERDICTS, p) for p in consumer.partitions_for_topic(topics.VERDICTS)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def read_verdicts(bootstrap: str, starts: dict[int, int], team: str) -> list[tuple[str, bool]]:
    """(member_id, flagged) of every verdict of ``team`` after ``starts``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.runtime.positions import end_offsets

    partitions = [TopicPartition(topics.VERDICTS, p) for p in starts]
    ends = await end_offsets(bootstrap, partitions)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    found: list[tuple[str, bool]] = []
    try:
        pending = [tp for tp in partitions if ends[tp] > starts[tp.partition]]
        consumer.assign(pending)
        for tp in pending:
            consumer.seek(tp, starts[tp.partition])
        needle = team.encode()
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for records in (await consumer.getmany(*pending, timeout_ms=200)).values():
                for record in records:
                    if needle in record.value:  # cheap filter before parsing
                        verdict = json.loads(record.value)
                        if verdict["community_id"] == team:
                            found.append((verdict["member_id"], bool(verdict["flagged"])))
            pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
    finally:
        await consumer.stop()
    return found


# --- one phase: send at a rate, wait, collect --------------------------------------------------

@dataclass
class Bench:
    stack: object
    alerts: Alerts
    sampler: Sampler
    folder: Path
    members: int
    channels: int
    max_connections: int


def service_pids(stack) -> dict[str, int]:
    return {c.name: c.process.pid for c in stack.children if c.running}


def run_phase(bench: Bench, phase: str, rate: float, seconds: float, share: float, wait_s: float) -> dict:
    """Send ``rate``/s for ``seconds`` as team TE2E<PHASE>, wait (at most ``wait_s`` after the
    last send) until every group's lag is 0 and every flagged harmful message's alert
    arrived, and return what was measured (raw; see ``phase_figures``)."""
    stack = bench.stack
    team = TEAM_PREFIX + phase.upper()
    starts = asyncio.run(verdict_ends(stack.endpoints.kafka))
    spec = {"url": stack.endpoints.services["ingest"] + "/webhooks/slack", "secret": stack.endpoints.slack_secret,
            "team": team, "phase": phase, "rate": rate, "seconds": seconds, "harmful_share": share,
            "members": bench.members, "channels": bench.channels, "max_connections": bench.max_connections,
            "seed": sum(map(ord, phase))}
    output, began, ended, cpu = drive(spec, bench.folder, CpuWindow(service_pids(stack)))
    deadline = ended + wait_s
    lag_zero_at = wait_lag_zero(bench.sampler, ended, deadline)
    rows = [dict(zip(output["columns"], row, strict=True)) for row in output["rows"]]
    # A webhook answered 503 was not taken (Slack would retry it later): no alert is owed for
    # it here; the rejections are counted with the statuses.
    harmful = {r["token"]: r for r in rows if r["harmful"] and r["status"] and 200 <= r["status"] < 300}
    verdicts = asyncio.run(read_verdicts(stack.endpoints.kafka, starts, team))
    expected = alerts_expected(harmful, verdicts)
    alerts_done = wait_alerts(bench.alerts, expected, deadline)
    wait_ended = time.time()
    if not alerts_done:  # a verdict that came late may say "not flagged": no alert is coming
        verdicts = asyncio.run(read_verdicts(stack.endpoints.kafka, starts, team))
        expected = alerts_expected(harmful, verdicts)
        alerts_done = bench.alerts.arrived(expected) == len(expected)
    time.sleep(1.0)  # room for a duplicate alert, if one were coming
    return {"phase": phase, "team": team, "rate": rate, "seconds": seconds, "output": output, "rows": rows,
            "harmful": harmful, "verdicts": verdicts, "expected": expected, "began": began, "ended": ended,
            "wait_ended": wait_ended, "lag_zero_at": lag_zero_at, "alerts_done": alerts_done, "cpu": cpu,
            "untokened_alerts": bench.alerts.untokened.get(team, 0), "wait_s": wait_s}


def alerts_expected(harmful: dict[str, dict], verdicts: list[tuple[str, bool]]) -> set[str]:
    """Tokens whose alert should come: flagged by the model, or not classified yet (counted,
    so that a backlog cannot hide a missing alert)."""
    flagged = {member: f for member, f in verdicts}
    return {t for t in harmful if flagged.get(f"U{t.upper()}", True)}


def wait_lag_zero(sampler: Sampler, after: float, deadline: float) -> float | None:
    """When two samples in a row after ``after`` showed every group's lag at 0; None if not
    before ``deadline``."""
    zero_in_a_row = 0
    seen_at = 0.0
    while time.time() < deadline:
        samples = [s for s in list(sampler.samples) if s.t > max(after, seen_at)]
        for sample in samples:
            lags = [v for k, v in sample.values.items() if k.startswith("lag:")]
            zero_in_a_row = zero_in_a_row + 1 if lags and not any(lags) else 0
            seen_at = sample.t
            if zero_in_a_row >= 2:
                return sample.t
        time.sleep(0.2)
    return None


def wait_alerts(alerts: Alerts, expected: set[str], deadline: float) -> bool:
    while time.time() < deadline:
        if alerts.arrived(expected) == len(expected):
            return True
        time.sleep(0.1)
    return alerts.arrived(expected) == len(expected)


# --- figures -----------------------------------------------------------------------------------

def spread(values: list[float]) -> dict:
    if not values:
        return {}
    return {"p50": round(percentile(values, 0.5), 1), "p99": round(percentile(values, 0.99), 1),
            "max": round(max(values), 1)}


def least_squares_slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var else None


STAGES = (
    # stage, what its throughput counts, sample key, consumer group whose lag it is
    ("ingest", "events published", "ingest/published", None),
    ("moderation", "texts classified", "moderation/classified", "steward-moderation"),
    ("moderation: activity", "records consumed", f"moderation/received:{topics.ACTIVITY}", None),
    ("metrics: activity", "records consumed", f"metrics/received:{topics.ACTIVITY}", "steward-metrics-activity"),
    ("metrics: verdicts", "records consumed", f"metrics/received:{topics.VERDICTS}", "steward-metrics-verdicts"),
    ("metrics: incidents", "records consumed", f"metrics/received:{topics.INCIDENTS}", "steward-metrics-incidents"),
    ("notifier: incidents", "records consumed", f"notifier/received:{topics.INCIDENTS}", "steward-notifier"),
    ("notifier: deliveries", "notifications delivered", "notifier/delivered:delivered", None),
)
SERVICE_OF_STAGE = {"ingest": "ingest", "moderation": "moderation", "metrics": "metrics", "notifier": "notifier"}


def stage_figures(sampler: Sampler, send_from: float, send_to: float, wait_to: float) -> list[dict]:
    """Throughput over the steady window, and each group's lag over the sending window."""
    ramp = min(5.0, (send_to - send_from) / 5)
    steady = sampler.between(send_from + ramp, send_to + 0.5)
    sending = sampler.between(send_from, send_to + 0.5)
    whole = sampler.between(send_from, wait_to)
    out = []
    for stage, counts, key, group in STAGES:
        figures: dict = {"stage": stage, "counts": counts, "group": group}
        have = [s for s in steady if key in s.values]
        if len(have) >= 2 and have[-1].t > have[0].t:
            figures["throughput_per_s"] = round((have[-1].values[key] - have[0].values[key]) /
                                                (have[-1].t - have[0].t), 1)
        if group is not None:
            lag_key = f"lag:{group}"
            series = [(s.t, s.values[lag_key]) for s in sending if lag_key in s.values]
            overall = [s.values[lag_key] for s in whole if lag_key in s.values]
            slope = least_squares_slope(series)
            consumed = figures.get("throughput_per_s") or 0.0
            figures |= {
                "lag_max": max(overall) if overall else None,
                "lag_at_end_of_sending": series[-1][1] if series else None,
                "lag_growth_per_s": round(slope, 2) if slope is not None else None,
                # what entered the topic for this group: what it consumed plus what piled up
                "input_per_s": round(consumed + max(0.0, slope or 0.0), 1),
            }
            figures["lag_grows"] = slope is not None and slope > max(LAG_GROWTH_FLOOR,
                                                                     LAG_GROWTH_SHARE * figures["input_per_s"])
        out.append(figures)
    return out


def lag_series(sampler: Sampler, start: float, end: float) -> dict:
    """Every group's summed lag, one point per scrape, seconds from ``start``."""
    samples = sampler.between(start, end)
    groups = sorted({k for s in samples for k in s.values if k.startswith("lag:")})
    return {"t_s": [round(s.t - start, 1) for s in samples],
            **{g[4:]: [s.values.get(g) for s in samples] for g in groups}}


def latency_figures(sent_at: dict[str, float], expected: set[str], seen: dict[str, list[float]],
                    wait_ended: float) -> dict:
    """Percentiles over the expected alerts, a missing one as a lower bound (see
    ``channel_figures``); none expected (the model flagged nothing) gives counts only."""
    if not expected:
        return {"expected": 0, "delivered": 0, "duplicates": 0,
                "unexpected": sum(len(t) for t in seen.values()), "missing": 0}
    return channel_figures(sent_at, expected, seen, wait_ended)


def latency_trend(harmful: dict[str, dict], seen: dict[str, list[float]], expected: set[str],
                  wait_ended: float) -> list[dict]:
    """Alert latency p50 by third of the sending window (an alert not arrived counts with its
    lower bound, marked): flat means a fixed cost, rising means a queue."""
    chosen = sorted((harmful[t]["scheduled"], t) for t in expected)
    if not chosen:
        return []
    first, last = chosen[0][0], chosen[-1][0]
    width = max((last - first) / 3, 1e-9)
    thirds: list[list[tuple[float, bool]]] = [[], [], []]
    for at, token in chosen:
        arrived = seen.get(token)
        value = ((min(arrived) if arrived else wait_ended) - at) * 1000
        thirds[min(2, int((at - first) / width))].append((value, bool(arrived)))
    out = []
    for index, values in enumerate(thirds):
        if values:
            ranked = sorted(values)
            rank = max(1, math.ceil(0.5 * len(ranked)))
            out.append({"third": index + 1, "alerts": len(values), "p50_ms": round(ranked[rank - 1][0], 1),
                        "p50_is_lower_bound": not all(k for _, k in ranked[:rank])})
    return out


def phase_figures(bench: Bench, raw: dict) -> dict:
    rows, harmful, expected = raw["rows"], raw["harmful"], raw["expected"]
    statuses = Counter(r["status"] for r in rows)
    seen = bench.alerts.seen(raw["phase"] + "h")
    sent_at = {t: r["scheduled"] for t, r in harmful.items()}
    flagged_members = {m for m, f in raw["verdicts"] if f}
    classified_members = {m for m, _ in raw["verdicts"]}
    harmful_members = {f"U{t.upper()}" for t in harmful}
    send_from, send_to = rows[0]["scheduled"], max(r["sent"] for r in rows)
    latency = latency_figures(sent_at, expected, seen, raw["wait_ended"])
    window = raw["ended"] - raw["began"]
    cpu = dict(raw["cpu"])
    cpu["bench (Slack stand-in, scraper)"] = cpu.pop("receivers (this process)")
    cpu["driver"] = cpu.pop("sender")
    figures = {
        "rate_per_s": raw["rate"], "seconds": raw["seconds"], "team": raw["team"],
        "sent": {
            "messages": len(rows), "harmful": len(harmful),
            "achieved_rate_per_s": raw["output"]["achieved_rate_per_s"],
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "non_2xx": sum(v for k, v in statuses.items() if not 200 <= k < 300),
            "lateness_ms": spread([(r["sent"] - r["scheduled"]) * 1000 for r in rows]),
            "webhook_response_ms": spread([(r["done"] - r["sent"]) * 1000 for r in rows if r["status"]]),
            "connections_opened": raw["output"]["connections_opened"],
        },
        "model": {
            "harmful_classified": len(harmful_members & classified_members),
            "harmful_flagged": len(harmful_members & flagged_members),
            "harmful_not_flagged": len((harmful_members & classified_members) - flagged_members),
            "harmful_not_classified_by_wait_end": len(harmful_members - classified_members),
            "benign_flagged": sum(1 for m, f in raw["verdicts"] if f and m not in harmful_members),
        },
        "alerts": {
            "harmful_sent": len(harmful), "expected": len(expected), "alerted": latency["delivered"],
            "alerted_share_of_harmful": round(latency["delivered"] / len(harmful), 3) if harmful else None,
            "alerts_for_benign_messages": raw["untokened_alerts"],
        },
        "latency_ms": latency,
        "latency_by_send_third": latency_trend(harmful, seen, expected, raw["wait_ended"]),
        "stages": stage_figures(bench.sampler, send_from, send_to, raw["wait_ended"]),
        "lag_series": lag_series(bench.sampler, raw["began"], raw["wait_ended"]),
        "cpu_seconds_while_sending": cpu,
        "cpu_cores_while_sending": {k: round(v / window, 2) for k, v in cpu.items()},
        "sending_window_s": round(window, 1),
        "scrape_ticks": len(bench.sampler.between(raw["began"], raw["wait_ended"])),
        "scrape_ticks_dropped": sum(1 for t in list(bench.sampler.dropped) if raw["began"] <= t <= raw["wait_ended"]),
        "drain": {
            "lag_zero_s_after_sending": round(raw["lag_zero_at"] - raw["ended"], 1) if raw["lag_zero_at"] else None,
            "all_alerts_arrived": raw["alerts_done"],
            "wait_ended_s_after_sending": round(raw["wait_ended"] - raw["ended"], 1),
            "bound_s": raw["wait_s"],
        },
    }
    figures["drained"] = raw["lag_zero_at"] is not None and raw["alerts_done"]
    figures["unbounded_because"] = unbounded_reasons(figures)
    return figures


def unbounded_reasons(figures: dict) -> list[str]:
    rate = figures["rate_per_s"]
    reasons = []
    for stage in figures["stages"]:
        if stage.get("lag_grows"):
            reasons.append(f"{stage['group']} lag grows {stage['lag_growth_per_s']}/s "
                           f"(input {stage['input_per_s']}/s)")
    trend = figures["latency_by_send_third"]
    if len(trend) == 3 and trend[2]["p50_ms"] > RISE_FACTOR * trend[0]["p50_ms"] \
            and trend[2]["p50_ms"] - trend[0]["p50_ms"] > RISE_MIN_MS:
        reasons.append(f"alert latency rises with send time (p50 {trend[0]['p50_ms']} -> {trend[2]['p50_ms']} ms)")
    achieved = figures["sent"]["achieved_rate_per_s"] or 0
    if achieved < 0.95 * rate:
        reasons.append(f"sender reached {achieved}/s of {rate:g}/s")
    if figures["sent"]["non_2xx"]:
        reasons.append(f"{figures['sent']['non_2xx']} webhooks without a 2xx")
    if not figures["drained"]:
        reasons.append(f"did not drain within {figures['drain']['bound_s']:g} s")
    return reasons


def limiting_stage(figures: dict) -> dict:
    """Where the rate is limited, from the measurements of one rate."""
    cores = figures["cpu_cores_while_sending"]
    processes = {k: v for k, v in cores.items() if k not in ("machine total", "everything else on the machine")}
    busiest = max(processes, key=processes.get)
    growing = sorted((s for s in figures["stages"] if s.get("lag_grows")),
                     key=lambda s: s["lag_growth_per_s"] / max(s["input_per_s"], 1e-9), reverse=True)
    stages = {s["stage"]: s for s in figures["stages"]}
    if growing:
        stage = growing[0]["stage"]
        why = f"its consumer group's lag grows fastest relative to its input ({growing[0]['lag_growth_per_s']}/s " \
              f"of {growing[0]['input_per_s']}/s)"
    elif (figures["sent"]["achieved_rate_per_s"] or 0) < 0.95 * figures["rate_per_s"] or figures["sent"]["non_2xx"]:
        stage, why = "ingest", "the webhooks could not be sent and answered at the rate"
    elif (stages["notifier: deliveries"].get("throughput_per_s") or 0) < \
            0.95 * (stages["notifier: incidents"].get("throughput_per_s") or 0):
        stage, why = "notifier", "its deliveries fell behind the incidents it took in"
    else:
        stage, why = None, "no stage fell behind at this rate"
    service = SERVICE_OF_STAGE.get((stage or "").split(":")[0])
    service_cores = sum(v for k, v in processes.items() if service and k.split("-")[0] == service)
    return {"stage": stage, "why": why, "service_cpu_cores": round(service_cores, 2) if service else None,
            "busiest_process": busiest, "busiest_process_cores": processes[busiest],
            "processes_at_or_above_0.9_core": sorted(k for k, v in processes.items() if v >= 0.9),
            "machine_busy_cores": cores.get("machine total"),
            # every core busy: the stages (and anything else running) competed for CPU
            "machine_saturated": cores.get("machine total", 0) >= 0.95 * (os.cpu_count() or 1)}


# --- the sweep and the ladder ----------------------------------------------------------------

def warm_up(bench: Bench, name: str) -> None:
    """A few messages through fresh services (consumer groups join, connections open, code
    paths load); at least one alert must arrive. Not counted."""
    raw = run_phase(bench, name, WARMUP["rate"], WARMUP["seconds"], WARMUP["harmful_share"], 120)
    if not bench.alerts.seen(name + "h"):
        tails = "\n".join(f"--- {c.name}\n{c.tail(15)}" for c in bench.stack.children if is_service(c.name))
        raise RuntimeError(f"no warm-up alert arrived ({len(raw['expected'])} expected)\n{tails}")


def restart(bench: Bench, config: Config, base_env: dict, warm_phase: str) -> None:
    """Fresh services with ``config`` on a fresh broker (same port; MongoDB kept), warmed up.
    The broker is restarted too: tansu (in memory) then holds no backlog of the last config,
    and no consumer group that its restarted members could not re-join (seen here: a
    moderation that re-joined its group for 180 s and never became ready)."""
    from services.runtime.broker import ensure_topics

    began = time.monotonic()
    stop_services(bench.stack)
    bench.stack.stop_part("tansu")
    bench.stack.start_broker(bench.stack.kafka_port)
    asyncio.run(ensure_topics(bench.stack.endpoints.kafka))
    stopped = time.monotonic()
    start_services(bench.stack, config, base_env)
    started = time.monotonic()
    warm_up(bench, warm_phase)
    print(f"  services ({config.name}): stopped in {stopped - began:.0f} s, started in {started - stopped:.0f} s, "
          f"warmed up in {time.monotonic() - started:.0f} s", flush=True)


def tune(bench: Bench, configs: list[Config], base_env: dict, rate: float, seconds: float, share: float,
         wait_s: float) -> list[dict]:
    rows = []
    for index, config in enumerate(configs, 1):
        print(f"tuning {config.name}: {rate:g}/s for {seconds:g} s ...", flush=True)
        restart(bench, config, base_env, f"w{index}")
        figures = phase_figures(bench, run_phase(bench, f"t{index}", rate, seconds, share, wait_s))
        rows.append({"config": asdict(config), "figures": figures})
        print(f"  {one_line(figures)}", flush=True)
    return rows


def choose(tuning: list[dict]) -> Config:
    """The lowest known p99, then p50; a config whose p99 is unknown (alerts missing) last."""
    def key(row: dict) -> tuple:
        latency = row["figures"]["latency_ms"]
        p99 = latency.get("p99_ms")
        return (p99 is None, p99 if p99 is not None else latency.get("p99_ms_at_least", math.inf),
                latency.get("p50_ms") or math.inf)
    return Config(**min(tuning, key=key)["config"])


def ladder(bench: Bench, rates: list[float], seconds: float, share: float, wait_s: float,
           deadline: float) -> list[dict]:
    out: list[dict] = []
    stopped: str | None = None
    for rate in rates:
        if stopped is None and time.monotonic() + seconds + wait_s > deadline:
            stopped = "not run: time budget"
        if stopped:
            out.append({"rate_per_s": rate, "status": stopped})
            continue
        print(f"rate {rate:g}/s for {seconds:g} s ...", flush=True)
        figures = phase_figures(bench, run_phase(bench, f"r{int(rate):04d}", rate, seconds, share, wait_s))
        figures["status"] = "run"
        out.append(figures)
        print(f"  {one_line(figures)}", flush=True)
        if not figures["drained"]:
            stopped = "not run: backlog"
    return out


def knee_of(rates: list[dict]) -> dict:
    run = [r for r in rates if r["status"] == "run"]
    for figures in run:
        if figures["unbounded_because"]:
            return {"rate_per_s": figures["rate_per_s"], "because": figures["unbounded_because"],
                    "limiting": limiting_stage(figures)}
    if not run:
        return {"rate_per_s": None, "because": ["no rate ran"], "limiting": None}
    top = run[-1]
    return {"rate_per_s": None, "because": [f"no rate up to {top['rate_per_s']:g}/s was unbounded"],
            "limiting_at_highest_rate": limiting_stage(top)}


def target_verdict(rates: list[dict]) -> dict:
    verdict = {**TARGET, "measured_p99_ms": None}
    row = next((r for r in rates if r["rate_per_s"] == TARGET["rate_per_s"]), None)
    if row is None:
        return {**verdict, "met": None, "verdict": "not measured: the rate is not in --rates"}
    if row["status"] != "run":
        return {**verdict, "met": False, "verdict": f"missed: {row['status']} (a lower rate did not drain)"}
    latency = row["latency_ms"]
    if not latency["expected"]:
        return {**verdict, "met": None, "verdict": "not measured: the model flagged no harmful message"}
    p99 = latency.get("p99_ms")
    verdict["measured_p99_ms"] = p99
    if p99 is None:
        bound = latency.get("p99_ms_at_least")
        verdict["p99_ms_at_least"] = bound
        return {**verdict, "met": False, "verdict": f"missed: p99 unknown, at least {bound} ms (alerts missing)"}
    met = p99 < TARGET["p99_ms_below"]
    return {**verdict, "met": met, "verdict": f"{'met' if met else 'missed'}: p99 {p99} ms"}


# --- output ------------------------------------------------------------------------------------

def shown(latency: dict, name: str) -> str:
    if latency.get(f"{name}_ms") is not None:
        return f"{latency[f'{name}_ms']:g}"
    bound = latency.get(f"{name}_ms_at_least")
    return f"unknown, >{bound:g}" if bound is not None else "-"


def one_line(figures: dict) -> str:
    latency, alerts = figures["latency_ms"], figures["alerts"]
    return (f"sent {figures['sent']['achieved_rate_per_s']}/s, non-2xx {figures['sent']['non_2xx']}, "
            f"alerted {alerts['alerted']}/{alerts['harmful_sent']} harmful ({alerts['expected']} flagged or "
            f"unclassified), p50 {shown(latency, 'p50')} p95 {shown(latency, 'p95')} p99 {shown(latency, 'p99')} "
            f"max {shown(latency, 'max')} ms; drained {figures['drained']}; "
            f"unbounded: {'; '.join(figures['unbounded_because']) or 'no'}")


def markdown(results: dict) -> str:
    """The results as markdown tables, for the docs to quote."""
    s = results["settings"]
    lines = [
        "# Whole-system latency benchmark (`bench.e2e_pipeline`)", "",
        (f"Measured {results['measured_at']} at commit `{results['code']['commit'][:10]}` on "
        f"{results['machine']['cpu_count']} cores ({results['machine']['cpu_model']}); "
        f"command `{results['command']}`; {results['bench_seconds']:g} s."), "",
        (f"Signed Slack webhooks open loop from a separate process, {s['harmful_share'] * 100:g}% harmful "
        f"(one member each), benign from {s['members']} members in {s['channels']} channels; latency = Slack "
        f"arrival minus the scheduled send time, over harmful messages the model flagged; routing "
        f"{s['routing']}."), "",
    ]
    if results.get("tuning"):
        lines += [f"## Tuning at {s['tune_rate_per_s']:g}/s for {s['tune_seconds']:g} s (fresh services each)", "",
                  ("| config | fetch wait ms | batch max | moderation procs x threads | p50 ms | p95 ms | p99 ms | "
                  "max ms | alerted / harmful | sent/s | non-2xx |"),
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in results["tuning"]:
            c, f = row["config"], row["figures"]
            lat = f["latency_ms"]
            lines.append(f"| {c['name']} | {c['fetch_max_wait_ms']} | {c['batch_max']} | "
                         f"{c['moderation_processes']} x {c['model_threads']} | {shown(lat, 'p50')} | "
                         f"{shown(lat, 'p95')} | {shown(lat, 'p99')} | {shown(lat, 'max')} | "
                         f"{f['alerts']['alerted']} / {f['alerts']['harmful_sent']} | "
                         f"{f['sent']['achieved_rate_per_s']} | {f['sent']['non_2xx']} |")
        lines += ["", f"Chosen for the ladder: **{results['chosen_config']['name']}** ({results['chosen_because']}).",
                  ""]
    lines += [f"## Rate ladder ({s['seconds']:g} s per rate, config {results['chosen_config']['name']})", "",
              ("| rate/s | sent/s | non-2xx | harmful | flagged | alerted | p50 ms | p95 ms | p99 ms | max ms | "
              "webhook p99 ms | drained | unbounded because |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rates"]:
        if r["status"] != "run":
            lines.append(f"| {r['rate_per_s']:g} | {r['status']} |" + " |" * 11)
            continue
        lat = r["latency_ms"]
        lines.append(f"| {r['rate_per_s']:g} | {r['sent']['achieved_rate_per_s']} | {r['sent']['non_2xx']} | "
                     f"{r['alerts']['harmful_sent']} | {r['model']['harmful_flagged']} | {r['alerts']['alerted']} | "
                     f"{shown(lat, 'p50')} | {shown(lat, 'p95')} | {shown(lat, 'p99')} | {shown(lat, 'max')} | "
                     f"{r['sent']['webhook_response_ms'].get('p99')} | {'yes' if r['drained'] else 'no'} | "
                     f"{'; '.join(r['unbounded_because']) or '-'} |")
    lines += ["", "## Per stage (throughput over the steady window; lag in records)", "",
              "| rate/s | stage | counts | throughput/s | max lag | lag at end of sending | lag growth/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rates"]:
        if r["status"] != "run":
            continue
        for st in r["stages"]:
            lines.append(f"| {r['rate_per_s']:g} | {st['stage']} | {st['counts']} | {st.get('throughput_per_s')} | "
                         f"{st.get('lag_max', '-')} | {st.get('lag_at_end_of_sending', '-')} | "
                         f"{st.get('lag_growth_per_s', '-')} |")
    run = [r for r in results["rates"] if r["status"] == "run"]
    if run:
        totals = ["everything else on the machine", "machine total"]
        names = [n for n in run[0]["cpu_cores_while_sending"] if n not in totals] + totals
        lines += ["", "## CPU while sending (cores: CPU seconds / sending seconds)", "",
                  "| rate/s | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
        for r in run:
            lines.append(f"| {r['rate_per_s']:g} | " + " | ".join(
                str(r["cpu_cores_while_sending"].get(n)) for n in names) + " |")
    knee, target = results["knee"], results["target"]
    other = ", ".join(f"{r['cpu_cores_while_sending'].get('everything else on the machine')} cores at "
                      f"{r['rate_per_s']:g}/s" for r in run) or "-"
    limiting = knee.get("limiting") or knee.get("limiting_at_highest_rate") or {}
    lines += ["", "## Verdict", "",
              f"- Knee: {knee['rate_per_s']:g}/s ({'; '.join(knee['because'])})." if knee["rate_per_s"] else
              f"- Knee: none found ({'; '.join(knee['because'])}).",
              f"- Limiting stage: {limiting.get('stage')} ({limiting.get('why')}; its service used "
              f"{limiting.get('service_cpu_cores')} cores; busiest process {limiting.get('busiest_process')} at "
              f"{limiting.get('busiest_process_cores')} cores; machine {limiting.get('machine_busy_cores')} of "
              f"{results['machine']['cpu_count']} cores busy"
              f"{': saturated, the stages competed for CPU' if limiting.get('machine_saturated') else ''})."
              if limiting else "- Limiting stage: not determined.",
              f"- Target p99 < {target['p99_ms_below']:g} ms at {target['rate_per_s']:g}/s: {target['verdict']}.",
              f"- Other load on the shared machine while sending (not Steward's processes): {other}.",
              f"- Producer linger: {s['producer_linger']}", ""]
    return "\n".join(lines)


# --- the run -------------------------------------------------------------------------------------

def main(args: argparse.Namespace) -> dict:
    from bench.metrics_service import code_state
    from services.localstack.stack import LocalStack
    from services.moderation.model.bundle import ensure_serving_bundle

    began = time.monotonic()
    code = code_state()  # before the run: what was measured
    bundle = ensure_serving_bundle(MODEL_CACHE)
    alerts = Alerts()
    slack = start_slack_stand_in(alerts)
    slack_url = f"http://127.0.0.1:{slack.server_port}/services/TBENCH/BBENCH/e2e-pipeline"
    tuning: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        routing_file = folder / "routing.yaml"
        routing_file.write_text(routing_yaml(slack_url))
        base_env = {"STEWARD_MODEL_DIR": str(bundle), "STEWARD_ROUTING_FILE": str(routing_file),
                    "STEWARD_SLACK_WEBHOOK_URL": slack_url, "STEWARD_SLACK_CHANNEL_INTERVAL_S": "0",
                    "STEWARD_LAG_INTERVAL_S": "1"}
        stack = LocalStack(folder / "home", preferred_ports=False)
        sampler: Sampler | None = None
        try:
            stack.start_infrastructure()
            sampler = Sampler(stack.endpoints.services)
            sampler.start()
            bench = Bench(stack, alerts, sampler, folder, args.members, args.channels, args.max_connections)
            if args.tune_configs:
                tuning = tune(bench, [TUNE_CONFIGS[n] for n in args.tune_configs], base_env, args.tune_rate,
                              args.tune_seconds, args.harmful_share, args.drain_s)
            chosen = choose(tuning) if tuning else DEFAULT
            print(f"ladder with config {chosen.name} ...", flush=True)
            # the services of the last config tried, drained and warm, serve on; else fresh ones
            if not (tuning and tuning[-1]["config"] == asdict(chosen) and tuning[-1]["figures"]["drained"]):
                restart(bench, chosen, base_env, "w0")
            rates = ladder(bench, args.rates, args.seconds, args.harmful_share, args.drain_s,
                           began + args.budget_s)
        finally:
            if sampler is not None:
                sampler.stop()
            stack.stop()
            slack.shutdown()
    results = {
        "benchmark": "e2e_pipeline",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.e2e_pipeline " + " ".join(sys.argv[1:]),
        "code": code,
        "machine": {**machine(), "note": "broker, store, the four services, the sender and the Slack stand-in "
                                         "share these cores (and so does anything else running meanwhile: "
                                         "'everything else on the machine' in the CPU figures)"},
        "settings": {
            "rates_per_s": args.rates, "seconds": args.seconds, "harmful_share": args.harmful_share,
            "members": args.members, "channels": args.channels, "max_connections": args.max_connections,
            "drain_s": args.drain_s, "tune_rate_per_s": args.tune_rate, "tune_seconds": args.tune_seconds,
            "tune_configs": args.tune_configs, "warmup": WARMUP, "model_bundle": bundle.name,
            "service_env": {k: v for k, v in base_env.items() if k not in ("STEWARD_ROUTING_FILE",)},
            "routing": "one Slack receiver (local stand-in); root route: every incident, group_wait 0s, "
                       "group_by [community, category, member] (one group, one alert per harmful message); no email",
            "latency": "Slack arrival (time.time() in the stand-in) minus the message's scheduled send time "
                       "(open loop); over harmful messages flagged by the model or not classified by the wait's end",
            "unbounded_when": f"a group's lag grows > {LAG_GROWTH_SHARE:.0%} of its input (and > "
                              f"{LAG_GROWTH_FLOOR:g}/s), alert p50 of the last third of sends > {RISE_FACTOR:g}x the "
                              f"first third's and +{RISE_MIN_MS:g} ms, sender < 95% of the rate, a non-2xx, or no "
                              "drain within drain_s",
            "scrape_interval_s": SCRAPE_INTERVAL_S,
            "producer_linger": "not a setting: linger_ms=0 is fixed for every producer (services/runtime/broker.py "
                               "make_broker and make_producer, the latter used by ingest's ActivityPublisher), "
                               "so nothing was measured for it",
        },
        "tuning": tuning,
        "chosen_config": asdict(chosen),
        "chosen_because": ("lowest p99 at the tuning rate, then p50" if tuning
                           else "no tuning: the services' defaults"),
        "rates": rates,
        "knee": knee_of(rates),
        "target": target_verdict(rates),
        "bench_seconds": round(time.monotonic() - began, 1),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    text = markdown(results)
    args.results.with_suffix(".md").write_text(text)
    print()
    print(text)
    print(f"wrote {args.results} and {args.results.with_suffix('.md')}")
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", type=lambda v: [float(r) for r in v.split(",")], default=None,
                        help="messages/s, climbed in order (default 100,250,500,1000; --quick 50,100)")
    parser.add_argument("--seconds", type=float, default=None, help="sending seconds per rate (default 30; --quick 8)")
    parser.add_argument("--harmful-share", type=float, default=0.05, help="share of harmful messages (default 0.05)")
    parser.add_argument("--members", type=int, default=2000, help="benign members per community (default 2000)")
    parser.add_argument("--channels", type=int, default=40, help="channels per community (default 40)")
    parser.add_argument("--max-connections", type=int, default=256, help="sender keep-alive connections at most")
    parser.add_argument("--drain-s", type=float, default=120.0,
                        help="longest wait after sending for lag 0 and every alert (default 120)")
    parser.add_argument("--tune-rate", type=float, default=100.0, help="rate of the tuning sweep (default 100)")
    parser.add_argument("--tune-seconds", type=float, default=20.0, help="sending seconds per config (default 20)")
    parser.add_argument("--tune-configs", type=lambda v: v.split(",") if v else [], default=list(TUNE_CONFIGS),
                        help=f"configs to compare (default all: {','.join(TUNE_CONFIGS)})")
    parser.add_argument("--no-tune", action="store_true", help="skip the sweep; the ladder runs the defaults")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 50 and 100/s for 8 s each, no sweep (unless --tune), results to "
                             "--results or a temporary file")
    parser.add_argument("--tune", action="store_true", help="with --quick: a 2-config sweep at 50/s for 6 s")
    parser.add_argument("--results", type=Path, default=None, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    args.budget_s = BUDGET_S
    if args.quick:
        args.rates, args.seconds = args.rates or [50.0, 100.0], args.seconds or 8.0
        args.drain_s, args.tune_rate, args.tune_seconds = 45.0, 50.0, 6.0
        args.tune_configs = ["default", "moderation-2x1-thread"] if args.tune else []
        args.results = args.results or Path(tempfile.gettempdir()) / "e2e_pipeline.quick.json"
    else:
        args.rates, args.seconds = args.rates or [100.0, 250.0, 500.0, 1000.0], args.seconds or 30.0
        args.results = args.results or RESULTS
    if args.quick and args.results.resolve() == RESULTS.resolve():
        parser.error("--quick never writes over the full run's results")
    if args.no_tune:
        args.tune_configs = []
    unknown = set(args.tune_configs) - TUNE_CONFIGS.keys()
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; known: {', '.join(TUNE_CONFIGS)}")
    main(args)


if __name__ == "__main__":
    cli()
