"""``omnirelay batches list|show ID|watch ID``: batch jobs from the command line, read from the database the config
(or OMNIRELAY_DATABASE_URL) names, so no running gateway is needed. ``watch`` draws a live progress bar (done
of total, requests per second, cost so far, ETA) until the batch ends."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from omnirelay.core.batches import BatchJob
from omnirelay.state.cli import ConfigOption, JsonOption, table, with_store
from omnirelay.state.keys import to_usd
from omnirelay.state.store import Store

batches_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Inspect and follow batch jobs.")

COLUMNS = ["id", "api", "endpoint", "status", "total", "done", "failed", "cost", "key_id", "created"]


def summary(j: BatchJob) -> dict[str, Any]:
    c = j.counts
    return {
        "id": j.id,
        "api": j.api,
        "endpoint": j.endpoint,
        "status": j.status,
        "total": c.total,
        "done": c.succeeded,
        "failed": c.errored,
        "canceled": c.canceled,
        "expired": c.expired,
        "processing": c.processing,
        "cost": to_usd(c.cost_units),
        "reserved": to_usd(j.reserved_units),
        "key_id": j.key_id,
        "models": j.models,
        "created": datetime.fromtimestamp(j.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "output_file_id": j.output_file_id,
        "error_file_id": j.error_file_id,
    }


@batches_app.command("list")
def list_batches(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(help="most recent batches shown")] = 20,
    key: Annotated[str | None, typer.Option(help="only this key's batches")] = None,
    as_json: JsonOption = False,
) -> None:
    """The most recent batches of every key (or of one), newest first."""

    async def work(store: Store) -> list[BatchJob]:
        return await store.batches.page(key, None, limit=limit, all_owners=key is None)

    rows = [summary(j) for j in with_store(config, work)]
    typer.echo(msgspec.json.encode(rows).decode() if as_json else table(rows, COLUMNS))


def _get(config: Path | None, batch_id: str) -> BatchJob:
    async def work(store: Store) -> BatchJob | None:
        return await store.batches.get_any(batch_id)

    job = with_store(config, work)
    if job is None:
        typer.echo(f"omnirelay: no batch {batch_id}", err=True)
        raise typer.Exit(1)
    return job


@batches_app.command("show")
def show(batch_id: str, config: ConfigOption = None) -> None:
    """One batch: status, counts, cost so far, result files (JSON)."""
    job = _get(config, batch_id)
    out = summary(job)
    out["timestamps"] = {
        name: getattr(job, name)
        for name in ("created_at", "in_progress_at", "finalizing_at", "completed_at", "cancelling_at", "cancelled_at")
        if getattr(job, name) is not None
    }
    out["metadata"] = job.metadata
    typer.echo(msgspec.json.format(msgspec.json.encode(out)).decode())


def _describe(j: BatchJob, rate: float) -> str:
    c = j.counts
    settled = c.total - c.processing
    left = c.processing
    eta = f"{left / rate:.0f}s" if rate > 0 and left else "-"
    return (
        f"{j.status:<11} ok {c.succeeded} failed {c.errored} canceled {c.canceled} expired {c.expired}"
        f" | {rate:.1f} req/s | ${to_usd(c.cost_units):.6f} | ETA {eta} | {settled}/{c.total}"
    )


@batches_app.command("watch")
def watch(
    batch_id: str,
    config: ConfigOption = None,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
) -> None:
    """Follow a batch with a live progress bar until it ends."""
    console = Console()

    async def work(store: Store) -> BatchJob:
        return await _follow(store, batch_id, interval, console)

    job = with_store(config, work)
    console.print(_describe(job, 0.0).split(" | ")[0] + f" | ${to_usd(job.counts.cost_units):.6f}")


async def _follow(store: Store, batch_id: str, interval: float, console: Console) -> BatchJob:
    job = await store.batches.get_any(batch_id)
    if job is None:
        console.print(f"omnirelay: no batch {batch_id}")
        raise typer.Exit(1)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    started = time.monotonic()
    first = job.counts.total - job.counts.processing
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job.id, total=max(job.counts.total, 1))
        while True:
            settled = job.counts.total - job.counts.processing
            elapsed = time.monotonic() - started
            rate = (settled - first) / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=settled, description=_describe(job, rate))
            if job.ended:
                return job
            await asyncio.sleep(interval)
            job = await store.batches.get_any(batch_id) or job
