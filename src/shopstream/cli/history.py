"""``shopstream backup``: consistent dumps with a manifest, and restores into an empty
database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shopstream.cli import _databases, _mapping_choice, _run_embedded_source, console, err
from shopstream.schema import InputFormat
from shopstream.settings import Settings
from shopstream.store.server import EmbeddedDatabaseError

if TYPE_CHECKING:
    from shopstream.store.rebuild import DayRange, RangeRebuilt

backup_app = typer.Typer(no_args_is_help=True, help="Back up and restore the database.")


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")
    app.command()(rebuild)
    app.command()(backfill)


@backup_app.command("create")
def backup_create(
    folder: Annotated[Path, typer.Argument(help="A new folder for the dump and manifest.")],
    base: Annotated[
        bool,
        typer.Option(
            "--base", help="A physical base backup for point-in-time recovery (embedded)."
        ),
    ] = False,
) -> None:
    """A consistent, parallel pg_dump (directory format) plus manifest.json; or with
    --base a base backup that the WAL archive rolls forward to any later moment."""
    from shopstream.store.backup import BackupError, create, create_base
    from shopstream.store.connection import embedded_server

    settings = Settings()
    if base and settings.database_url:
        err.print(
            "[red]backup failed:[/red] --base backs up the embedded server; for an external"
            " PostgreSQL use its own point-in-time recovery (pgBackRest, Barman, the provider's)"
        )
        raise typer.Exit(2)
    with _databases(settings) as urls:
        try:
            manifest = (
                create_base(embedded_server(settings), urls("owner"), folder)
                if base
                else create(urls("owner"), folder, settings.pg_bin)
            )
        except BackupError as error:
            err.print(f"[red]backup failed:[/red] {error}")
            raise typer.Exit(1) from error
    rows = sum(manifest.tables.values())
    console.print(
        f"backup in {folder}: {len(manifest.tables)} tables, {rows:,} rows,"
        f" migration {manifest.migration}, PostgreSQL {manifest.server_version}"
    )


@backup_app.command("restore")
def backup_restore(
    folder: Annotated[Path, typer.Argument(help="A folder `backup create` wrote.")],
    until: Annotated[
        datetime | None,
        typer.Option(
            help="Base backups: recover to this moment (UTC unless it says).",
            formats=[
                "%Y-%m-%dT%H:%M:%S.%f%z",
                "%Y-%m-%dT%H:%M:%S%z",
                "%Y-%m-%dT%H:%M:%S.%f",
                "%Y-%m-%dT%H:%M:%S",
            ],
        ),
    ] = None,
) -> None:
    """Restore into an empty database, check every table's rows, then migrate. A base
    backup becomes a new embedded server, rolled forward through the WAL archive to
    --until (default: as far as the archive goes)."""
    from shopstream.store.backup import BackupError, Manifest, recover, restore
    from shopstream.store.connection import connect, embedded_server
    from shopstream.store.migrate import migrate

    settings = Settings()
    try:
        kind = Manifest.read(folder).kind
    except BackupError as error:
        err.print(f"[red]restore failed:[/red] {error}")
        raise typer.Exit(1) from error
    if kind == "base":
        moment = until.replace(tzinfo=until.tzinfo or UTC) if until else None
        server = embedded_server(settings)
        try:
            manifest = recover(server, folder, moment, settings.wal_archive)
            with _databases(settings) as urls, connect(urls("owner")) as conn:
                migrate(conn)
        except (BackupError, EmbeddedDatabaseError) as error:
            err.print(f"[red]restore failed:[/red] {error}")
            raise typer.Exit(1) from error
        finally:
            server.stop()
        console.print(
            f"recovered {folder} (base taken {manifest.created_at})"
            f" to {moment.isoformat() if moment else 'the end of the WAL archive'}"
        )
        return
    if until is not None:
        err.print("[red]restore failed:[/red] --until needs a base backup (create --base)")
        raise typer.Exit(2)
    with _databases(settings, migrate=False) as urls:
        try:
            manifest = restore(urls("owner"), folder, settings.pg_bin)
        except BackupError as error:
            err.print(f"[red]restore failed:[/red] {error}")
            raise typer.Exit(1) from error
        with connect(urls("owner")) as conn:
            migrate(conn)  # roles and grants, and anything newer than the backup
    console.print(
        f"restored {folder} (taken {manifest.created_at}): {len(manifest.tables)} tables,"
        f" {sum(manifest.tables.values()):,} rows, counts checked"
    )


@backup_app.command("list")
def backup_list(
    root: Annotated[Path, typer.Argument(help="A folder holding backup folders.")],
) -> None:
    """The backups under ROOT, oldest first."""
    from shopstream.store.backup import listing

    table = Table("backup", "taken", "migration", "rows", "PostgreSQL")
    for folder, manifest in listing(root):
        table.add_row(
            folder.name, manifest.created_at[:19].replace("T", " "), str(manifest.migration),
            f"{sum(manifest.tables.values()):,}", manifest.server_version,
        )  # fmt: skip
    console.print(table)


def rebuild(
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Events folded at once (memory follows this).")
    ] = 500_000,
    first: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First UTC day to rebuild."),
    ] = None,
    last: Annotated[
        datetime | None,
        typer.Option("--to", formats=["%Y-%m-%d"], help="Last UTC day to rebuild (included)."),
    ] = None,
) -> None:
    """Recompute rollups, sessions, funnels and customer metrics from events (one
    transaction; the dashboard shows the old figures until it commits). Days retention
    moved to the lake are read from the lake. With --from/--to, only what those days'
    events feed: their minute, product and funnel rows, and their customers' metrics and
    sessions from all of those customers' events."""
    from shopstream.store.rebuild import DayRange

    days = None
    if first is not None or last is not None:
        try:
            days = DayRange(
                (first or datetime.min).date(), (last or datetime.max - timedelta(days=1)).date()
            )
        except ValueError as error:
            err.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from error
    with _databases(Settings()) as urls:
        outcome = _rebuilt(urls("ingest"), chunk_rows, days)
    if isinstance(outcome, int):
        console.print(f"rebuilt the derived tables from {outcome:,} events")
    else:
        assert days is not None
        span = (
            f"{days.first} to {days.last}"
            if first and last
            else f"from {days.first} on"
            if first
            else f"up to {days.last}"
        )
        console.print(
            f"rebuilt {span}: {outcome.events:,} events into the"
            f" minute, product and funnel rows; {outcome.customers:,} customers' metrics and"
            f" sessions from their {outcome.customer_events:,} events"
        )


def _rebuilt(url: str, chunk_rows: int, days: DayRange | None = None) -> int | RangeRebuilt:
    """Rebuild with the lake's archived days; a failure exits 1, nothing changed."""
    from deltalake.exceptions import DeltaError

    from shopstream.errors import TerminalError
    from shopstream.lake.history import archived_events
    from shopstream.store.connection import connect
    from shopstream.store.rebuild import rebuild as rebuild_derived
    from shopstream.store.rebuild import rebuild_range

    try:
        with connect(url) as conn, connect(url) as reader:
            reader.autocommit = True
            if days is None:
                return rebuild_derived(conn, reader, chunk_rows, archived_events)
            return rebuild_range(conn, reader, days, chunk_rows, archived_events)
    except (TerminalError, DeltaError, OSError) as error:
        err.print(f"[red]rebuild failed, nothing changed:[/red] {error}")
        raise typer.Exit(1) from error


def backfill(
    source: Annotated[
        str, typer.Option(help="Directory of history files, or kafka://BOOTSTRAP/TOPIC[,TOPIC…].")
    ],
    input_format: Annotated[
        InputFormat | None, typer.Option("--format", help="Files: accept only this format.")
    ] = None,
    mapping: Annotated[Path | None, typer.Option(help="A mapping file (TOML).")] = None,
    group: Annotated[str, typer.Option(help="Kafka consumer group.")] = "shopstream-backfill",
) -> None:
    """Load history exactly once with the rollups deferred, then fold every deferred batch
    into the derived tables in one set-based pass (rebuild). Rerun after a crash anywhere:
    it loads what is left, then rebuilds."""
    from shopstream.sources.select import parse_kafka
    from shopstream.store.connection import connect
    from shopstream.store.rebuild import (
        CHUNK_ROWS,
        holds_every_event,
        pending_batches,
        pending_days,
    )

    try:
        kafka = parse_kafka(source)
    except ValueError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    settings = Settings(rollups=False)
    choice = _mapping_choice(settings, input_format, mapping)
    _run_embedded_source(
        settings, Path(source) if kafka is None else kafka, until_idle=True, choice=choice,
        input_format=input_format, group=group,
    )  # fmt: skip
    with _databases(settings) as urls:
        with connect(urls("ingest")) as conn:
            pending, days = pending_batches(conn), pending_days(conn)
            everything = days is not None and holds_every_event(conn, days)
        if days is None:
            console.print("backfill: nothing deferred, derived tables current")
            return
        outcome = _rebuilt(urls("ingest"), CHUNK_ROWS, None if everything else days)
    done = (
        f"backfill: {pending:,} deferred batches folded (their events: {days.first} to {days.last})"
    )
    if isinstance(outcome, int):
        console.print(f"{done}; derived tables rebuilt from all {outcome:,} events")
    else:
        console.print(
            f"{done}; rebuilt those days: {outcome.events:,} events into the minute, product"
            f" and funnel rows, {outcome.customers:,} customers' metrics and sessions from"
            f" their {outcome.customer_events:,} events"
        )
