"""``steward model general`` and ``steward model adapt``: the head a community starts from,
and that head adapted to the community from its moderators' decisions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from schemas.moderation import Sentiment
from services.moderation.model.seed import SeedExample

console = Console()


def _cache(cache: Path | None) -> Path:
    from services.runtime.settings import ModerationSettings

    return cache or ModerationSettings().model_cache


CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Model cache (default: STEWARD_HOME/models).")]


def general(
    cache: CacheOpt = None,
    per_set: Annotated[int, typer.Option("--per-set", min=100, help="Training rows per public set.")] = 4000,
) -> None:
    """Build the next version of steward-general: seed set plus the public sets when
    ../shared/datasets (or STEWARD_DATASETS) is there."""
    from services.moderation.model.encoder import SentenceEncoder
    from services.moderation.model.general import build_general_head

    cache = _cache(cache)
    encoder = SentenceEncoder.load(cache)
    with console.status("building steward-general") as status:
        folder, card = build_general_head(cache, encoder.embed, per_set=per_set,
                                          progress=lambda msg: status.update(msg))
    console.print(f"wrote {card.name}@{card.version} to {folder} ({card.train_size} examples, "
                  f"sources: {', '.join(card.training['sources'])})")


def _feedback_examples(community: str) -> list[SeedExample]:
    """The community's moderator-labelled incidents; a false positive is harmless."""
    from services.moderation.feedback import read_training_rows
    from services.runtime.settings import ModerationSettings

    rows = asyncio.run(read_training_rows(ModerationSettings(), community))
    return [SeedExample(text=row["text"], labels=frozenset(row["labels"]), sentiment=Sentiment.neutral,
                        group=f"feedback:{row['incident_id']}", handwritten=True)
            for row in rows]


def _report_table(report: dict) -> Table:
    table = Table(title="5-fold cross-validation on the community's examples")
    for column in ("category", "harmful", "not", "AUC before", "AUC after",
                   "recall", "false alerts before", "after"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for category, r in report.items():
        table.add_row(category, str(r["positives"]), str(r["negatives"]), f"{r['base_roc_auc']:.3f}",
                      f"{r['adapted_roc_auc']:.3f}", f"{r['recall']:.2f}", str(r["base_false_positives"]),
                      str(r["adapted_false_positives"]))
    return table


def adapt(
    community: Annotated[str, typer.Option("--community", help="The community (its policy file name).")],
    from_feedback: Annotated[bool, typer.Option("--from-feedback",
                                                help="Use the moderator feedback stored for the community.")] = False,
    data: Annotated[list[Path] | None, typer.Option("--data", help="Labeled .csv/.jsonl file (repeatable).")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="Label mapping (YAML) for --data.")] = None,
    base: Annotated[str | None, typer.Option("--base", help="Head bundle to adapt (name@version); "
                                             "default: the latest steward-general.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Bundle name (default: the community).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0,
                                             help="The policy threshold the report compares at.")] = 0.5,
    cache: CacheOpt = None,
) -> None:
    """Adapt a head bundle to one community from labelled examples; writes its next version."""
    from services.moderation.model.adapt import (
        adapt_head,
        cross_validate,
        labelled_categories,
    )
    from services.moderation.model.datasets import (
        DatasetError,
        load_datasets,
        parse_mapping,
    )
    from services.moderation.model.encoder import SentenceEncoder
    from services.moderation.model.general import GENERAL_NAME
    from services.moderation.model.head_bundle import (
        BundleNotFound,
        head_path,
        latest_ref,
        read_head,
        write_head_bundle,
    )
    from services.moderation.model.train import examples_hash

    cache = _cache(cache)
    examples: list[SeedExample] = []
    try:
        if data:
            if mapping is None:
                raise DatasetError("--data needs --mapping (which column is the text, which the labels)")
            examples += load_datasets(data, parse_mapping(mapping))
        if from_feedback:
            examples += _feedback_examples(community)
    except DatasetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not data and not from_feedback:
        console.print("[red]error:[/red] give --from-feedback, --data (with --mapping), or both")
        raise typer.Exit(2)
    if not labelled_categories(examples):
        console.print(f"[red]error:[/red] {len(examples)} examples: no category has at least 5 harmful "
                      "and 5 harmless ones, so there is nothing to adapt")
        raise typer.Exit(2)
    base = base or latest_ref(cache, GENERAL_NAME)
    if base is None:
        console.print("[red]error:[/red] no base head bundle: run `steward model general` first, or give --base")
        raise typer.Exit(2)
    try:
        base_head, _ = read_head(head_path(cache, base))
    except (BundleNotFound, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None

    encoder = SentenceEncoder.load(cache)
    with console.status(f"encoding {len(examples)} examples"):
        features = encoder.embed([ex.text for ex in examples])
    report = cross_validate(base_head, features, examples, threshold=threshold)
    head = adapt_head(base_head, features, examples)
    folder, card = write_head_bundle(
        cache, name or community, head, train_size=len(examples), data_hash=examples_hash(examples),
        metrics={"cross_validation": report}, base=base, community=community,
        training={"recipe": "logistic regression on embedding + base logit, per category",
                  "from_feedback": from_feedback},
        data_files=[str(p) for p in data or []] + (["moderator feedback"] if from_feedback else []),
    )
    console.print(_report_table(report))
    before = sum(r["base_false_positives"] for r in report.values())
    after = sum(r["adapted_false_positives"] for r in report.values())
    if before:
        console.print(f"At the recall {base} had at {threshold}, false alerts on these examples go from "
                      f"{before} to {after} ({(after - before) / before:+.0%}), measured out of fold.")
    console.print(f"wrote {card.name}@{card.version} to {folder}")
    console.print(f"To use it, set [bold]model: {card.name}@{card.version}[/bold] in the community's policy.")
