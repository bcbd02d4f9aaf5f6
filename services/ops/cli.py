"""``steward topics``, ``steward indexes`` and ``steward dead-letters``: what ops jobs run.

Light on purpose: the slim image (no model libraries) runs these as Kubernetes Jobs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from services.ops.deadletters import REPLAY_GROUP, Drain, drain
from services.runtime.settings import RuntimeSettings

console = Console()
dead_letters_app = typer.Typer(
    help="Inspect a dead-letter topic and replay it into its topic after a fix.", no_args_is_help=True
)

TopicArgument = Annotated[str, typer.Argument(help="The topic (or its .dlq), e.g. community.activity.v1.")]
GroupOption = Annotated[str, typer.Option(help="Consumer group that remembers what was replayed.")]
LimitOption = Annotated[int | None, typer.Option(min=1, help="Read at most this many dead letters.")]


def create_topics(partitions: Annotated[int, typer.Option(min=1)] = 6) -> None:
    """Create every contract topic and its dead-letter topic on STEWARD_KAFKA_BOOTSTRAP."""
    from services.runtime.broker import ensure_topics

    created = asyncio.run(ensure_topics(RuntimeSettings().kafka_bootstrap, partitions=partitions))
    console.print(f"created: {', '.join(created) or 'nothing (all exist)'}")


def create_indexes() -> None:
    """Create every MongoDB index of every service on STEWARD_MONGO_URI (existing ones are kept)."""
    from services.ops.indexes import create_all
    from services.runtime.mongo import database, make_mongo

    async def run() -> list[str]:
        settings = RuntimeSettings()
        client = make_mongo(settings)
        try:
            return await create_all(database(client, settings))
        finally:
            await client.close()

    for name in asyncio.run(run()):
        console.print(f"indexes ready: {name}")


def _report(outcome: Drain, verb: str) -> None:
    table = Table(title=f"{outcome.dlq_topic} → {outcome.target}")
    for column in ("partition", "offset", "group", "error", "message"):
        table.add_column(column)
    for letter in outcome.sample:
        why = letter.why
        table.add_row(str(letter.partition), str(letter.offset), why.get("group", ""),
                      why.get("error-type", ""), why.get("error-message", "")[:80])
    if outcome.sample:
        console.print(table)
    errors = ", ".join(f"{name}: {n}" for name, n in outcome.by_error.most_common()) or "none"
    groups = ", ".join(f"{name}: {n}" for name, n in outcome.by_group.most_common()) or "none"
    console.print(f"{verb}: {outcome.replayed if verb == 'replayed' else outcome.pending} "
                  f"(errors: {errors}; gave up: {groups})")


@dead_letters_app.command("show")
def show(topic: TopicArgument, group: GroupOption = REPLAY_GROUP, limit: LimitOption = None) -> None:
    """List the dead letters not replayed yet, with why they failed. Changes nothing."""
    outcome = asyncio.run(drain(RuntimeSettings(), topic, group=group, limit=limit))
    _report(outcome, "pending")


@dead_letters_app.command("replay")
def replay(
    topic: TopicArgument,
    group: GroupOption = REPLAY_GROUP,
    limit: LimitOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Put the pending dead letters back on their topic, committing each after the broker's ack."""
    settings = RuntimeSettings()
    if not yes:
        preview = asyncio.run(drain(settings, topic, group=group, limit=limit))
        _report(preview, "pending")
        if not preview.pending or not typer.confirm(f"replay {preview.pending} into {preview.target}?"):
            raise typer.Exit(0)
    with Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("replay", total=None)
        outcome = asyncio.run(drain(settings, topic, group=group, limit=limit, replay=True,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total)))
    _report(outcome, "replayed")


def register(app: typer.Typer) -> None:
    """Mount the ops commands on the ``steward`` command."""
    app.command("topics")(create_topics)
    app.command("indexes")(create_indexes)
    app.add_typer(dead_letters_app, name="dead-letters")
