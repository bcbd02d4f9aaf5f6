"""Replay a community's recorded activity through a candidate policy (and model) and compare
it with the current one: incident volume, and precision/recall against moderator feedback;
and, per category, the threshold that reaches a target precision on that feedback, with the
alert volume it would give (``services.moderation.thresholds``).

``score``/``compare`` are pure; ``replay`` reads ``community.activity.v1`` with a fresh,
group-less consumer up to the end offsets it found at start, so it never disturbs the
moderation service's offsets and always terminates."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import ActivityKind, MemberActivity, topics
from services.moderation.outcome import stable_id
from services.moderation.policy.engine import PolicyEngine
from services.moderation.policy.load import PolicyStore
from services.moderation.thresholds import (
    DEFAULT_MIN_SUPPORT,
    DEFAULT_TARGET_PRECISION,
    ThresholdReport,
    attribute,
    span_days,
    suggest_thresholds,
)
from services.runtime.positions import end_offsets, start_offsets

CLASSIFIED_KINDS = frozenset({ActivityKind.message_posted, ActivityKind.message_edited})
BATCH = 64


# ---------------------------------------------------------------- pure scoring

def score(decisions: dict[str, bool], truth: dict[str, bool]) -> dict[str, Any]:
    """``decisions``: event_id -> flagged; ``truth``: event_id -> harmful (from feedback).

    ``incidents`` counts every flagged event; precision and recall use only the events
    that have a truth label, and are None when undefined (nothing flagged / nothing harmful)."""
    tp = fp = fn = 0
    for event_id, harmful in truth.items():
        if event_id not in decisions:
            continue
        flagged = decisions[event_id]
        if flagged and harmful:
            tp += 1
        elif flagged:
            fp += 1
        elif harmful:
            fn += 1
    return {
        "incidents": sum(1 for flagged in decisions.values() if flagged),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "tp": tp, "fp": fp, "fn": fn,
    }


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """after - before for incidents, precision and recall (None where either is undefined)."""
    def delta(key: str):
        a, b = before.get(key), after.get(key)
        return None if a is None or b is None else b - a
    return {key: delta(key) for key in ("incidents", "precision", "recall")}


# ---------------------------------------------------------------- runner

@dataclass
class ReplayReport:
    community_id: str
    events: int  # that community's classified texts replayed
    labelled: int  # of those, how many have feedback
    before: dict[str, Any]
    after: dict[str, Any]
    delta: dict[str, Any] = field(default_factory=dict)
    before_policy: str = ""
    after_policy: str = ""
    thresholds: ThresholdReport | None = None  # per category, from the "before" run's scores


async def read_activity(bootstrap: str, community_id: str, *, since: datetime | None = None,
                        from_offset: int | None = None, topic: str = topics.ACTIVITY,
                        timeout_s: float = 60) -> list[MemberActivity]:
    """Every valid event of ``community_id`` on ``topic`` from ``since`` (by timestamp) or
    ``from_offset`` (on every partition), else from the beginning, up to the end offsets
    at start. In partition order, then by occurred_at."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    events: list[MemberActivity] = []
    try:
        await consumer.topics()  # fetch metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await end_offsets(bootstrap, tps)
        starts = await start_offsets(consumer, tps, ends, since=since, from_offset=from_offset)
        # The record's own timestamp is checked too: not every broker answers a time
        # past its last record with "none" (tansu gives an earlier offset).
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        deadline = asyncio.get_running_loop().time() + timeout_s
        while pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"replay read of {topic} did not reach the end offsets in time")
            batches = await consumer.getmany(*pending, timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    if since_ms is not None and record.timestamp < since_ms:
                        continue
                    try:
                        event = MemberActivity.model_validate_json(record.value)
                    except (ValidationError, UnicodeDecodeError, TypeError):
                        continue
                    if event.community_id == community_id:
                        events.append(event)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    events.sort(key=lambda e: e.occurred_at)
    return events


@dataclass
class Decided:
    """What one policy/model run made of the replayed events."""

    flagged: dict[str, bool] = field(default_factory=dict)  # event_id -> an incident would be raised
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # event_id -> category -> score
    fired: dict[str, tuple[str, ...]] = field(default_factory=dict)  # event_id -> categories of its incident
    occurred_at: dict[str, datetime] = field(default_factory=dict)  # of each classified event


async def decide_and_score(events: list[MemberActivity], classifier, engine: PolicyEngine) -> Decided:
    """Each classified event's scores and decision, as moderation makes them."""
    texts = [e for e in events if e.kind in CLASSIFIED_KINDS and e.has_text]
    readings = []
    for start in range(0, len(texts), BATCH):
        chunk = [e.text for e in texts[start:start + BATCH]]
        readings.extend(await asyncio.to_thread(classifier.classify, chunk))
    by_event = {e.event_id: r for e, r in zip(texts, readings, strict=True)}
    decided = Decided()
    for event in events:  # in order, so the stateful rules (raids, offenders) see the stream
        engine.observe(event)
        reading = by_event.get(event.event_id)
        if reading is None:
            continue
        policy = engine.policy_for(event.community_id)
        decision = engine.decide(policy, event, reading.scores)
        raised = decision is not None and not decision.shadow
        decided.flagged[event.event_id] = raised
        decided.scores[event.event_id] = dict(reading.scores)
        decided.occurred_at[event.event_id] = event.occurred_at
        if raised:
            decided.fired[event.event_id] = tuple(decision.categories)
    return decided


async def decide_all(events: list[MemberActivity], classifier, engine: PolicyEngine) -> dict[str, bool]:
    """event_id -> flagged (an incident would be raised), as moderation decides it."""
    return (await decide_and_score(events, classifier, engine)).flagged


async def replay(bootstrap: str, *, community_id: str, since: datetime | None = None,
                 from_offset: int | None = None, classifier, engine: PolicyEngine,
                 feedback_labels: dict[str, bool], candidate_engine: PolicyEngine,
                 candidate_classifier=None, feedback_categories: dict[str, list[str]] | None = None,
                 target_precision: float = DEFAULT_TARGET_PRECISION,
                 min_support: int = DEFAULT_MIN_SUPPORT) -> ReplayReport:
    """``classifier``/``engine``: production ("before"); ``candidate_engine`` (and
    ``candidate_classifier``, else the same model): "after". ``feedback_labels``:
    incident_id -> harmful, as ``FeedbackStore.labels_for`` gives them;
    ``feedback_categories``: incident_id -> the categories that fired on it, from the incident
    archive (:func:`archived_categories`). Threshold suggestions use the "before" run's scores;
    a labelled incident the archive does not know takes the categories the production policy
    fires on replay."""
    events = await read_activity(bootstrap, community_id, since=since, from_offset=from_offset)
    decided = await decide_and_score(events, classifier, engine)
    before = decided.flagged
    after = await decide_all(events, candidate_classifier or classifier, candidate_engine)
    incident_of = {event_id: stable_id("inc", event_id) for event_id in before}
    truth = {
        event_id: feedback_labels[incident]
        for event_id, incident in incident_of.items()
        if incident in feedback_labels
    }
    b, a = score(before, truth), score(after, truth)
    policy = engine.policy_for(community_id)
    archived = {event_id: (feedback_categories or {}).get(incident_of[event_id], ()) for event_id in truth}
    attribution = attribute(truth, decided.scores, archived, decided.fired)
    replayed: dict[str, list[float]] = {}
    for reading in decided.scores.values():
        for category, value in reading.items():
            replayed.setdefault(category, []).append(value)
    thresholds = suggest_thresholds(
        attribution.pairs, replayed,
        current={category: rule.threshold for category, rule in policy.categories.items()},
        days=span_days(decided.occurred_at.values()),
        target_precision=target_precision, min_support=min_support,
        attributed=attribution.counts,
    )
    return ReplayReport(
        community_id=community_id, events=len(before), labelled=len(truth), before=b, after=a,
        delta=compare(b, a),
        before_policy=policy.version,
        after_policy=candidate_engine.policy_for(community_id).version,
        thresholds=thresholds,
    )


async def archived_categories(db, community_id: str) -> dict[str, list[str]]:
    """incident_id -> the categories that fired on it, from the incident archive."""
    from services.moderation.feedback import ARCHIVE

    found: dict[str, list[str]] = {}
    async for doc in db[ARCHIVE].find({"community_id": community_id}, {"category": 1, "categories": 1}):
        found[doc["_id"]] = list(doc.get("categories") or ([doc["category"]] if doc.get("category") else []))
    return found


# ---------------------------------------------------------------- CLI

app = typer.Typer(help="Replay activity through a candidate policy; export feedback.",
                  no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str | None, now: datetime | None = None) -> datetime | None:
    """``24h``/``30m``/``7d`` (ago) or an ISO 8601 time (UTC when it names no zone)."""
    if not value:
        return None
    now = now or datetime.now(UTC)
    if match := _RELATIVE.match(value.strip()):
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a duration (24h) or ISO time: {value}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render(report: ReplayReport):
    """The before/after comparison, then (when the report has them) the thresholds from feedback."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"Replay of {report.community_id}: {report.events} texts, "
                        f"{report.labelled} with feedback")
    table.add_column("")
    table.add_column(f"before ({report.before_policy})", justify="right")
    table.add_column(f"after ({report.after_policy})", justify="right")
    table.add_column("change", justify="right")
    for key in ("incidents", "precision", "recall"):
        change = report.delta.get(key)
        table.add_row(key, _fmt(report.before[key]), _fmt(report.after[key]),
                      "-" if change is None else f"{change:+.3f}" if isinstance(change, float) else f"{change:+d}")
    if report.thresholds is None:
        return Group(table)
    return Group(table, render_thresholds(report.thresholds, report.before_policy))


def _threshold(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _alerts(count: int | None, daily: float | None) -> str:
    if count is None:
        return "-"
    return f"{count} ({daily:.1f}/day)" if daily is not None else str(count)


def render_thresholds(thresholds: ThresholdReport, policy_version: str = ""):
    from rich.table import Table

    days = thresholds.span_days
    if days is None:
        span = "no time span (fewer than two texts): no per-day figures"
    elif days < thresholds.min_span_days:
        least = thresholds.min_span_days
        span = f"over {days * 24:.1f} hours, under {least:g} day{'' if least == 1 else 's'}: no per-day figures"
    else:
        span = f"over {days:.1f} days"
    counts = thresholds.attributed
    sources = (f"; feedback labels: {counts.get('archive', 0)} by archived incident categories, "
               f"{counts.get('replay', 0)} by the replayed policy's, {counts.get('unknown', 0)} unattributed"
               if counts else "")
    table = Table(
        title=f"Thresholds from feedback: lowest reaching precision {thresholds.target_precision:.2f} "
              f"with at least {thresholds.min_support} labelled",
        caption=f"alerts: replayed texts at or above the threshold, {span}; "
                f"precision, recall and labelled count use moderator feedback on raised incidents{sources}",
    )
    table.add_column("category")
    table.add_column(f"now{f' ({policy_version})' if policy_version else ''}", justify="right")
    table.add_column("precision now", justify="right")
    table.add_column("alerts now", justify="right")
    table.add_column("suggested", justify="right")
    table.add_column("precision", justify="right")
    table.add_column("recall", justify="right")
    table.add_column("labelled", justify="right")
    table.add_column("alerts", justify="right")
    table.add_column("note")
    for s in thresholds.suggestions.values():
        table.add_row(
            s.category, _threshold(s.current_threshold), _fmt(s.current_precision),
            _alerts(s.current_volume, s.current_volume_per_day),
            _threshold(s.threshold), _fmt(s.precision), _fmt(s.recall),
            f"{s.support}/{s.labelled}" if s.threshold is not None else str(s.labelled),
            _alerts(s.volume, s.volume_per_day), s.reason,
        )
    return table


@app.command("replay")
def replay_command(
    community: Annotated[str, typer.Option("--community", help="Community to replay.")],
    candidate_policy: Annotated[Path, typer.Option("--candidate-policy", help="Candidate policy folder.")],
    since: Annotated[str | None, typer.Option(help="From this time: ISO 8601, or 24h/7d ago.")] = None,
    from_offset: Annotated[int | None, typer.Option("--from-offset", help="From this offset.")] = None,
    policy: Annotated[Path | None, typer.Option(help="Production policy folder (STEWARD_POLICY_DIR).")] = None,
    candidate_model: Annotated[Path | None, typer.Option("--candidate-model", help="Candidate model bundle.")] = None,
    model: Annotated[Path | None, typer.Option(help="Production model bundle (default bundle).")] = None,
    target_precision: Annotated[float, typer.Option(
        "--target-precision", min=0.01, max=1.0,
        help="Suggest per category the lowest threshold reaching this precision on moderator feedback.",
    )] = DEFAULT_TARGET_PRECISION,
    min_support: Annotated[int, typer.Option(
        "--min-support", min=1, help="Labelled incidents needed at or above a suggested threshold.",
    )] = DEFAULT_MIN_SUPPORT,
) -> None:
    """Replay a community's activity through the production and candidate policy, side by side,
    and suggest per category the threshold that moderator feedback supports."""
    from rich.console import Console

    from services.moderation.model.bundle import ensure_serving_bundle, load_classifier
    from services.moderation.model.registry import ModelRegistry
    from services.runtime.settings import ModerationSettings

    settings = ModerationSettings()
    moment = parse_since(since)

    async def run() -> ReplayReport:
        engine = PolicyEngine(PolicyStore(policy or settings.policy_dir))
        candidate_engine = PolicyEngine(PolicyStore(candidate_policy))
        path = model or settings.model_dir or ensure_serving_bundle(settings.model_cache)
        # A policy that pins a head bundle is replayed with it, as the service would score it.
        models = ModelRegistry(load_classifier(path), settings.model_cache)
        classifier = models.pinned(engine.policy_for(community).model) if model is None else models.default
        candidate = (load_classifier(candidate_model) if candidate_model
                     else models.pinned(candidate_engine.policy_for(community).model))
        labels, categories = await _feedback(settings, community)
        return await replay(
            settings.kafka_bootstrap, community_id=community, since=moment, from_offset=from_offset,
            classifier=classifier, engine=engine,
            feedback_labels=labels, candidate_engine=candidate_engine,
            candidate_classifier=candidate, feedback_categories=categories,
            target_precision=target_precision, min_support=min_support,
        )

    from services.moderation.model.head_bundle import BundleNotFound

    try:
        report = asyncio.run(run())
    except BundleNotFound as error:
        Console().print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    Console().print(render(report))


async def _feedback(settings, community: str) -> tuple[dict[str, bool], dict[str, list[str]]]:
    """The community's feedback labels, and the categories of its archived incidents."""
    from services.moderation.feedback import FeedbackStore
    from services.runtime.mongo import database, make_mongo

    client = make_mongo(settings)
    try:
        db = database(client, settings)
        return await FeedbackStore(db).labels_for(community), await archived_categories(db, community)
    finally:
        await client.close()


@app.command("feedback-export")
def feedback_export_command(
    community: Annotated[str, typer.Option("--community", help="Community to export.")],
    out: Annotated[Path, typer.Option("--out", help="JSONL file to write.")],
) -> None:
    """Write moderator-labelled incidents as training rows (JSONL)."""
    from rich.console import Console

    from services.moderation.feedback import read_training_rows, write_jsonl
    from services.runtime.settings import ModerationSettings

    count = write_jsonl(asyncio.run(read_training_rows(ModerationSettings(), community)), out)
    Console().print(f"{count} rows written to {out}")
