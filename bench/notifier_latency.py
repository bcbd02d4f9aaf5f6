"""Benchmark: incident-to-delivery latency through the real notifier service.

Run: ``.venv/bin/python -m bench.notifier_latency [--rate 100] [--seconds 30] [--quick]``.
Starts tansu and nx-27017 (``LocalStack``, a fresh temporary home), a local Slack stand-in
(``ThreadingHTTPServer`` answering 200) and a local SMTP server (aiosmtpd ``Controller``) in
this process; each records, per message, its arrival time (``time.time()``) and the incident
id (Slack: found in the posted Block Kit JSON; email: the ``X-Steward-Incident-Id`` header).
Then, one after the other in the same run, on the same receivers:

- direct (the baseline): the notifier's own receivers (``build_receivers`` on the routing
  file below: ``SlackWebhookReceiver`` and ``EmailReceiver``) deliver each incident as it
  is made, from a separate paced process, with no broker, no store and no notifier;
- notifier: the real notifier service (``services.notifier.app:create_app`` under uvicorn,
  started by ``LocalStack.start_services``) consumes ``moderation.incidents.v1``, to which a
  separate paced process publishes the same incidents, and delivers them through the same
  receivers.

Routing: receivers ``slack`` (webhook to the stand-in) and ``email`` (SMTP); the root route
has ``group_wait: 0s`` and ``group_by: [community, category, member]``, and every incident
has its own member, so each incident is its own group and gets one notification per
receiver; critical incidents (every other one) go to ``email`` with ``continue: true``,
every incident goes to ``slack``. ``STEWARD_SLACK_CHANNEL_INTERVAL_S=0`` in both paths:
Slack's real pacing (about one message a second per channel, the default 1 s) would
otherwise make the queue for the one webhook, not the notifier, the whole figure. Other
settings are the defaults (``STEWARD_DISPATCH_POLL_S`` 1 s, log level INFO).

Each incident's ``created_at`` is its send time; latency is arrival at the receiver minus
that send time. Each path first sends a few warm-up incidents (connections, templates, the
consumer group's join) from the same sender process and waits for them; they are not
counted. Reported per path and receiver: p50 / p95 / p99 / max, deliveries received against
expected (all, none twice), the achieved send rate. An incident not delivered when the wait
ends (``max(120, 6 x seconds)`` after the last send) is only known to be slower than the
wait: a percentile it could fall on is reported as unknown (null) with its lower bound
(``p99_ms_at_least``), never understated. The ratio notifier / direct is measured on the
same machine in the same run.

For the notifier it also records where the time went: from its own records in MongoDB
(``raised_epoch``, when ``admit`` began; each delivery attempt's ``started_at`` /
``finished_at``) the segments publish -> admitted -> delivery started -> arrived, the rate at
which it admitted incidents, the Slack latency by send time (flat: a fixed cost; rising: a
queue), its MongoDB round trips per incident admitted (``steward_mongo_commands_total`` from
its ``/metrics``; ``getMore`` counts reads of more than one batch), and the CPU seconds of
every process, per incident too, including whatever else ran on the shared machine meanwhile,
and what the idle stack costs per second (measured for a few seconds before the run).

Target (the issue): notifier p99 under 250 ms at 100/s. Writes
``bench/results/notifier_latency.json``; ``--quick`` is a short low-rate run written to
``--results`` or a temporary file, never over the full run's figures. ``--profile FILE``
runs the notifier under cProfile instead (no baseline, nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

from bench.slack_receiver import start_slack_receiver

RESULTS = Path(__file__).with_name("results") / "notifier_latency.json"
TARGET_P99_MS = 250.0
CRITICAL_EVERY = 2  # every other incident is critical: it goes to email as well as Slack
WARMUP = 20
ID_PREFIX = "nl"
INCIDENT_ID = re.compile(rb"nl-[a-z]+-\d{6}")
MAIL_HEADER = re.compile(rb"X-Steward-Incident-Id:\s*(\S+)", re.IGNORECASE)
EMAIL_TO = "oncall@bench.local"
CHANNELS = ("slack", "email")


def routing_yaml(slack_url: str) -> str:
    return f"""\
receivers:
  - name: slack
    slack: {{webhook_url: "{slack_url}"}}
  - name: email
    email: {{to: [{EMAIL_TO}]}}
route:
  receiver: slack
  group_by: [community, category, member]
  group_wait: 0s
  routes:
    - matchers: ['severity="critical"']
      receiver: email
      continue: true
    - receiver: slack
"""


def incident_id(phase: str, n: int) -> str:
    return f"{ID_PREFIX}-{phase}-{n:06d}"


def is_critical(n: int) -> bool:
    return n % CRITICAL_EVERY == 0


def make_incident(phase: str, n: int, sent_at: float):
    """A valid incident (the tests' ``build_incident``) of its own member, created at ``sent_at``."""
    from tests.conftest import build_incident

    iid = incident_id(phase, n)
    at = datetime.fromtimestamp(sent_at, UTC)
    return build_incident(
        incident_id=iid, community_id="bench", severity="critical" if is_critical(n) else "high",
        created_at=at, evidence={"event_id": f"evt-{iid}", "message_id": f"msg-{iid}",
                                 "member_id": f"member-{phase}-{n:06d}", "occurred_at": at})


def expected_ids(phase: str, count: int) -> dict[str, set[str]]:
    ids = {incident_id(phase, n) for n in range(count)}
    return {"slack": ids, "email": {incident_id(phase, n) for n in range(count) if is_critical(n)}}


# --- the local receivers (in this process) --------------------------------------------------

class Arrivals:
    """Arrival times by receiver and incident id, from the server threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, dict[str, list[float]]] = {c: defaultdict(list) for c in CHANNELS}
        self.unparsed = 0

    def add(self, channel: str, found: re.Match | None, at: float) -> None:
        with self.lock:
            if found is None:
                self.unparsed += 1
            else:
                self.times[channel][found.group(found.lastindex or 0).decode()].append(at)

    def arrived(self, channel: str, ids: set[str]) -> int:
        with self.lock:
            return sum(1 for i in ids if i in self.times[channel])

    def snapshot(self, channel: str, prefix: str) -> dict[str, list[float]]:
        with self.lock:
            return {i: list(t) for i, t in self.times[channel].items() if i.startswith(prefix)}


def start_slack_stand_in(arrivals: Arrivals) -> ThreadingHTTPServer:
    return start_slack_receiver(lambda body, at: arrivals.add("slack", INCIDENT_ID.search(body), at))


class Mailbox:
    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals

    async def handle_DATA(self, server, session, envelope) -> str:
        self.arrivals.add("email", MAIL_HEADER.search(envelope.content), time.time())
        return "250 OK"


# --- the paced senders (separate processes) ---------------------------------------------------

async def paced(rate: float, count: int, send) -> dict[str, float]:
    """Await ``send(n)`` at ``rate``/s (catching up when late); it returns the incident's id
    and send time (its ``created_at``). Returns the send times by id."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent: dict[str, float] = {}
    for n in range(count):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        incident, at = await send(n)
        sent[incident] = at
    return sent


async def warmed_up(spec: dict, run_phase) -> dict:
    """Send ``spec['warmup']`` warm-up incidents (connections, templates, a consumer group's
    join), say so on stdout, wait for the go on stdin (the receivers got them all), then
    send the measured ones. Returns their send times by id and this process's CPU seconds."""
    await run_phase(spec["warm_phase"], spec["warmup"])
    print("warm", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu = time.process_time()
    sent = await run_phase(spec["phase"], spec["count"])
    return {"sent": sent, "cpu_s": round(time.process_time() - cpu, 2)}


async def publish(spec: dict) -> dict:
    """Publish incidents to the incidents topic; the send time is each one's ``created_at``."""
    from aiokafka import AIOKafkaProducer

    from schemas import topics

    producer = AIOKafkaProducer(bootstrap_servers=spec["bootstrap"], acks="all", linger_ms=0)
    await producer.start()
    try:
        async def run_phase(phase: str, count: int) -> dict[str, float]:
            async def send(n: int) -> str:
                incident = make_incident(phase, n, time.time())
                await producer.send(topics.INCIDENTS, incident.to_bytes(), key=incident.incident_id.encode())
                return incident.incident_id, incident.created_at.timestamp()

            sent = await paced(spec["rate"], count, send)
            await producer.flush()
            return sent

        return await warmed_up(spec, run_phase)
    finally:
        await producer.stop()


async def deliver_directly(spec: dict) -> dict:
    """The baseline: the notifier's receivers, built from the same routing file and settings,
    deliver each incident as it is made (no broker, no store, no notifier)."""
    from services.notifier.receivers.base import Notification
    from services.notifier.receivers.factory import build_receivers
    from services.notifier.routing.config import load_routing
    from services.runtime.settings import NotifierSettings

    settings = NotifierSettings(smtp_host="127.0.0.1", smtp_port=spec["smtp_port"], slack_channel_interval_s=0)
    receivers = build_receivers(load_routing(Path(spec["routing_file"]).read_text()), settings)
    failures: list[str] = []
    try:
        async def run_phase(phase: str, count: int) -> dict[str, float]:
            deliveries: list[asyncio.Task] = []

            async def send(n: int) -> str:
                incident = make_incident(phase, n, time.time())
                for name in ("email", "slack") if is_critical(n) else ("slack",):
                    deliveries.append(asyncio.create_task(
                        receivers[name].deliver(Notification.of(incident, name))))
                return incident.incident_id, incident.created_at.timestamp()

            sent = await paced(spec["rate"], count, send)
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
            failures.extend(repr(o) for o in outcomes if isinstance(o, BaseException))
            return sent

        measured = await warmed_up(spec, run_phase)
    finally:
        for receiver in receivers.values():
            await receiver.aclose()
    return {**measured, "failures": failures[:5], "failed": len(failures)}


def role_main(role: str, spec_json: str) -> None:
    import uvloop

    spec = json.loads(spec_json)
    run = publish if role == "publish" else deliver_directly
    out = uvloop.run(run(spec))
    Path(spec["out"]).write_text(json.dumps(out))


def run_role(role: str, spec: dict, folder: Path, arrivals: Arrivals, warm_timeout_s: float,
             tail=lambda: "", on_go=lambda: None) -> dict:
    """Run a paced sender in its own process (it shares no interpreter with the receivers):
    its warm-up first, until every warm-up delivery arrived (then ``on_go()``), then the
    measured incidents. Returns its output: send times, and its CPU seconds while measured."""
    out = folder / f"{role}-{spec['phase']}.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.notifier_latency", "--role", role, "--spec", json.dumps({**spec, "out": str(out)})],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout.readline().strip() != "warm":
            raise RuntimeError(f"the {role} process failed before its warm-up ended")
        if not wait_for_arrivals(arrivals, expected_ids(spec["warm_phase"], spec["warmup"]), warm_timeout_s, 0.5):
            raise RuntimeError(f"the {spec['warm_phase']} warm-up deliveries did not all arrive\n{tail()}")
        on_go()
        process.stdin.write("go\n")
        process.stdin.flush()
        if process.wait() != 0:
            raise RuntimeError(f"the {role} process exited with {process.returncode}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return json.loads(out.read_text())


# --- measuring ---------------------------------------------------------------------------------

def nearest_rank(values: list[float], share: float) -> float:
    from bench.loadgen import percentile

    return percentile(values, share)


def wait_for_arrivals(arrivals: Arrivals, expected: dict[str, set[str]], timeout_s: float,
                      settle_s: float) -> bool:
    """Whether every expected delivery arrived within ``timeout_s`` (see ``wait_to_end``)."""
    wait_to_end(arrivals, expected, timeout_s, settle_s)
    return all(arrivals.arrived(c, ids) == len(ids) for c, ids in expected.items())


def wait_to_end(arrivals: Arrivals, expected: dict[str, set[str]], timeout_s: float, settle_s: float) -> float:
    """Wait until every expected delivery arrived, or ``timeout_s``; returns when the waiting
    for deliveries ended (``time.time()``), before the ``settle_s`` left for duplicates."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(arrivals.arrived(c, ids) == len(ids) for c, ids in expected.items()):
            break
        time.sleep(0.1)
    ended = time.time()
    time.sleep(settle_s)
    return ended


def channel_figures(sent: dict[str, float], expected: set[str], seen: dict[str, list[float]],
                    wait_ended: float) -> dict:
    """Delivery counts and latency percentiles over every incident sent. One not delivered
    when the wait ended is slower than ``wait_ended`` minus its send time: a percentile that
    falls on one is unknown (``None``) and ``<name>_ms_at_least`` gives that lower bound."""
    latencies = [(min(seen[i]) - sent[i]) * 1000 for i in expected if i in seen]
    missing = expected - seen.keys()
    figures = {
        "expected": len(expected),
        "delivered": len(latencies),
        "duplicates": sum(len(seen[i]) - 1 for i in expected if i in seen),
        "unexpected": sum(len(t) for i, t in seen.items() if i not in expected),
        "missing": len(missing),
    }
    # an undelivered incident's bound ranks below its true latency: a percentile is known only
    # when nothing at or below its rank is such a bound, else that rank's value is a lower bound
    ranked = sorted([(value, True) for value in latencies] + [((wait_ended - sent[i]) * 1000, False) for i in missing])
    for name, share in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        rank = max(1, math.ceil(share * len(ranked)))  # nearest rank
        value = ranked[rank - 1][0]
        known = all(known for _, known in ranked[:rank])
        figures[f"{name}_ms"] = round(value, 1) if known else None
        if not known:
            figures[f"{name}_ms_at_least"] = round(value, 1)
    figures["max_ms"] = round(max(latencies), 1) if latencies and not missing else None
    if missing:
        figures["max_ms_at_least"] = round(ranked[-1][0], 1)
    figures["max_delivered_ms"] = round(max(latencies), 1) if latencies else None
    figures["exactly_once"] = figures["delivered"] == figures["expected"] and not figures["duplicates"] \
        and not figures["unexpected"]
    return figures


def path_figures(phase: str, output: dict, arrivals: Arrivals, wait_ended: float) -> dict:
    sent: dict[str, float] = output["sent"]
    expected = expected_ids(phase, len(sent))
    assert expected["slack"] == sent.keys(), "the sender's ids are not the expected ones"
    times = sorted(sent.values())
    figures = {
        "incidents_sent": len(sent),
        "achieved_rate_per_s": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else None,
        "wait_ended_s_after_last_send": round(wait_ended - times[-1], 1),
    }
    for channel in CHANNELS:
        figures[channel] = channel_figures(sent, expected[channel], arrivals.snapshot(channel, f"{ID_PREFIX}-{phase}-"),
                                           wait_ended)
    figures["exactly_once"] = all(figures[c]["exactly_once"] for c in CHANNELS)
    if "failed" in output:
        figures["delivery_failures"] = output["failed"]
    return figures


def breakdown(mongo_uri: str, phase: str, sent: dict[str, float], arrivals: Arrivals) -> dict:
    """Where the notifier's time went, from its own records: publish -> admitted (the broker
    hop and the consumer; ``raised_epoch`` is the clock when ``admit`` began) -> delivery
    started (admission's writes, the dispatcher's wake-up, lease and reads; a delivery
    attempt's ``started_at``, before rendering) -> arrived at the receiver (render and post).
    Percentiles of each segment over the incidents, in ms."""
    from pymongo import MongoClient

    with MongoClient(mongo_uri) as client:
        db = client["steward"]
        admitted = {d["_id"]: d["raised_epoch"] for d in db["notifier_incidents"].find({}, {"raised_epoch": 1})
                    if d["_id"] in sent}
        attempts = [a for a in db["notifier_delivery_attempts"].find(
            {}, {"incident_id": 1, "kind": 1, "started_at": 1, "finished_at": 1, "status": 1})
            if a["incident_id"] in sent]
    started: dict[tuple[str, str], float] = {}
    finished: dict[tuple[str, str], float] = {}
    statuses: dict[str, int] = defaultdict(int)
    for a in attempts:
        statuses[f"{a['kind']}/{a['status']}"] += 1
        key = (a["kind"], a["incident_id"])
        started[key], finished[key] = epoch(a["started_at"]), epoch(a["finished_at"])

    def spread(values: list[float]) -> dict:
        if not values:
            return {}
        return {"p50": round(nearest_rank(values, 0.5), 1), "p99": round(nearest_rank(values, 0.99), 1),
                "max": round(max(values), 1)}

    segments: dict[str, dict] = {"publish_to_admitted": spread(
        [(admitted[i] - t) * 1000 for i, t in sent.items() if i in admitted])}
    for channel in CHANNELS:
        seen = arrivals.snapshot(channel, f"{ID_PREFIX}-{phase}-")
        keys = [(channel, i) for i in sent if (channel, i) in started and i in admitted and i in seen]
        segments[channel] = {
            "admitted_to_delivery_start": spread([(started[k] - admitted[k[1]]) * 1000 for k in keys]),
            "delivery_start_to_arrival": spread([(min(seen[k[1]]) - started[k]) * 1000 for k in keys]),
            "arrival_to_delivery_recorded_done": spread([(finished[k] - min(seen[k[1]])) * 1000 for k in keys]),
        }
    admitted_at = sorted(admitted.values())
    sent_at = sorted(sent.values())
    rates = {"incidents_admitted": len(admitted_at),
             "sent_per_s": round((len(sent_at) - 1) / (sent_at[-1] - sent_at[0]), 1) if len(sent_at) > 1 else None,
             "admitted_per_s": round((len(admitted_at) - 1) / (admitted_at[-1] - admitted_at[0]), 1)
             if len(admitted_at) > 1 else None}
    # latency to Slack by when the incident was sent: flat = a fixed cost, rising = a queue
    window = max(1.0, (sent_at[-1] - sent_at[0]) / 6) if sent_at else 1.0
    slack_seen = arrivals.snapshot("slack", f"{ID_PREFIX}-{phase}-")
    by_window: dict[int, list[float]] = defaultdict(list)
    for i, t in sent.items():
        if i in slack_seen:
            by_window[int((t - sent_at[0]) // window)].append((min(slack_seen[i]) - t) * 1000)
    over_time = [{"sent_from_s": round(k * window, 1), "incidents": len(v), **spread(v)}
                 for k, v in sorted(by_window.items())]
    return {"segments_ms": segments, "rates": rates, "slack_latency_by_send_time_ms": over_time,
            "attempt_records": dict(statuses)}


def epoch(value: str | datetime) -> float:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cpu_seconds(pid: int) -> float:
    from bench.metrics_service import cpu_seconds as read

    return read(pid)


def machine_busy_seconds() -> float:
    """CPU seconds every core spent busy so far (/proc/stat), whoever used them."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuWindow:
    """CPU seconds of the named processes, of this one, and of everything else on the machine
    (other users of the shared cores) between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {**{name: cpu_seconds(pid) for name, pid in self.pids.items()},
                "receivers (this process)": time.process_time(), "machine": machine_busy_seconds()}

    def start(self) -> None:
        self.before = self._now()

    def stop(self, sender_cpu_s: float) -> dict[str, float]:
        spent = {name: round(value - self.before[name], 2) for name, value in self._now().items()}
        spent["sender"] = sender_cpu_s
        machine_total = spent.pop("machine")
        spent["everything else on the machine"] = round(max(0.0, machine_total - sum(spent.values())), 2)
        spent["machine total"] = round(machine_total, 2)
        return spent


def per_incident_ms(cpu: dict[str, float], count: int) -> dict[str, float]:
    return {name: round(seconds / count * 1000, 1) for name, seconds in cpu.items()
            if name in ("tansu", "nx-27017", "notifier", "sender", "receivers (this process)")}


def start_notifier(stack, profile: Path | None) -> None:
    """The notifier as the local stack starts it; under cProfile with ``profile``."""
    from services.localstack.processes import Child, free_port
    from services.localstack.stack import SERVER_OPTIONS

    if profile is None:
        stack.start_services(("notifier",))
        return
    port = free_port()
    argv = [sys.executable, "-m", "cProfile", "-o", str(profile.absolute()), "-m", "uvicorn", "--factory",
            "services.notifier.app:create_app", "--host", "127.0.0.1", "--port", str(port), *SERVER_OPTIONS]
    child = Child("notifier", argv, stack.folder / "logs" / "notifier.log", stack.service_environment("notifier"))
    stack.children.append(child.start())
    stack.endpoints.services["notifier"] = f"http://127.0.0.1:{port}"
    stack.wait_ready("notifier", child, 180)


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "broker (tansu), store (nx-27017), notifier, receivers and senders share these cores"}


# --- the run -----------------------------------------------------------------------------------

def main(rate: float, seconds: float, warmup: int, results_path: Path, profile: Path | None = None,
         settle_s: float = 2.0, idle_s: float = 3.0) -> dict:
    from aiosmtpd.controller import Controller

    from bench.metrics_service import code_state, mongo_commands, print_profile
    from services.localstack.processes import free_port
    from services.localstack.stack import LocalStack

    count = int(rate * seconds)
    began = time.monotonic()
    code = code_state()  # before the run: what was measured
    arrivals = Arrivals()
    slack = start_slack_stand_in(arrivals)
    smtp = Controller(Mailbox(arrivals), hostname="127.0.0.1", port=free_port())
    smtp.start()
    slack_url = f"http://127.0.0.1:{slack.server_port}/services/TBENCH/BBENCH/notifier-latency"
    drain_s = max(120.0, seconds * 6)  # a notifier slower than the rate drains its queue after the send
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        routing_file = folder / "routing.yaml"
        routing_file.write_text(routing_yaml(slack_url))
        stack = LocalStack(folder / "home", preferred_ports=False)
        try:
            stack.start_infrastructure()
            bootstrap, mongo_uri = stack.endpoints.kafka, stack.endpoints.mongo_uri
            infra = {c.name: c.process.pid for c in stack.children if c.name in ("tansu", "nx-27017")}

            # direct: the receivers alone
            direct_spec = {"smtp_port": smtp.port, "routing_file": str(routing_file), "rate": rate,
                           "warm_phase": "dwarm", "warmup": warmup, "phase": "direct", "count": count}
            direct_cpu = CpuWindow(infra)
            if profile is None:
                print(f"direct: {count} incidents at {rate:g}/s ...", flush=True)
                direct_out = run_role("direct", direct_spec, folder, arrivals, 30, on_go=direct_cpu.start)
                ended = wait_to_end(arrivals, expected_ids("direct", count), drain_s, settle_s)
                direct = path_figures("direct", direct_out, arrivals, ended)
                direct["cpu_seconds_while_measured"] = direct_cpu.stop(direct_out["cpu_s"])
                direct["cpu_ms_per_incident"] = per_incident_ms(direct["cpu_seconds_while_measured"], count)

            # notifier: the real service between the broker and the receivers
            stack.service_env = {"STEWARD_ROUTING_FILE": str(routing_file),
                                 "STEWARD_SLACK_CHANNEL_INTERVAL_S": "0",
                                 "STEWARD_SMTP_PORT": str(smtp.port)}
            start_notifier(stack, profile)
            notifier = stack.child("notifier")
            base_url = stack.endpoints.services["notifier"]
            notifier_cpu = CpuWindow({**infra, "notifier": notifier.process.pid})
            at_go: dict = {}

            def on_go() -> None:
                # what the stack costs doing nothing (consumers' fetch polling, the dispatcher's poll)
                notifier_cpu.start()
                time.sleep(idle_s)
                at_go["idle_cpu_per_s"] = {name: round(v / idle_s, 3) for name, v in notifier_cpu.stop(0.0).items()
                                           if name in ("tansu", "nx-27017", "notifier")}
                at_go["mongo_commands"] = mongo_commands(base_url)
                notifier_cpu.start()

            print(f"notifier: {count} incidents at {rate:g}/s ...", flush=True)
            publish_spec = {"bootstrap": bootstrap, "rate": rate, "warm_phase": "nwarm", "warmup": warmup,
                            "phase": "notifier", "count": count}
            publish_out = run_role("publish", publish_spec, folder, arrivals, 90, notifier.tail, on_go)
            ended = wait_to_end(arrivals, expected_ids("notifier", count), drain_s, settle_s)
            cpu = notifier_cpu.stop(publish_out["cpu_s"])
            commands = mongo_commands(base_url) - at_go["mongo_commands"]
            through = path_figures("notifier", publish_out, arrivals, ended)
            where = breakdown(mongo_uri, "notifier", publish_out["sent"], arrivals)
            # per incident the notifier took in while measured (all of them, unless it fell behind)
            admitted = max(1, where["rates"]["incidents_admitted"])
            where["mongo_round_trips_per_incident"] = {
                "total": round(sum(commands.values()) / admitted, 1),
                **{name: round(n / admitted, 2) for name, n in commands.most_common()}}
            where["cpu_seconds_while_measured"] = cpu
            where["cpu_ms_per_incident"] = per_incident_ms(cpu, admitted)
            where["idle_cpu_seconds_per_s_before"] = at_go["idle_cpu_per_s"]
            through["where_the_time_went"] = where
            if not through["exactly_once"]:
                print(f"notifier log tail:\n{notifier.tail(10)}", flush=True)
            if profile is not None:  # uvicorn re-raises SIGTERM after shutting down; SIGINT lets cProfile write
                notifier.signal(signal.SIGINT)
                notifier.process.wait(120)
        finally:
            stack.stop()
            smtp.stop()
            slack.shutdown()
    if profile is not None:
        print(json.dumps(through, indent=1))
        print_profile(profile)
        return through

    ratios = {}
    for channel in CHANNELS:
        for p in ("p50", "p99"):
            a, b = through[channel].get(f"{p}_ms"), direct[channel].get(f"{p}_ms")
            ratios[f"{channel}_{p}"] = round(a / b, 1) if a and b else None  # None: the notifier's is unknown
    p99s = [through[c].get("p99_ms") for c in CHANNELS]
    worst_p99 = None if None in p99s else max(p99s)  # None: over 1% not delivered within the wait
    results = {
        "benchmark": "notifier_latency",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.notifier_latency " + " ".join(
            os.path.relpath(a) if a.startswith("/") and Path(a).resolve().is_relative_to(Path.cwd()) else a
            for a in sys.argv[1:]),
        "code": code,
        "machine": machine(),
        "setup": {
            "rate_per_s": rate, "seconds": seconds, "incidents": count, "warmup_incidents_per_path": warmup,
            "critical_share": 1 / CRITICAL_EVERY,
            "routing": "receivers slack (webhook to a local ThreadingHTTPServer answering 200) and email (SMTP "
                       "to a local aiosmtpd); root route group_wait 0s, group_by [community, category, member], "
                       "one member per incident (one notification per incident and receiver); critical -> email "
                       "(continue: true), every incident -> slack",
            "slack_channel_interval_s": 0,
            "slack_channel_interval_note": "Slack's real pacing (about 1 message/s per channel, the default 1 s) "
                                           "is off in both paths: at 100/s to one webhook it alone would queue "
                                           "the posts without bound",
            "notifier": "services.notifier.app:create_app under uvicorn (uvloop, httptools, one worker), started by "
                        "LocalStack.start_services; other settings default (dispatch_poll_s 1.0, log level INFO)",
            "direct": "build_receivers(...) on the same routing file: SlackWebhookReceiver.deliver / "
                      "EmailReceiver.deliver of Notification.of(incident) at the same rate, from a separate "
                      "process, no broker, store or notifier",
            "latency": "arrival at the receiver (time.time() in the stand-in) minus the send time (time.time() "
                       "before the publish or the deliver call; the incident's created_at)",
        },
        "target": {"p99_ms_below": TARGET_P99_MS, "measured_worst_p99_ms": worst_p99,
                   "met": worst_p99 is not None and worst_p99 < TARGET_P99_MS},
        "notifier": through,
        "direct": direct,
        "notifier_vs_direct": ratios,
        "unparsed_arrivals": arrivals.unparsed,
        "bench_seconds": round(time.monotonic() - began, 1),
    }
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {results_path}")
    return results


def shown(figures: dict, name: str) -> str:
    if figures.get(f"{name}_ms") is not None:
        return f"{figures[f'{name}_ms']:.1f}"
    return f">{figures[f'{name}_ms_at_least']:.0f}"


def print_table(results: dict) -> None:
    setup = results["setup"]
    print()
    print(f"{setup['incidents']} incidents at {setup['rate_per_s']:g}/s, group_wait 0s, "
          f"Slack channel pacing off; {results['machine']['cpu_count']} cores ({results['machine']['cpu_model']})")
    head = f"{'path':<10}{'receiver':<8}{'rate/s':>8}{'got/exp':>12}{'dups':>6}" \
           f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(head)
    for path in ("direct", "notifier"):
        figures = results[path]
        for channel in CHANNELS:
            f = figures[channel]
            print(f"{path:<10}{channel:<8}{figures['achieved_rate_per_s'] or 0:>8.1f}"
                  f"{f['delivered']:>6}/{f['expected']:<5}{f['duplicates']:>6}"
                  + "".join(f"{shown(f, k):>9}" for k in ("p50", "p95", "p99", "max")))
    ratios = results["notifier_vs_direct"]
    print("notifier / direct: " + ", ".join(f"{k} {'unknown' if v is None else f'{v}x'}" for k, v in ratios.items()))
    segments = results["notifier"]["where_the_time_went"]["segments_ms"]
    print(f"notifier time: publish -> admitted {segments['publish_to_admitted']}")
    for channel in CHANNELS:
        print(f"  {channel}: " + "; ".join(f"{k} {v}" for k, v in segments[channel].items()))
    where = results["notifier"]["where_the_time_went"]
    print(f"rates: {where['rates']}")
    print("slack latency by send time: " + "; ".join(
        f"from {w['sent_from_s']} s: p50 {w.get('p50')} p99 {w.get('p99')}" for w in where["slack_latency_by_send_time_ms"]))
    print(f"per incident admitted while measured, mongo round trips: {where['mongo_round_trips_per_incident']}")
    for path, figures in (("direct", results["direct"]), ("notifier", where)):
        print(f"cpu seconds while {path} measured: {figures['cpu_seconds_while_measured']}; "
              f"ms per incident: {figures['cpu_ms_per_incident']}")
    print(f"idle cpu seconds per second before the notifier run: {where['idle_cpu_seconds_per_s_before']}")
    target = results["target"]
    print("'>X': not delivered when the wait ended, so at least X ms (percentiles are over every incident sent)")
    print(f"target p99 < {target['p99_ms_below']:g} ms: worst measured {target['measured_worst_p99_ms']} ms -> "
          f"{'met' if target['met'] else 'NOT met'}; exactly once: "
          f"notifier {results['notifier']['exactly_once']}, direct {results['direct']['exactly_once']}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=100.0, help="incidents per second (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per path (default 30)")
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run: 20/s for 3 s, 5 warm-up incidents, written to --results or a "
                             "temporary file")
    parser.add_argument("--results", type=Path, default=None, help=f"results file (default {RESULTS})")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the notifier under cProfile, keep the profile in this file and print its top "
                             "functions; no baseline, nothing written (profiled figures are slower)")
    parser.add_argument("--role", choices=("publish", "direct"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role_main(args.role, args.spec)
        return
    if args.quick:
        rate, seconds, warmup, settle_s, idle_s = 20.0, 3.0, 5, 1.0, 1.0
        results = args.results or Path(tempfile.gettempdir()) / "notifier_latency.quick.json"
    else:
        rate, seconds, warmup, settle_s, idle_s = args.rate, args.seconds, WARMUP, 2.0, 3.0
        results = args.results or RESULTS
    main(rate, seconds, warmup, results, args.profile, settle_s, idle_s)


if __name__ == "__main__":
    cli()
