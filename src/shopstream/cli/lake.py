"""``shopstream lake`` (export, optimize, vacuum, query) and ``shopstream retention``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

import typer
from rich.table import Table

from shopstream.cli import _database, console, err
from shopstream.cli.operations import report_runs
from shopstream.settings import Settings

lake_app = typer.Typer(
    no_args_is_help=True, help="The lake archive: Delta tables on a folder or S3."
)
retention_app = typer.Typer(no_args_is_help=True, help="What leaves PostgreSQL, and when.")


_EMPTY = "the lake at {root} holds no tables yet: `shopstream lake export` fills it"


def register(app: typer.Typer) -> None:
    app.add_typer(lake_app, name="lake")
    app.add_typer(retention_app, name="retention")


@lake_app.command("export")
def lake_export() -> None:
    """Export every committed batch the lake lacks (events, quarantine), exactly once."""
    from shopstream.jobs.catalog import Jobs

    settings = Settings()
    with _database(settings, "ingest") as url:
        records = Jobs(settings, url).run("lake")
    for record in records:
        for table in ("events", "quarantine"):
            if table in record.details:
                done = record.details[table]
                console.print(
                    f"  {table}: {done['rows']:,} rows from {done['batches']:,} batches in"
                    f" {done['commits']} commit(s); Delta version {done['delta_version']}"
                )
    report_runs(records)


@lake_app.command("optimize")
def lake_optimize() -> None:
    """Compact the small files exports leave (Delta's OPTIMIZE)."""
    from shopstream.lake.location import Lake
    from shopstream.lake.maintenance import optimize

    lake = Lake.from_settings(Settings())
    results = optimize(lake)
    if not results:
        console.print(_EMPTY.format(root=lake.root))
    for name, result in results.items():
        console.print(
            f"{name}: {result['files_removed']} files compacted into {result['files_added']};"
            f" version {result['version']}"
        )


@lake_app.command("vacuum")
def lake_vacuum(
    retention_hours: Annotated[
        int, typer.Option(min=0, help="Keep files unreferenced for less than this.")
    ] = 168,
    dry_run: Annotated[bool, typer.Option(help="List, delete nothing.")] = False,
) -> None:
    """Delete files no version within the retention references (Delta's VACUUM)."""
    from deltalake.exceptions import DeltaError

    from shopstream.lake.location import Lake
    from shopstream.lake.maintenance import vacuum

    try:
        removed = vacuum(
            Lake.from_settings(Settings()), retention_hours=retention_hours, dry_run=dry_run
        )
    except DeltaError as error:
        err.print(f"[red]vacuum refused:[/red] {error}")
        raise typer.Exit(1) from error
    for name, files in removed.items():
        console.print(f"{name}: {len(files)} files {'to delete' if dry_run else 'deleted'}")


@lake_app.command("query")
def lake_query(
    statement: Annotated[str, typer.Argument(help="SQL over the views events, quarantine.")],
    output: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
) -> None:
    """Query the lake with DuckDB (its Delta reader); PostgreSQL is not involved."""
    import duckdb
    import polars as pl

    from shopstream.lake.location import LAKE_TABLES, Lake
    from shopstream.lake.query import query

    lake = Lake.from_settings(Settings())
    try:
        result = pl.from_arrow(query(lake, statement))
    except duckdb.Error as error:
        err.print(f"[red]query failed:[/red] {error}")
        if all(lake.open(name) is None for name in LAKE_TABLES):
            err.print(_EMPTY.format(root=lake.root))
        raise typer.Exit(1) from error
    assert isinstance(result, pl.DataFrame)
    if output == "csv":
        sys.stdout.write(result.write_csv())
    elif output == "json":
        sys.stdout.write(json.dumps(result.to_dicts(), default=str) + "\n")
    else:
        table = Table(*result.columns)
        for row in result.iter_rows():
            table.add_row(*("" if v is None else str(v) for v in row))
        console.print(table)


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[bool, typer.Option(help="Count what would leave; change nothing.")] = False,
) -> None:
    """Archive to the lake, verify, then delete what the SHOPSTREAM_RETENTION_* policies
    say; nothing is deleted that the lake does not hold (exit 1)."""
    from shopstream.jobs.catalog import Jobs

    settings = Settings()
    with _database(settings, "ingest") as url:
        records = Jobs(settings, url, dry_run=dry_run).run("retention")
    for record in records:
        for table, count in record.details.get("removed", {}).items():
            verb = "would leave" if dry_run else "left"
            console.print(f"  {table}: {count:,} rows {verb}")
    report_runs(records)
