"""``steward model``: train a bundle on labeled files, evaluate it, export it to ONNX."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from services.moderation.model import community_cli
from services.moderation.model.datasets import (
    DatasetError,
    load_datasets,
    parse_mapping,
)

app = typer.Typer(help="Train, evaluate and export moderation model bundles.",
                  no_args_is_help=True)
console = Console()


class Mode(StrEnum):
    head = "head"
    finetune = "finetune"


# head: the default recipe (top 2 layers + head on cached lower layers);
# finetune: every encoder layer trains (only the embeddings stay frozen and cached).
FINETUNE_LAYERS = 6

DataOpt = Annotated[list[Path], typer.Option("--data", help="Labeled .csv/.tsv/.jsonl file (repeatable).")]
MappingOpt = Annotated[Path, typer.Option("--mapping", help="Label mapping (YAML).")]


def _load(data: list[Path], mapping: Path):
    try:
        return load_datasets(data, parse_mapping(mapping))
    except DatasetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def train(
    data: DataOpt,
    mapping: MappingOpt,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write.")],
    mode: Annotated[Mode, typer.Option("--mode", help="head (fast) or finetune (all layers).")] = Mode.head,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Bundle name in the card.")] = None,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.9,
                                           help="Share of rows held out for the card's metrics.")] = 0.25,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
) -> None:
    """Train a bundle on labeled files and write it (with bundle.json) to --out."""
    from dataclasses import replace

    from services.moderation.model.train import TrainConfig, build_bundle

    examples = _load(data, mapping)
    config = TrainConfig(holdout=holdout)
    if mode is Mode.finetune:
        config = replace(config, train_layers=FINETUNE_LAYERS)
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if batch_size is not None:
        config = replace(config, batch_size=batch_size)
    console.print(f"{len(examples)} examples from {len(data)} file(s); mode {mode.value}, "
                  f"{config.train_layers} trainable layers, {config.epochs} epochs")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("loading model", total=config.epochs + 4)

        def say(msg: str) -> None:
            progress.update(task, description=msg, advance=1)

        try:
            card = build_bundle(out, seed=seed, config=config, progress=say, examples=examples,
                                name=name or f"steward-custom-{mode.value}",
                                data_files=[str(p) for p in data])
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        progress.update(task, completed=config.epochs + 4)
    console.print(f"wrote {card.name} {card.version} to {out} "
                  f"({card.train_size} train, {card.heldout_size} held out)")
    if card.metrics.get("macro_roc_auc") is not None:
        console.print(f"held-out macro ROC-AUC {card.metrics['macro_roc_auc']}")


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def metrics_table(metrics: dict, title: str = "moderation metrics") -> Table:
    table = Table(title=title)
    for col in ("category", "pos", "ROC-AUC", "PR-AUC", "precision", "recall", "F1", "ECE"):
        table.add_column(col, justify="left" if col == "category" else "right")
    for cat, m in metrics["categories"].items():
        table.add_row(cat, str(m["positives"]), *(_fmt(m[k]) for k in
                      ("roc_auc", "pr_auc", "precision", "recall", "f1", "ece")))
    macro = metrics["macro"]
    table.add_row("[bold]macro[/bold]", "", _fmt(macro["roc_auc"]), _fmt(macro["pr_auc"]), "", "",
                  _fmt(macro["f1"]), _fmt(macro["ece"]))
    return table


@app.command("eval")
def eval_(
    bundle: Annotated[Path, typer.Option("--bundle", help="Bundle folder (torch or ONNX export).")],
    data: DataOpt,
    mapping: MappingOpt,
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0)] = 0.5,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics here.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
) -> None:
    """Evaluate a bundle on labeled files: per-category ROC-AUC, PR-AUC, F1, ECE."""
    from services.moderation.model.bundle import load_classifier
    from services.moderation.model.evaluation import evaluate_classifier

    examples = _load(data, mapping)
    try:
        classifier = load_classifier(bundle, threads=threads)
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] cannot load bundle {bundle}: {exc}")
        raise typer.Exit(2) from None
    metrics = evaluate_classifier(classifier, examples, threshold)
    metrics["bundle"] = {"path": str(bundle), "name": classifier.name, "version": classifier.version,
                         "runtime": type(classifier).__name__}
    metrics["data_files"] = [str(p) for p in data]
    console.print(metrics_table(metrics, f"{classifier.name} {classifier.version} "
                                f"on {len(examples)} examples (threshold {threshold})"))
    if metrics["sentiment_accuracy"] is not None:
        console.print(f"sentiment accuracy {metrics['sentiment_accuracy']:.3f}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command()
def export(
    bundle: Annotated[Path, typer.Option("--bundle", help="Torch bundle folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the ONNX export.")],
    no_int8: Annotated[bool, typer.Option("--no-int8", help="Skip the int8 quantized model.")] = False,
) -> None:
    """Export a bundle to ONNX (fp32 plus, unless --no-int8, dynamically quantized int8)."""
    from services.moderation.model.onnx_export import export_onnx

    if not (bundle / "bundle.json").is_file():
        console.print(f"[red]error:[/red] {bundle} is not a bundle (no bundle.json)")
        raise typer.Exit(2)
    with console.status("exporting to ONNX"):
        export_onnx(bundle, out, quantize=not no_int8)
    console.print(f"exported {bundle} to {out}")


app.command()(community_cli.general)
app.command()(community_cli.adapt)


if __name__ == "__main__":
    app()
