"""Benchmark: activity events/s and MongoDB round trips through the real metrics service.

Run: ``.venv/bin/python -m bench.metrics_service``. Starts tansu and nx-27017 (a fresh
temporary home), then:

- workload: BENCH_EVENTS distinct activity events (default 300,000) from a fixed seed: one
  large Slack community (150k members) and four smaller ones on other platforms, member
  activity skewed like real communities (a few very active members, a long tail of
  occasional ones), a realistic mix of kinds (messages, replies to recent messages and
  questions, questions ending in '?', reactions, joins, leaves, edits, deletes, RSVPs),
  timestamps over BENCH_DAYS days with a daily rhythm, in time order with jitter (some
  arrive late), and ~2% of events re-published a little later (same event id and bytes).
  Every record is pre-loaded into the activity topic before anything consumes it;
- service: the real metrics service (uvicorn, one worker, on the fresh stack: nx-27017 keeps
  one namespace whatever the database name) consumes the topic in its batch subscriber;
  the bench polls ``metrics_offsets`` every 0.2 s and times from the first stored offset
  that it sees together with the service's ``/metrics`` (uvicorn listens only after its
  lifespan, which already consumes: start-up and the first batches are left out, and the
  records stored by then are not counted) until every partition's last offset is stored.
  Round trips are the service's own
  ``steward_mongo_commands_total`` (every command its client sends), read from ``/metrics``
  at both ends. CPU seconds of the service, nx-27017 and tansu over the same window say
  where the time went;
- baseline, in the same run and on the same servers: a plain aiokafka consumer (own group)
  that does, for each record, one ``insert_one`` of the event's fact with ``_id`` =
  event_id (a duplicate key means a re-published event: nothing more) and then one
  ``update_one`` ``$inc`` upsert of the community's per-day counter of that kind, awaiting
  each write before the next, into its own collections; its client counts commands with a
  ``CommandListener``. It runs over the first BENCH_BASELINE_EVENTS records it receives
  (default 10,000), once before the service and once after, and reports both;
- correctness: the service's ``GET /communities/<big>/kpis/volume`` over the whole range
  must give, day by day, exactly the generated counts of distinct messages, replies,
  reactions, joins, leaves, edits and deletes of that community (duplicates excluded).

Targets (the issue): at least 20,000 events/s, at most 2 round trips per 1,000 events
(1 per 500). Writes ``bench/results/metrics_service.json``. With BENCH_PROFILE=FILE the
service runs under cProfile instead, the profile is kept in FILE and its top functions are
printed; no baseline runs and nothing is written then (profiled figures are slower).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import os
import platform
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import DuplicateKeyError
from pymongo.monitoring import CommandListener

from schemas import MemberActivity, topics
from services.localstack.processes import Child, free_port
from services.localstack.stack import SERVER_OPTIONS, LocalStack
from services.metrics.app import FETCH_WAIT_MS
from services.runtime.settings import MetricsSettings

RESULTS = Path(__file__).with_name("results") / "metrics_service.json"
DEFAULTS = MetricsSettings()
EVENTS = int(os.environ.get("BENCH_EVENTS", "300000"))
DAYS = int(os.environ.get("BENCH_DAYS", "28"))
BASELINE_EVENTS = int(os.environ.get("BENCH_BASELINE_EVENTS", "10000"))
PROFILE = os.environ.get("BENCH_PROFILE")  # a file to keep the service's cProfile output in
SEED = 20261
DUPLICATE_SHARE = 0.02
LATE_SHARE, LATE_MAX_S = 0.08, 900  # this share of events occurred up to 15 min before their neighbours
PARTITIONS = 6  # LocalStack.start_infrastructure creates every topic with 6
GROUP = "steward-metrics-activity"
TARGET_EVENTS_PER_S = 20_000
TARGET_ROUND_TRIPS_PER_1000 = 2.0
CORES = os.cpu_count() or 1
STORE_COLLECTIONS = ("metrics_counters", "metrics_members", "metrics_facts", "metrics_profiles")

# community, platform, members, share of events, channels
COMMUNITIES = [
    ("bigco", "slack", 150_000, 0.72, 40),
    ("oss-project", "discord", 20_000, 0.12, 15),
    ("forum", "discourse", 8_000, 0.08, 12),
    ("meetup", "telegram", 3_000, 0.05, 5),
    ("sdk-repo", "github", 2_000, 0.03, 6),
]
BIG = COMMUNITIES[0][0]
ZIPF_S, ZIPF_OFFSET = 1.05, 25  # member of rank r weighs 1 / (r + offset)^s
KINDS = [  # kind, share
    ("message_posted", 0.63), ("reaction_added", 0.25), ("member_joined", 0.04), ("member_left", 0.012),
    ("message_edited", 0.03), ("message_deleted", 0.012), ("event_rsvp", 0.013), ("event_attended", 0.013),
]
REPLY_SHARE, QUESTION_SHARE = 0.35, 0.12  # of messages; of top-level messages
WORDS = ("the", "deploy", "build", "release", "docs", "api", "token", "error", "retry", "cache",
         "config", "please", "thanks", "anyone", "works", "broken", "fixed", "latest", "version",
         "install", "upgrade", "python", "node", "rust", "issue", "meeting", "tomorrow", "slides",
         "link", "here", "great", "idea", "agree", "maybe", "later", "check", "logs")
EMOJI = ("thumbsup", "heart", "tada", "eyes", "rocket", "pray", "joy")
USERNAME_PLATFORMS = {"discourse", "telegram", "github"}  # their events carry a username attribute


# --- workload --------------------------------------------------------------------------------

class _Community:
    def __init__(self, rng: random.Random, name: str, platform_: str, members: int, channels: int) -> None:
        self.name, self.platform, self.members = name, platform_, members
        # Shuffled ranks: member ids say nothing about how active a member is.
        ids = [f"{name[:3]}-u{n}" for n in range(members)]
        rng.shuffle(ids)
        self.ids = ids
        self.member_cum = list(itertools.accumulate(1 / (r + ZIPF_OFFSET) ** ZIPF_S for r in range(members)))
        self.channels = [f"c{n}" for n in range(channels)]
        self.channel_cum = list(itertools.accumulate(1 / (r + 1) for r in range(channels)))
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=3000)  # (message id, author, channel)
        self.questions: deque[tuple[str, str, str]] = deque(maxlen=300)

    def member(self, rng: random.Random) -> str:
        return self.ids[bisect.bisect(self.member_cum, rng.random() * self.member_cum[-1])]

    def tail_member(self, rng: random.Random) -> str:
        """Anyone, uniformly: joins and leaves come mostly from the long tail."""
        return self.ids[rng.randrange(self.members)]

    def channel(self, rng: random.Random) -> str:
        return self.channels[bisect.bisect(self.channel_cum, rng.random() * self.channel_cum[-1])]

    @staticmethod
    def pick_recent(rng: random.Random, pool: deque):
        return pool[len(pool) - 1 - min(len(pool) - 1, int(rng.expovariate(1 / 40)))]


def _timestamps(rng: random.Random, count: int, first_day: datetime) -> list[float]:
    """Sorted epoch seconds over DAYS days: quieter weekends and nights, busy afternoons (UTC)."""
    day_weights = [0.6 if (first_day + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(DAYS)]
    hour_weights = [0.25 + math.sin(math.pi * max(0, h - 6) / 18) ** 2 for h in range(24)]
    start = first_day.timestamp()
    days = rng.choices(range(DAYS), weights=day_weights, k=count)
    hours = rng.choices(range(24), weights=hour_weights, k=count)
    return sorted(start + d * 86400 + h * 3600 + rng.random() * 3600 for d, h in zip(days, hours, strict=True))


def _text(rng: random.Random, question: bool) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 24)))
    return words.capitalize() + ("?" if question else rng.choice((".", "", "!", " :)")))


def workload(count: int = EVENTS) -> tuple[list[tuple[bytes, bytes]], dict]:
    """``count`` distinct events (plus re-published copies) as (key, value) records in topic order,
    and what the service must find: per-day volume counts of the big community, and the shape."""
    rng = random.Random(SEED)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day = today - timedelta(days=DAYS)
    communities = [_Community(rng, name, p, members, channels) for name, p, members, _, channels in COMMUNITIES]
    shares = [share for *_, share, _ in COMMUNITIES]
    kinds, kind_weights = zip(*KINDS, strict=True)
    times = _timestamps(rng, count, first_day)
    expected: dict[str, Counter] = defaultdict(Counter)  # big community: iso day -> volume field -> n
    kind_counts: Counter = Counter()
    members_seen: dict[str, Counter] = defaultdict(Counter)
    records: list[tuple[float, bytes, bytes]] = []
    for n, at in enumerate(times):
        community = rng.choices(communities, weights=shares)[0]
        kind = rng.choices(kinds, weights=kind_weights)[0]
        if kind in ("message_edited", "message_deleted", "reaction_added") and not community.recent:
            kind = "message_posted"
        if rng.random() < LATE_SHARE:
            at -= rng.random() * LATE_MAX_S  # delivered late: it happened before its neighbours
        fields: dict = {"channel_id": community.channel(rng)}
        member = community.member(rng)
        attributes: dict = {}
        if kind == "message_posted":
            message_id = f"{community.name}-msg{n}"
            fields["message_id"] = message_id
            if rng.random() < REPLY_SHARE:
                pool = community.questions if community.questions and rng.random() < 0.4 else community.recent
                if pool:
                    target, _, channel = community.pick_recent(rng, pool)
                    fields.update(reply_to=target, channel_id=channel)
            question = "reply_to" not in fields and rng.random() < QUESTION_SHARE
            fields["text"] = _text(rng, question)
            entry = (message_id, member, fields["channel_id"])
            community.recent.append(entry)
            if question:
                community.questions.append(entry)
        elif kind in ("message_edited", "message_deleted"):
            message_id, member, channel = community.pick_recent(rng, community.recent)  # its author does it
            fields.update(message_id=message_id, channel_id=channel)
            if kind == "message_edited":
                fields["text"] = _text(rng, False)
        elif kind == "reaction_added":
            target, _, channel = community.pick_recent(rng, community.recent)
            fields.update(message_id=target, channel_id=channel)
            attributes["reaction"] = rng.choice(EMOJI)
        elif kind in ("member_joined", "member_left"):
            member = community.tail_member(rng)
        else:
            attributes["scheduled_event_id"] = f"ev{int(at // (7 * 86400))}"
        if community.platform in USERNAME_PLATFORMS:
            attributes["username"] = member.split("-", 1)[1]
        occurred = datetime.fromtimestamp(at, UTC)
        event = MemberActivity(
            event_id=f"{community.platform}-{community.name}-{n}", platform=community.platform,
            community_id=community.name, member_id=member, kind=kind, occurred_at=occurred,
            received_at=occurred + timedelta(seconds=1 + rng.random() * 3), attributes=attributes, **fields)
        value, key = event.to_bytes(), event.partition_key()
        records.append((n, key, value))
        if rng.random() < DUPLICATE_SHARE:  # the platform re-sends it a little later
            records.append((n + rng.randint(1, 400) + 0.5, key, value))
        kind_counts[kind] += 1
        members_seen[community.name][member] += 1
        if community.name == BIG:
            day = expected[occurred.date().isoformat()]
            day[_VOLUME[kind]] += 1
            if kind == "message_posted" and "reply_to" in fields:
                day["replies"] += 1
    records.sort(key=lambda r: r[0])
    big_counts = sorted(members_seen[BIG].values(), reverse=True)
    shape = {
        "distinct_events": count,
        "records_with_duplicates": len(records),
        "duplicates": len(records) - count,
        "days": DAYS,
        "first_day": first_day.date().isoformat(),
        "seed": SEED,
        "mean_record_bytes": round(sum(len(v) for _, _, v in records) / len(records), 1),
        "kinds": dict(kind_counts.most_common()),
        "communities": {name: {"platform": p, "members": m, "event_share": s, "channels": c,
                               "members_with_events": len(members_seen[name])}
                        for name, p, m, s, c in COMMUNITIES},
        "member_skew": f"rank r weighs 1/(r+{ZIPF_OFFSET})^{ZIPF_S}",
        "big_community_top_member_events": big_counts[0],
        "big_community_top_1pct_members_share": round(sum(big_counts[:max(1, len(big_counts) // 100)])
                                                      / sum(big_counts), 3),
        "big_community_members_with_one_event": sum(1 for c in big_counts if c == 1),
        "late_share": LATE_SHARE, "late_max_s": LATE_MAX_S,
        "reply_share_of_messages": REPLY_SHARE, "question_share_of_top_level": QUESTION_SHARE,
    }
    return [(key, value) for _, key, value in records], {"expected": expected, "shape": shape}


_VOLUME = {"message_posted": "messages", "reaction_added": "reactions", "member_joined": "joins",
           "member_left": "leaves", "message_edited": "edits", "message_deleted": "deletes",
           "event_rsvp": "rsvps", "event_attended": "attended"}


async def preload(bootstrap: str, records: list[tuple[bytes, bytes]]) -> tuple[dict[int, int], float]:
    """Send every record; returns each partition's end offset and the records/s of the load."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    ends: dict[int, int] = {}
    started = time.perf_counter()
    try:
        for start in range(0, len(records), 20_000):
            futures = [await producer.send(topics.ACTIVITY, value, key=key)
                       for key, value in records[start:start + 20_000]]
            for meta in await asyncio.gather(*futures):
                ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return ends, len(records) / (time.perf_counter() - started)


# --- measuring a process ---------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def mongo_commands(base_url: str, wait_s: float = 0) -> Counter:
    """The service's steward_mongo_commands_total, by command name."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            text = httpx.get(f"{base_url}/metrics", timeout=10).text
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    out: Counter = Counter()
    for line in text.splitlines():
        if line.startswith("steward_mongo_commands_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('command="', 1)[1].split('"', 1)[0]] += float(value)
    return out


def stored_records(offsets, ends: dict[int, int]) -> tuple[int, bool]:
    """Records whose effects are stored (offset + 1 per partition), and whether that is all of them."""
    ids = [f"{GROUP}|{topics.ACTIVITY}|{p}" for p in ends]
    stored = {int(d["_id"].rsplit("|", 1)[1]): d["offset"] + 1 for d in offsets.find({"_id": {"$in": ids}})}
    done = sum(stored.values())
    return done, all(stored.get(p, 0) >= end for p, end in ends.items())


def measure_service(stack: LocalStack, folder: Path, ends: dict[int, int], total: int, database: str,
                    timeout_s: float = 900) -> dict:
    env = {**stack.service_environment("metrics"), "STEWARD_MONGO_DB": database, "STEWARD_LOG_LEVEL": "WARNING"}
    port = free_port()
    profile_path = Path(PROFILE or folder / "metrics.prof").absolute()
    runner = [sys.executable, "-m", "cProfile", "-o", str(profile_path)] if PROFILE else [sys.executable]
    argv = [*runner, "-m", "uvicorn", "--factory", "services.metrics.app:create_app", "--host", "127.0.0.1",
            "--port", str(port), *SERVER_OPTIONS, "--log-level", "warning"]
    base_url = f"http://127.0.0.1:{port}"
    others = {c.name: c.process.pid for c in stack.children if c.name in ("tansu", "nx-27017")}
    client = MongoClient(stack.endpoints.mongo_uri)
    offsets = client[database]["metrics_offsets"]
    spawned = time.perf_counter()
    child = Child("metrics", argv, folder / "metrics.log", env).start()
    stack.children.append(child)
    pids = {"service": child.process.pid, **others}
    first = first_stored = None
    progress: list[tuple[float, int]] = []  # (seconds since the first stored batch, records stored)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if not child.running:
                raise RuntimeError(f"the metrics service exited:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"not all offsets stored after {timeout_s}s:\n{child.tail()}")
            done, complete = stored_records(offsets, ends)
            now = time.perf_counter()
            if done and first_stored is None:
                first_stored = now
            if done and first is None:
                # uvicorn listens only once the lifespan (which starts consuming) is done:
                # the window starts at the first reading of the counter.
                commands_then = mongo_commands(base_url, wait_s=30)
                cpu_then = {name: cpu_seconds(pid) for name, pid in pids.items()}
                now = time.perf_counter()
                done, complete = stored_records(offsets, ends)
                first = {"at": now, "records": done, "commands": commands_then, "cpu": cpu_then}
            if first is not None and (not progress or progress[-1][1] != done):
                progress.append((round(now - first["at"], 2), done))
            if complete:
                break
            time.sleep(0.2)
        end = {"at": now, "records": done, "commands": mongo_commands(base_url),
               "cpu": {name: cpu_seconds(pid) for name, pid in pids.items()}}
        documents = {name: client[database][name].count_documents({}) for name in STORE_COLLECTIONS}
    finally:
        client.close()
    window_s = end["at"] - first["at"]
    window_records = total - first["records"]
    commands = end["commands"] - first["commands"]
    round_trips = sum(commands.values())
    commits = commands.get("commitTransaction", 0)
    cpu = {name: round(end["cpu"][name] - first["cpu"][name], 2) for name in pids}
    return {
        "base_url": base_url, "child": child, "profile": profile_path,
        "figures": {
            "records": total,
            "seconds_spawn_to_done": round(end["at"] - spawned, 2),
            "records_per_s_including_startup": round(total / (end["at"] - spawned), 1),
            "seconds_to_first_stored_batch": round(first_stored - spawned, 2),
            "seconds_to_window_start": round(first["at"] - spawned, 2),
            "records_stored_before_window": first["records"],
            "measured_records": window_records,
            "measured_seconds": round(window_s, 2),
            "events_per_s": round(window_records / window_s, 1),
            "round_trips": int(round_trips),
            "round_trips_per_1000_events": round(round_trips / window_records * 1000, 3),
            "round_trips_whole_run": int(sum(end["commands"].values())),
            "round_trips_per_1000_events_whole_run": round(sum(end["commands"].values()) / total * 1000, 3),
            "commands_by_name": {k: int(v) for k, v in commands.most_common()},
            "transactions_committed": int(commits),
            "mean_records_per_transaction": round(window_records / commits, 1) if commits else None,
            "cpu_seconds_in_window": cpu,
            "cpu_share_of_window": {name: round(s / window_s, 3) for name, s in cpu.items()},
            "peak_rss_mib": {name: peak_rss_mib(pid) for name, pid in pids.items()},
            "documents_stored": documents,
            "progress_seconds_records": progress,
        },
    }


# --- the naive baseline ----------------------------------------------------------------------

class _Counting(CommandListener):
    def __init__(self) -> None:
        self.commands: Counter = Counter()

    def started(self, event) -> None:
        self.commands[event.command_name] += 1

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


async def naive(bootstrap: str, mongo_uri: str, run: int, limit: int) -> dict:
    """One insert of the fact, then one $inc upsert of a day counter, per record, awaited in turn."""
    listener = _Counting()
    client = AsyncMongoClient(mongo_uri, event_listeners=[listener], tz_aware=True)
    # Collection names of their own: nx-27017 keeps one namespace for every database name.
    database = client[f"bench_naive_{run}"]
    facts, counters = database[f"naive_facts_{run}"], database[f"naive_counters_{run}"]
    group = f"bench-naive-{run}"
    await facts.find_one({"_id": "warm-up"})  # connect before timing
    consumer = AIOKafkaConsumer(topics.ACTIVITY, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()
    done = duplicates = 0
    started = None
    before = Counter(listener.commands)
    try:
        while done < limit:
            for records in (await consumer.getmany(timeout_ms=500, max_records=500)).values():
                for record in records:
                    if done >= limit:
                        break
                    started = started or time.perf_counter()
                    event = MemberActivity.model_validate_json(record.value)
                    day = event.occurred_at.date().isoformat()
                    try:
                        await facts.insert_one({
                            "_id": event.event_id, "community": event.community_id, "member": event.member_id,
                            "kind": event.kind.value, "at": event.occurred_at.timestamp(), "day": day,
                            "channel": event.channel_id, "message_id": event.message_id,
                            "reply_to": event.reply_to})
                        await counters.update_one({"_id": f"{event.community_id}|{day}"},
                                                  {"$inc": {event.kind.value: 1}}, upsert=True)
                    except DuplicateKeyError:
                        duplicates += 1
                    done += 1
        seconds = time.perf_counter() - started
        commands = listener.commands - before
    finally:
        await consumer.stop()
        await client.close()
    return {
        "records": done, "duplicates_skipped": duplicates, "seconds": round(seconds, 2),
        "events_per_s": round(done / seconds, 1),
        "round_trips": sum(commands.values()),
        "round_trips_per_1000_events": round(sum(commands.values()) / done * 1000, 1),
        "commands_by_name": dict(commands.most_common()),
    }


# --- correctness -----------------------------------------------------------------------------

def verify(base_url: str, expected: dict[str, Counter]) -> dict:
    first, last = min(expected), max(expected)
    reply = httpx.get(f"{base_url}/communities/{BIG}/kpis/volume", params={"from": first, "to": last}, timeout=300)
    reply.raise_for_status()
    fields = ("messages", "replies", "reactions", "joins", "leaves", "edits", "deletes")
    wrong = []
    for row in reply.json()["days"]:
        want = expected.get(row["day"], Counter())
        wrong += [(row["day"], name, row[name], want[name]) for name in fields if row[name] != want[name]]
    api_messages = sum(row["messages"] for row in reply.json()["days"])
    want_messages = sum(day["messages"] for day in expected.values())
    if wrong or api_messages != want_messages:
        raise AssertionError(f"volume KPIs differ from the generated events (day, field, api, expected): "
                             f"{wrong[:20]}; messages {api_messages} != {want_messages}")
    return {"community": BIG, "from": first, "to": last, "messages": api_messages,
            "days_checked": len(reply.json()["days"]), "fields_checked": list(fields), "ok": True}


# --- the run ---------------------------------------------------------------------------------

def code_state() -> dict:
    """The commit measured, and the service files that differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False).stdout
    return {"commit": git("rev-parse", "HEAD").strip(),
            "uncommitted": [line.strip() for line in git("status", "--porcelain", "services", "schemas").splitlines()]}


def print_profile(path: Path) -> None:
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(30)


def main() -> None:
    began = time.perf_counter()
    code = code_state()  # before the run: what was measured
    records, truth = workload()
    generated_s = time.perf_counter() - began
    print(f"workload: {len(records)} records in {generated_s:.1f}s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stack = LocalStack(folder, preferred_ports=False)
        try:
            stack.start_infrastructure()  # every topic with 6 partitions
            bootstrap, mongo_uri = stack.endpoints.kafka, stack.endpoints.mongo_uri
            ends, load_rate = asyncio.run(preload(bootstrap, records))
            assert sum(ends.values()) == len(records), (ends, len(records))
            print(f"pre-loaded {len(records)} records at {load_rate:.0f}/s; ends {ends}", flush=True)
            baselines = []
            if not PROFILE:
                baselines.append(asyncio.run(naive(bootstrap, mongo_uri, 1, BASELINE_EVENTS)))
                print("baseline (before):", json.dumps(baselines[-1]), flush=True)
            measured = measure_service(stack, folder, ends, len(records), "bench_metrics")
            service = measured["figures"]
            print("service:", json.dumps(service), flush=True)
            correctness = verify(measured["base_url"], truth["expected"])
            print("correctness:", json.dumps(correctness), flush=True)
            if PROFILE:  # uvicorn re-raises SIGTERM after shutting down; SIGINT lets cProfile write its file
                measured["child"].signal(signal.SIGINT)
                measured["child"].process.wait(60)
            measured["child"].stop(30)
            if PROFILE:
                print_profile(measured["profile"])
                return
            baselines.append(asyncio.run(naive(bootstrap, mongo_uri, 2, BASELINE_EVENTS)))
            print("baseline (after):", json.dumps(baselines[-1]), flush=True)
        finally:
            stack.stop()
    baseline_rate = round(sum(b["events_per_s"] for b in baselines) / len(baselines), 1)  # mean of the runs
    baseline_rt = sum(b["round_trips"] for b in baselines) / sum(b["records"] for b in baselines) * 1000
    rate, rt = service["events_per_s"], service["round_trips_per_1000_events"]
    results = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code,
        "machine": {"cpu_count": CORES, "platform": platform.platform(), "python": platform.python_version(),
                    "note": "broker (tansu), store (nx-27017), service and bench share the cores"},
        "service": "services.metrics.app:create_app under uvicorn (uvloop, one worker); defaults: "
                   f"batch_max {DEFAULTS.batch_max}, batch_wait_ms {DEFAULTS.batch_wait_ms}, "
                   f"fetch_max_wait_ms {FETCH_WAIT_MS}",
        "workload": truth["shape"],
        "preload_records_per_s": round(load_rate, 1),
        "service_run": service,
        "baseline": {
            "what": "aiokafka consumer, own group; per record: parse MemberActivity, insert_one of the fact "
                    "(_id = event_id; DuplicateKeyError = re-published, skip), then update_one $inc upsert "
                    "of {community}|{day} by kind; each awaited before the next; own collections, same server",
            "records_per_run": BASELINE_EVENTS,
            "runs": baselines,
            "events_per_s": baseline_rate,
            "round_trips_per_1000_events": round(baseline_rt, 1),
        },
        "service_vs_baseline_events_per_s": round(rate / baseline_rate, 1),
        "baseline_vs_service_round_trips": round(baseline_rt / rt, 1),
        "targets": {
            "events_per_s": {"target": TARGET_EVENTS_PER_S, "measured": rate, "met": rate >= TARGET_EVENTS_PER_S},
            "round_trips_per_1000_events": {"target": TARGET_ROUND_TRIPS_PER_1000, "measured": rt,
                                            "met": rt <= TARGET_ROUND_TRIPS_PER_1000},
        },
        "correctness": correctness,
        "bench_seconds": round(time.perf_counter() - began, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(f"{'path':<34}{'events/s':>12}{'round trips / 1000 events':>28}")
    print(f"{'metrics service (measured window)':<34}{rate:>12,.0f}{rt:>28.2f}")
    print(f"{'naive per-event writes':<34}{baseline_rate:>12,.0f}{baseline_rt:>28.1f}")
    print(f"service / baseline events/s: {results['service_vs_baseline_events_per_s']}x; "
          f"baseline / service round trips: {results['baseline_vs_service_round_trips']}x")
    for name, target in results["targets"].items():
        print(f"target {name}: {'<=' if 'round' in name else '>='} {target['target']:,}: measured "
              f"{target['measured']:,} -> {'met' if target['met'] else 'NOT met'}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
