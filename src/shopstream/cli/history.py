"""``shopstream backup``: consistent dumps with a manifest, and restores into an empty
database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shopstream.cli import _databases, console, err
from shopstream.settings import Settings

backup_app = typer.Typer(no_args_is_help=True, help="Back up and restore the database.")


def register(app: typer.Typer) -> None:
    app.add_typer(backup_app, name="backup")
    app.command()(rebuild)


@backup_app.command("create")
def backup_create(
    folder: Annotated[Path, typer.Argument(help="A new folder for the dump and manifest.")],
) -> None:
    """A consistent, parallel pg_dump (directory format) plus manifest.json."""
    from shopstream.store.backup import BackupError, create

    settings = Settings()
    with _databases(settings) as urls:
        try:
            manifest = create(urls("owner"), folder, settings.pg_bin)
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
) -> None:
    """Restore into an empty database, check every table's rows, then migrate."""
    from shopstream.store.backup import BackupError, restore
    from shopstream.store.connection import connect
    from shopstream.store.migrate import migrate

    settings = Settings()
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
    ] = 200_000,
) -> None:
    """Recompute rollups, sessions, funnels and customer metrics from events (one
    transaction; the dashboard shows the old figures until it commits)."""
    from shopstream.store.connection import connect
    from shopstream.store.rebuild import rebuild as rebuild_derived

    with _databases(Settings()) as urls, connect(urls("ingest")) as conn:
        folded = rebuild_derived(conn, chunk_rows)
    console.print(f"rebuilt the derived tables from {folded:,} events")
