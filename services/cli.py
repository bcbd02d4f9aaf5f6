"""``steward``: run the local stack, replay the demo, build the model, export contracts."""

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.ingest.github_redeliver import app as github_app
from services.metrics.cli import app as metrics_app
from services.moderation.model.lifecycle import app as lifecycle_app
from services.moderation.replay import app as moderation_app
from services.ops.cli import register as register_ops

app = typer.Typer(help="Steward: trust & safety and community health.", no_args_is_help=True)
model_app = lifecycle_app  # train, eval, export; `build` is added below
schemas_app = typer.Typer(help="Contracts: JSON Schema and AsyncAPI documents.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(schemas_app, name="schemas")
app.add_typer(github_app, name="github")
app.add_typer(moderation_app, name="moderation", help="Replay activity against a candidate; export feedback.")
app.add_typer(metrics_app, name="metrics")
register_ops(app)
console = Console()

HomeOption = Annotated[Path, typer.Option(help="State folder (STEWARD_HOME).", envvar="STEWARD_HOME")]
DEFAULT_HOME = Path(".steward")


def build_default_model(home: Path) -> Path:
    from services.moderation.model.bundle import ensure_serving_bundle

    with console.status("building the default moderation model (cached after the first run)"):
        started = time.monotonic()
        path = ensure_serving_bundle(home / "models")
    console.print(f"model bundle: {path} ({time.monotonic() - started:.1f}s)")
    return path


@app.command()
def up(
    home: HomeOption = DEFAULT_HOME,
    demo: Annotated[bool, typer.Option(help="Replay the demo community once everything is up.")] = False,
    durable_broker: Annotated[bool, typer.Option(
        help="tansu stores to a local S3-compatible server (moto) and keeps its data across its own "
             "restarts; slower than memory.")] = False,
) -> None:
    """Start tansu, nx-27017, an SMTP sink and the four services; Ctrl-C stops them all.

    The default model bundle is built first (cached), unless STEWARD_MODEL_DIR names one.
    """
    from services.localstack.stack import LocalStack
    from services.runtime.settings import ModerationSettings

    model_dir = ModerationSettings(home=home).model_dir or build_default_model(home)
    stack = LocalStack(home, durable_broker=durable_broker,
                       service_env={"STEWARD_MODEL_DIR": str(Path(model_dir).resolve())})
    # Ctrl-C and SIGTERM both stop cleanly, even when started where SIGINT is inherited as
    # ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with console.status("starting tansu, nx-27017 and the SMTP sink"):
            stack.start_infrastructure()
        with console.status("starting ingest, moderation, metrics and notifier"):
            stack.start_services()
        table = Table("part", "where", title="Steward is up")
        ep = stack.endpoints
        table.add_row("kafka (tansu)", ep.kafka + (f" on S3 at {stack.object_store}" if durable_broker else ""))
        table.add_row("mongodb (nx-27017)", ep.mongo_uri)
        table.add_row("smtp sink", f"127.0.0.1:{ep.smtp_port} -> {stack.folder / 'mail'}")
        for name, url in ep.services.items():
            table.add_row(name, url)
        console.print(table)
        console.print(f"logs: {stack.folder / 'logs'}; alerts print in notifier.log without a Slack URL")
        if demo:
            run_demo(home)
        console.print("[bold]Ctrl-C stops everything.[/bold]")
        while all(child.running for child in stack.children):
            time.sleep(0.5)
        dead = [c for c in stack.children if not c.running]
        console.print(f"[red]{', '.join(c.name for c in dead)} exited; stopping the stack[/red]")
        for child in dead:
            console.print(child.tail())
        raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("stopping"):
            stack.stop()
        console.print("stopped")


@app.command()
def demo(home: HomeOption = DEFAULT_HOME) -> None:
    """Replay the demo community through signed ingest; print its incidents and KPIs."""
    run_demo(home)


def run_demo(home: Path) -> None:
    from schemas import topics
    from services.demo.community import COMMUNITY_ID, demo_week
    from services.demo.replay import (
        incidents_now,
        send_events,
        wait_for_kpis,
        wait_until_consumed,
    )
    from services.localstack.stack import Endpoints
    from services.moderation.app import GROUP_ID as MODERATION_GROUP

    endpoints_file = home / "stack" / "endpoints.json"
    if not endpoints_file.exists():
        console.print(f"[red]no running stack found ({endpoints_file}); start it with 'steward up'[/red]")
        raise typer.Exit(2)
    ep = Endpoints.load(endpoints_file)
    week = demo_week()
    messages = sum(e["kind"] == "message_posted" for e in week.events)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("sending signed webhooks", total=len(week.events))
        send_events(ep.services["ingest"], ep.generic_secret, week.events,
                    on_batch=lambda n: progress.advance(task, n))
    with console.status("waiting until moderation has read every event"):
        asyncio.run(wait_until_consumed(ep.kafka, MODERATION_GROUP, topics.ACTIVITY))
    with console.status("waiting until every message is counted and classified"):
        kpis = wait_for_kpis(ep.services["metrics"], COMMUNITY_ID, week.first_day.isoformat(),
                             week.last_day.isoformat(), messages=messages)
    incidents = incidents_now(ep.kafka, COMMUNITY_ID)

    table = Table("severity", "rule", "member", "channel", "text", title=f"Incidents raised ({len(incidents)})")
    for incident in incidents:
        table.add_row(incident.severity.value, incident.rule, incident.evidence.member_id,
                      incident.channel_id or "", (incident.evidence.text or "")[:70])
    console.print(table)
    kpi_table = Table(title=f"KPIs of {COMMUNITY_ID}")
    kpi_table.add_column("day", no_wrap=True, min_width=10)
    for header in ("DAU", "msgs", "replies", "reacts", "joins", "leaves", "classified", "flagged"):
        kpi_table.add_column(header, justify="right")
    for day in kpis["days"]:
        kpi_table.add_row(*(str(day[k]) for k in ("day", "dau", "messages", "replies", "reactions",
                                                  "joins", "leaves", "classified", "flagged")))
    console.print(kpi_table)


@model_app.command("build")
def model_build(home: HomeOption = DEFAULT_HOME) -> None:
    """Build (or reuse) the default bundle (MiniLM with a head trained on the seed set) and its int8 ONNX export."""
    build_default_model(home)


@schemas_app.command("export")
def schemas_export(
    check: Annotated[bool, typer.Option(help="Fail if the committed files differ instead of writing.")] = False,
) -> None:
    """Write schemas/jsonschema/*.json from the contract models."""
    from schemas.export import JSONSCHEMA_DIR, drifted, write_all

    if check:
        stale = drifted()
        if stale:
            console.print(f"[red]out of date: {', '.join(stale)}; run 'steward schemas export'[/red]")
            raise typer.Exit(1)
        console.print("JSON Schema files match the models")
        return
    for path in write_all():
        console.print(f"wrote {path.relative_to(JSONSCHEMA_DIR.parent.parent)}")


@schemas_app.command("asyncapi")
def schemas_asyncapi(
    out: Annotated[Path, typer.Option(help="Folder for <service>.asyncapi.json.")] = Path("docs/asyncapi"),
) -> None:
    """Generate the AsyncAPI 3.0 document of every FastStream service."""
    import importlib

    out.mkdir(parents=True, exist_ok=True)
    for name in ("ingest", "moderation", "metrics", "notifier"):
        service = importlib.import_module(f"services.{name}.app").create_service()
        path = out / f"{name}.asyncapi.json"
        path.write_text(json.dumps(service.asyncapi(), indent=2, sort_keys=True) + "\n")
        console.print(f"wrote {path}")


if __name__ == "__main__":
    app()
