"""The ``shopstream`` command: thin wiring from options to the stage packages."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from shopstream.schema import InputFormat
from shopstream.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Manage the database (embedded or external).")
quarantine_app = typer.Typer(no_args_is_help=True, help="Inspect and replay quarantined input.")
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")
console = Console()
err = Console(stderr=True)


@app.callback()
def _configure(
    log_level: Annotated[str, typer.Option(envvar="SHOPSTREAM_LOG_LEVEL")] = "INFO",
) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, rich_tracebacks=False)],
    )


def main() -> None:
    app()


@contextmanager
def _database(settings: Settings, *, migrate: bool = True) -> Iterator[str]:
    from shopstream.store.connection import connect, database_url
    from shopstream.store.embedded import EmbeddedDatabaseError
    from shopstream.store.migrate import migrate as apply_migrations

    try:
        with database_url(settings) as url:
            if migrate:
                with connect(url) as conn:
                    apply_migrations(conn)
            yield url
    except (EmbeddedDatabaseError, psycopg.OperationalError) as error:
        err.print(f"[red]database unavailable:[/red] {error}")
        raise typer.Exit(2) from error


# -- generate ------------------------------------------------------------------------------


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory the files are written to.")],
    events: Annotated[int | None, typer.Option(help="Write a backlog of N events.")] = None,
    rate: Annotated[float | None, typer.Option(help="Live mode: events per second.")] = None,
    duration: Annotated[float | None, typer.Option(help="Live mode: stop after S s.")] = None,
    seed: Annotated[int | None, typer.Option(help="Reproducible output.")] = None,
    fmt: Annotated[InputFormat, typer.Option("--format")] = InputFormat.SEED,
    dirty: Annotated[float, typer.Option(min=0, max=1, help="Share of bad rows.")] = 0.0,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share re-sent.")] = 0.0,
    late: Annotated[float, typer.Option(min=0, max=1, help="Share arriving late.")] = 0.0,
    file_rows: Annotated[int, typer.Option(min=1, help="Rows per file (backlog).")] = 10_000,
    interval: Annotated[float, typer.Option(help="Live mode: seconds per file.")] = 0.2,
    start: Annotated[
        datetime | None,
        typer.Option(help="Backlog start (UTC); default now-1d, or fixed with a seed"),
    ] = None,
    gzip: Annotated[bool, typer.Option("--gzip", help="Compress each file.")] = False,
) -> None:
    """Write synthetic shop events as files (backlog with --events, live with --rate)."""
    from shopstream.generate.writer import Faults, generate_files, stream_files

    faults = Faults(dirty=dirty, duplicates=duplicates, late=late)
    if (events is None) == (rate is None):
        err.print("[red]give exactly one of --events N or --rate EV_PER_S[/red]")
        raise typer.Exit(2)
    if events is not None:
        summary = generate_files(
            out,
            events=events,
            seed=seed,
            fmt=fmt,
            faults=faults,
            file_rows=file_rows,
            start=start,
            compress=gzip,
        )
    else:
        assert rate is not None
        summary = _until_signal(
            lambda stop: stream_files(
                out,
                rate=rate,
                duration=duration,
                seed=seed,
                fmt=fmt,
                faults=faults,
                interval=interval,
                compress=gzip,
                stop=stop,
            )
        )
    console.print(
        f"wrote {summary.rows:,} rows in {summary.files:,} files to {out} "
        f"({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s)"
    )


def _until_signal(work: Any) -> Any:
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return work(stop)


# -- run -----------------------------------------------------------------------------------


@app.command()
def run(
    source: Annotated[Path, typer.Option(help="Directory of dropped event files.")],
    until_idle: Annotated[bool, typer.Option(help="Exit 0 once everything present is in.")] = False,
    trigger_ms: Annotated[int | None, typer.Option(help="Poll interval (ms).")] = None,
    max_batch_rows: Annotated[int | None, typer.Option(help="Rows per micro-batch.")] = None,
    archive: Annotated[Path | None, typer.Option(help="Move committed files here.")] = None,
    delete: Annotated[bool, typer.Option(help="Delete committed files.")] = False,
) -> None:
    """Ingest event files into PostgreSQL, exactly once."""
    from shopstream.engines.embedded.runner import Runner
    from shopstream.sources.files import DirectorySource
    from shopstream.store.connection import connect
    from shopstream.store.loader import Loader

    if archive is not None and delete:
        err.print("[red]--archive and --delete exclude each other[/red]")
        raise typer.Exit(2)
    overrides: dict[str, Any] = {}
    if trigger_ms is not None:
        overrides["trigger_ms"] = trigger_ms
    if max_batch_rows is not None:
        overrides["max_batch_rows"] = max_batch_rows
    settings = Settings(**overrides)
    with _database(settings) as url:
        directory = source.resolve()
        with connect(url) as conn:
            known: dict[str, set[str]] = {}
            for path, digest in conn.execute(
                "SELECT path, content_hash FROM ingested_files WHERE starts_with(path, %s)",
                (f"{directory}/",),
            ):
                known.setdefault(str(path), set()).add(str(digest))
        runner: Runner | None = None

        def stop(*_: object) -> None:
            if runner is not None:
                runner.stop()

        loader = Loader(
            url,
            retry_max_seconds=settings.retry_max_seconds,
            should_stop=lambda: runner is not None and runner.stopping,
        )
        runner = Runner(
            DirectorySource(
                directory,
                known=known,
                archive=archive,
                delete=delete,
                settle_seconds=settings.trigger_ms / 1000,
            ),
            loader,
            settings,
            until_idle=until_idle,
        )
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            summary = runner.run()
        except psycopg.Error as error:
            err.print(f"[red]terminal database error, input left in place:[/red] {error}")
            raise typer.Exit(1) from error
    console.print(
        f"{summary.batches} batches: read {summary.rows_read:,}, loaded {summary.rows_loaded:,}, "
        f"duplicates {summary.duplicates:,}, quarantined {summary.quarantined:,} "
        f"in {summary.seconds:.1f}s"
    )


# -- db ------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (idempotent)."""
    from shopstream.store.connection import connect
    from shopstream.store.migrate import migrate

    with _database(Settings(), migrate=False) as url, connect(url) as conn:
        applied = migrate(conn)
    console.print(
        "applied " + ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        if applied
        else "schema is up to date"
    )


@db_app.command("up")
def db_up() -> None:
    """Start the embedded PostgreSQL and leave it running for other processes."""
    from shopstream.store.connection import connect, embedded_server
    from shopstream.store.migrate import migrate

    server = embedded_server(Settings())
    started = server.start()
    with connect(server.url(socket=True)) as conn:
        migrate(conn)
    console.print(("started " if started else "already running ") + server.url())


@db_app.command("down")
def db_down() -> None:
    """Stop the embedded PostgreSQL."""
    from shopstream.store.connection import embedded_server

    stopped = embedded_server(Settings()).stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded PostgreSQL runs (exit 1 when it does not)."""
    from shopstream.store.connection import embedded_server

    settings = Settings()
    if settings.database_url:
        console.print("external database (SHOPSTREAM_DATABASE_URL)")
        return
    server = embedded_server(settings)
    if server.is_running():
        console.print(f"running: {server.url()}")
        return
    console.print(f"stopped (data in {server.data_dir})")
    raise typer.Exit(1)


@db_app.command("url")
def db_url(
    socket: Annotated[bool, typer.Option(help="Unix-socket form (fastest locally).")] = False,
) -> None:
    """Print the database URL (for psql, the API, Spark JDBC ...)."""
    from shopstream.store.connection import embedded_server
    from shopstream.store.embedded import EmbeddedDatabaseError

    settings = Settings()
    if settings.database_url:
        typer.echo(settings.database_url)
        return
    try:
        typer.echo(embedded_server(settings).url(socket=socket))
    except EmbeddedDatabaseError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


# -- status and quarantine -----------------------------------------------------------------


@app.command()
def status(
    batches: Annotated[int, typer.Option(help="How many recent batches.")] = 10,
) -> None:
    """Totals and the last batches, from the database."""
    from shopstream.store import queries
    from shopstream.store.connection import connect

    with _database(Settings()) as url, connect(url) as conn:
        total = queries.totals(conn)
        recent = queries.recent_batches(conn, batches)
    summary = Table(title="ShopStream totals", show_header=False)
    for label, value in (
        ("batches", total.batches),
        ("files", total.files),
        ("rows read", total.rows_read),
        ("rows loaded", total.rows_loaded),
        ("duplicates", total.duplicates),
        ("rows quarantined", total.rows_quarantined),
        ("events stored", total.events_stored),
        ("quarantine open", total.open_quarantine),
    ):
        summary.add_row(label, f"{value:,}")
    console.print(summary)
    table = Table(title="Recent batches")
    for column in ("batch", "engine", "committed", "files", "read", "loaded", "dup", "quar.", "ms"):
        table.add_column(column, justify="right")
    for row in recent:
        table.add_row(
            str(row["batch_id"]),
            row["engine"],
            row["committed_at"].strftime("%Y-%m-%d %H:%M:%S"),
            f"{row['files']:,}",
            f"{row['rows_read']:,}",
            f"{row['rows_loaded']:,}",
            f"{row['duplicates']:,}",
            f"{row['rows_quarantined']:,}",
            str(row["load_ms"]),
        )
    console.print(table)


@quarantine_app.command("list")
def quarantine_list(
    rule: Annotated[str | None, typer.Option(help="Only rows that broke this rule.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
) -> None:
    """Open quarantine: counts per rule, then the first rows."""
    from shopstream.store import queries
    from shopstream.store.connection import connect

    with _database(Settings()) as url, connect(url) as conn:
        by_rule = queries.quarantine_by_rule(conn)
        rows = queries.quarantine_rows(conn, rule=rule, limit=limit)
    counts = Table(title="Open quarantine by rule")
    counts.add_column("rule")
    counts.add_column("rows", justify="right")
    for name, count in by_rule:
        counts.add_row(name, f"{count:,}")
    console.print(counts)
    listing = Table(title="Quarantined rows")
    for column in ("id", "batch", "source", "line", "rules", "raw"):
        listing.add_column(column, overflow="fold")
    for row in rows:
        listing.add_row(
            str(row["quarantine_id"]),
            str(row["batch_id"]),
            row["source"].rsplit("/", 1)[-1],
            "" if row["line_no"] is None else str(row["line_no"]),
            ",".join(row["rules"]),
            row["raw"][:120],
        )
    console.print(listing)


@quarantine_app.command("show")
def quarantine_show(quarantine_id: int) -> None:
    """One quarantined row in full."""
    from shopstream.store import queries
    from shopstream.store.connection import connect

    with _database(Settings()) as url, connect(url) as conn:
        row = queries.quarantine_row(conn, quarantine_id)
    if row is None:
        err.print(f"[red]no quarantine row {quarantine_id}[/red]")
        raise typer.Exit(1)
    for key, value in row.items():
        shown = repr(bytes(value)[:256]) if key == "raw_bytes" and value is not None else value
        console.print(f"{key}: {shown}", highlight=False, markup=False)


@quarantine_app.command("replay")
def quarantine_replay(
    rule: Annotated[str | None, typer.Option(help="Only rows that broke this rule.")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these rows.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100_000,
) -> None:
    """Re-run open quarantine rows through the current rules; load those that pass."""
    from shopstream.engines.embedded.replay import build_replay_batch, select_for_replay
    from shopstream.engines.embedded.runner import current_rules
    from shopstream.store.connection import connect
    from shopstream.store.loader import AlreadyCommitted, Loader

    settings = Settings()
    with _database(settings) as url:
        with connect(url) as conn:
            replay = select_for_replay(conn, rule=rule, ids=ids, limit=limit)
        if not replay.quarantine_ids:
            console.print("nothing to replay")
            return
        batch = build_replay_batch(replay, current_rules(settings))
        loader = Loader(url, retry_max_seconds=settings.retry_max_seconds)
        try:
            result = loader.load(batch)
        except AlreadyCommitted:
            err.print("[red]another replay closed some of these rows; nothing changed[/red]")
            raise typer.Exit(1) from None
        finally:
            loader.close()
    console.print(
        f"replayed {result.rows_read:,} rows in batch {result.batch_id}: "
        f"loaded {result.rows_loaded:,}, duplicates "
        f"{result.duplicates_in_batch + result.duplicates_in_store:,}, "
        f"still quarantined {result.rows_quarantined:,}"
    )


# -- demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Generated events per second.")] = 3_000,
    duration: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
) -> None:
    """Embedded database + live generator + pipeline, with a live panel. Ctrl-C stops."""
    from shopstream.demo import run_demo

    settings = Settings()
    with _database(settings) as url:
        run_demo(settings, url, rate=rate, duration=duration, console=console)
    console.print(
        "\nThe data stays in the embedded database. Reach it with:\n"
        "  shopstream db up        # start it again for other tools\n"
        "  shopstream db url       # print its URL\n"
        '  psql "$(shopstream db url)" -c "SELECT event_type, count(*) FROM events GROUP BY 1"'
    )


if __name__ == "__main__":  # pragma: no cover
    main()
