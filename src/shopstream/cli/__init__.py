"""The ``shopstream`` command: thin wiring from options to the stage packages."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shopstream.api.keys import Role
from shopstream.errors import TerminalError
from shopstream.logs import LogFormat
from shopstream.logs import configure as configure_logging
from shopstream.schema import InputFormat
from shopstream.settings import Settings
from shopstream.sources.select import KafkaSpec
from shopstream.store.roles import Purpose

if TYPE_CHECKING:
    from shopstream.engines.embedded.runner import RunSummary
    from shopstream.parse.mapping import MappingChoice
    from shopstream.sources.base import Source

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_app = typer.Typer(no_args_is_help=True, help="Manage the database (embedded or external).")
quarantine_app = typer.Typer(no_args_is_help=True, help="Inspect and replay quarantined input.")
batch_app = typer.Typer(no_args_is_help=True, help="Batch analytics jobs.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys for `shopstream serve`.")
app.add_typer(db_app, name="db")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(batch_app, name="batch")
mapping_app = typer.Typer(no_args_is_help=True, help="Propose and check mappings (dry runs).")
fx_app = typer.Typer(no_args_is_help=True, help="Exchange rates for one revenue total.")
app.add_typer(apikey_app, name="apikey")
app.add_typer(mapping_app, name="mapping")
app.add_typer(fx_app, name="fx")
fraud_app = typer.Typer(no_args_is_help=True, help="Fraud scoring: the model, and evaluation.")
app.add_typer(fraud_app, name="fraud")
console = Console()
err = Console(stderr=True)


class Engine(StrEnum):
    EMBEDDED = "embedded"
    SPARK = "spark"


@app.callback()
def _configure(
    log_level: Annotated[str, typer.Option(envvar="SHOPSTREAM_LOG_LEVEL")] = "INFO",
    log_format: Annotated[
        LogFormat, typer.Option(envvar="SHOPSTREAM_LOG_FORMAT", help="console or json")
    ] = "console",
) -> None:
    configure_logging(log_level, log_format, err)


def main() -> None:
    app()


@contextmanager
def _database(
    settings: Settings, purpose: Purpose = "api", *, migrate: bool = True
) -> Iterator[str]:
    """The URL to connect as ``purpose`` (least privilege: see store.roles), after
    migrating as the owner."""
    with _databases(settings, migrate=migrate) as urls:
        yield urls(purpose)


@contextmanager
def _databases(settings: Settings, *, migrate: bool = True) -> Iterator[Callable[[Purpose], str]]:
    from shopstream.store.connection import connect, database_urls
    from shopstream.store.migrate import migrate as apply_migrations
    from shopstream.store.server import EmbeddedDatabaseError

    try:
        with database_urls(settings) as urls:
            if migrate:
                with connect(urls("owner")) as conn:
                    apply_migrations(conn)
            yield urls
    except (EmbeddedDatabaseError, psycopg.OperationalError) as error:
        err.print(f"[red]database unavailable:[/red] {error}")
        raise typer.Exit(2) from error


# -- generate ------------------------------------------------------------------------------


@app.command()
def generate(
    out: Annotated[Path | None, typer.Option(help="Directory the files are written to.")] = None,
    kafka: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers to publish to instead.")
    ] = None,
    topic: Annotated[str, typer.Option(help="Kafka topic.")] = "ecommerce-events",
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of a new topic.")] = 3,
    events: Annotated[int | None, typer.Option(help="Write a backlog of N events.")] = None,
    rate: Annotated[float | None, typer.Option(help="Live mode: events per second.")] = None,
    duration: Annotated[float | None, typer.Option(help="Live mode: stop after S s.")] = None,
    seed: Annotated[int | None, typer.Option(help="Reproducible output.")] = None,
    fmt: Annotated[
        InputFormat | None,
        typer.Option("--format", help="Default: seed for files, jsonl for Kafka."),
    ] = None,
    dirty: Annotated[float, typer.Option(min=0, max=1, help="Share of bad rows.")] = 0.0,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Share re-sent.")] = 0.0,
    late: Annotated[float, typer.Option(min=0, max=1, help="Share arriving late.")] = 0.0,
    file_rows: Annotated[int, typer.Option(min=1, help="Rows per file (backlog).")] = 10_000,
    interval: Annotated[float, typer.Option(help="Live mode: seconds per file.")] = 0.2,
    start: Annotated[
        datetime | None,
        typer.Option(help="Backlog start (UTC); default now-1d, or fixed with a seed"),
    ] = None,
    days: Annotated[float, typer.Option(min=0.001, help="Backlog: days the events span.")] = 1.0,
    gzip: Annotated[bool, typer.Option("--gzip", help="Compress each file.")] = False,
    fraud: Annotated[
        float, typer.Option(min=0, max=0.5, help="Backlog: share of orders that are fraud.")
    ] = 0.0,
    fraud_labels: Annotated[
        Path | None,
        typer.Option(help="Where the fraud ground truth goes; default OUT.fraud-labels.csv."),
    ] = None,
) -> None:
    """Write synthetic shop events as files or Kafka messages (--events N, or --rate)."""
    from shopstream.generate.writer import (
        WRITABLE_FORMATS,
        Faults,
        FileWriter,
        RowSink,
        generate_backlog,
        stream_live,
    )

    faults = Faults(dirty=dirty, duplicates=duplicates, late=late)
    if (events is None) == (rate is None):
        err.print("[red]give exactly one of --events N or --rate EV_PER_S[/red]")
        raise typer.Exit(2)
    if fmt is not None and fmt not in WRITABLE_FORMATS:
        err.print(f"[red]the generator writes {', '.join(WRITABLE_FORMATS)}, not {fmt}[/red]")
        raise typer.Exit(2)
    if (out is None) == (kafka is None):
        err.print("[red]give exactly one of --out DIR or --kafka BOOTSTRAP[/red]")
        raise typer.Exit(2)
    if fraud and (events is None or (fraud_labels is None and out is None)):
        err.print("[red]--fraud needs --events N, and --fraud-labels FILE with --kafka[/red]")
        raise typer.Exit(2)
    if fraud and fraud_labels is None:
        assert out is not None  # never inside the inbox: the runner would read it
        fraud_labels = out.with_name(out.name + ".fraud-labels.csv")
    sink: RowSink
    if kafka is not None:
        from shopstream.generate.kafka import KafkaWriter
        from shopstream.sources.kafka_topics import ensure_topic

        if fmt is InputFormat.CANONICAL:
            err.print("[red]Kafka messages are --format jsonl (default) or seed[/red]")
            raise typer.Exit(2)
        ensure_topic(kafka, topic, partitions)
        kafka_writer = KafkaWriter(kafka, topic, fmt or InputFormat.JSONL)
        sink = kafka_writer
    else:
        assert out is not None
        sink = FileWriter(out, fmt or InputFormat.SEED, compress=gzip)
    if events is not None:
        summary = generate_backlog(
            sink,
            events=events,
            seed=seed,
            faults=faults,
            file_rows=file_rows,
            start=start,
            span=timedelta(days=days),
            fraud=fraud,
            fraud_labels=fraud_labels,
        )
    else:
        assert rate is not None
        summary = _until_signal(
            lambda stop: stream_live(
                sink,
                rate=rate,
                duration=duration,
                seed=seed,
                faults=faults,
                interval=interval,
                stop=stop,
            )
        )
    if kafka is not None:
        kafka_writer.flush()
        target = f"{summary.rows:,} messages to {topic}"
    else:
        target = f"{summary.rows:,} rows in {summary.files:,} files to {out}"
    console.print(f"wrote {target} ({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s)")


def _until_signal(work: Any) -> Any:
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return work(stop)


# -- run -----------------------------------------------------------------------------------


class OffsetReset(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


@app.command()
def run(
    source: Annotated[
        str, typer.Option(help="Directory of event files, or kafka://BOOTSTRAP/TOPIC[,TOPIC…].")
    ],
    until_idle: Annotated[bool, typer.Option(help="Exit 0 once everything present is in.")] = False,
    trigger_ms: Annotated[int | None, typer.Option(help="Poll interval (ms).")] = None,
    max_batch_rows: Annotated[int | None, typer.Option(help="Rows per micro-batch.")] = None,
    archive: Annotated[Path | None, typer.Option(help="Move committed files here.")] = None,
    delete: Annotated[bool, typer.Option(help="Delete committed files.")] = False,
    group: Annotated[str, typer.Option(help="Kafka consumer group.")] = "shopstream",
    reset_offsets: Annotated[
        OffsetReset | None,
        typer.Option(help="Kafka: where to go when a stored offset is out of range."),
    ] = None,
    dead_letters: Annotated[
        bool, typer.Option(help="Kafka: copy quarantined messages to <topic>-dlq.")
    ] = True,
    emit_processed: Annotated[
        bool, typer.Option(help="Kafka: publish valid events to processed-events.")
    ] = False,
    input_format: Annotated[
        InputFormat | None,
        typer.Option(
            "--format",
            help="Files: accept only this format (default: recognised by extension and header).",
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="A mapping file (TOML) for every record (default SHOPSTREAM_MAPPING); see README."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on this port (127.0.0.1) while running."),
    ] = None,
    engine: Annotated[
        Engine, typer.Option(help="embedded (in-process) or spark.")
    ] = Engine.EMBEDDED,
    master: Annotated[
        str, typer.Option(help="Spark master: local[*], spark://HOST:7077, k8s://…")
    ] = "local[*]",
    max_files_per_trigger: Annotated[
        int | None,
        typer.Option(
            help="Spark: files per micro-batch (default SHOPSTREAM_SPARK_MAX_FILES_PER_TRIGGER;"
            " unset, SHOPSTREAM_SPARK_MAX_BYTES_PER_TRIGGER bounds each micro-batch)."
        ),
    ] = None,
) -> None:
    """Ingest events (files or Kafka) into PostgreSQL, exactly once."""
    from shopstream.sources.select import parse_kafka

    if archive is not None and delete:
        err.print("[red]--archive and --delete exclude each other[/red]")
        raise typer.Exit(2)
    try:
        kafka = parse_kafka(source)
    except ValueError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    if kafka is not None and input_format is not None:
        err.print(
            "[red]--format applies to files; Kafka messages are recognised one by one"
            " (or give --mapping)[/red]"
        )
        raise typer.Exit(2)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    overrides: dict[str, Any] = {}
    if trigger_ms is not None:
        overrides["trigger_ms"] = trigger_ms
    if max_batch_rows is not None:
        overrides["max_batch_rows"] = max_batch_rows
    settings = Settings(**overrides)
    choice = _mapping_choice(settings, input_format, mapping)
    if engine is Engine.SPARK:
        _run_spark(
            settings, kafka or Path(source), until_idle=until_idle, master=master,
            choice=choice, max_files_per_trigger=max_files_per_trigger,
            archive=archive, delete=delete,
        )  # fmt: skip
        return
    _run_embedded_source(
        settings, Path(source) if kafka is None else kafka, until_idle=until_idle,
        choice=choice, input_format=input_format, archive=archive, delete=delete, group=group,
        reset_offsets=reset_offsets.value if reset_offsets else None,
        dead_letters=dead_letters, emit_processed=emit_processed,
    )  # fmt: skip


def _run_embedded_source(
    settings: Settings,
    source: Path | KafkaSpec,
    *,
    until_idle: bool,
    choice: MappingChoice,
    input_format: InputFormat | None = None,
    archive: Path | None = None,
    delete: bool = False,
    group: str = "shopstream",
    reset_offsets: str | None = None,
    dead_letters: bool = True,
    emit_processed: bool = False,
) -> None:
    """The embedded engine over a directory of files or Kafka topics."""
    if isinstance(source, Path):
        _run_files(
            settings, source, until_idle=until_idle, archive=archive, delete=delete,
            input_format=input_format, choice=choice,
        )  # fmt: skip
    else:
        _run_kafka(
            settings, source, until_idle=until_idle, group=group, reset_offsets=reset_offsets,
            dead_letters=dead_letters, emit_processed=emit_processed, choice=choice,
        )  # fmt: skip


# Exit status of a run whose source held records of which none loaded (see README).
EXIT_NOTHING_LOADED = 3


def _mapping_choice(
    settings: Settings, input_format: InputFormat | None, mapping: Path | None
) -> MappingChoice:
    """How the run maps records; a mapping file that cannot be used exits 2, naming why."""
    from shopstream.parse.mapping import MappingError, choose

    try:
        return choose(
            input_format,
            mapping or settings.mapping,
            hash_key=settings.privacy_hash_key(),
            custom_types=settings.custom_event_types,
        )
    except MappingError as error:
        err.print(f"[red]mapping:[/red] {escape(str(error))}")
        raise typer.Exit(2) from error


def _nothing_loaded(summary: RunSummary) -> None:
    """Records came in and none loaded: name the rules that stopped them, exit 3."""
    if not summary.rows_read or summary.rows_loaded or summary.duplicates:
        return
    if set(summary.quarantined_by_rule) <= {"file_changed_after_ingestion"} and summary.quarantined:
        return  # a file rewritten in place is an operator's matter, not the data's shape
    top = ", ".join(
        f"{rule} ({count:,})" for rule, count in summary.quarantined_by_rule.most_common(3)
    )
    err.print(
        f"[yellow]read {summary.rows_read:,} records and loaded none[/yellow]"
        + (f": quarantined by {top}" if top else "")
        + (f"; {summary.ignored:,} ignored by the mapping" if summary.ignored else "")
        + ". If the source has a shape of its own, try `shopstream mapping suggest SOURCE`"
        " and run with --mapping."
    )
    raise typer.Exit(EXIT_NOTHING_LOADED)


SourceFactory = Callable[[str, Callable[[], bool]], "Source"]


def _run_files(
    settings: Settings,
    directory: Path,
    *,
    until_idle: bool,
    archive: Path | None,
    delete: bool,
    input_format: InputFormat | None,
    choice: MappingChoice,
) -> None:
    """``run --source DIR``: the embedded engine over a directory of files."""
    from shopstream.sources.select import directory_source

    def files(url: str, _: Callable[[], bool]) -> Source:
        return directory_source(
            url, directory, settings, archive=archive, delete=delete, input_format=input_format
        )

    _run_embedded(settings, files, until_idle=until_idle, choice=choice)


def _run_kafka(
    settings: Settings,
    kafka: KafkaSpec,
    *,
    until_idle: bool,
    group: str,
    reset_offsets: str | None,
    dead_letters: bool,
    emit_processed: bool,
    choice: MappingChoice,
) -> None:
    """``run --source kafka://…``: the embedded engine over Kafka topics."""
    from confluent_kafka import KafkaException

    from shopstream.sources.kafka import OffsetOutOfRangeError
    from shopstream.sources.select import kafka_source

    def topics(url: str, stopping: Callable[[], bool]) -> Source:
        return kafka_source(
            url, kafka, settings, group=group, reset_offsets=reset_offsets,
            dead_letters=dead_letters, emit_processed=emit_processed, should_stop=stopping,
        )  # fmt: skip

    try:
        _run_embedded(settings, topics, until_idle=until_idle, choice=choice)
    except OffsetOutOfRangeError as error:
        err.print(f"[red]offsets out of range:[/red] {error}")
        raise typer.Exit(1) from error
    except KafkaException as error:
        err.print(f"[red]Kafka error, offsets left where they were:[/red] {error}")
        raise typer.Exit(1) from error


def _run_embedded(
    settings: Settings, make_source: SourceFactory, *, until_idle: bool, choice: MappingChoice
) -> None:
    """The in-process engine over a source until it is drained (``until_idle``) or a
    signal stops it; a terminal failure exits 1 with the input left in place."""
    from shopstream.engines.embedded.runner import Runner
    from shopstream.store.loader import Loader

    with _database(settings, "ingest") as url:
        runner: Runner | None = None

        def stopping() -> bool:
            return runner is not None and runner.stopping

        def stop(*_: object) -> None:
            if runner is not None:
                runner.stop()

        loader = Loader.from_settings(url, settings, should_stop=stopping)
        runner = Runner(
            make_source(url, stopping), loader, settings, until_idle=until_idle, choice=choice
        )
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            summary = runner.run()
        except TerminalError as error:
            err.print(f"[red]stopped, input left in place:[/red] {escape(str(error))}")
            raise typer.Exit(1) from error
        except psycopg.Error as error:
            err.print(
                f"[red]terminal database error, input left in place:[/red]"
                f" SQLSTATE {error.sqlstate or 'none'}: {escape(str(error))}"
            )
            raise typer.Exit(1) from error
    console.print(
        f"{summary.batches} batches: read {summary.rows_read:,}, loaded {summary.rows_loaded:,}, "
        f"duplicates {summary.duplicates:,}, quarantined {summary.quarantined:,}"
        + (f", ignored {summary.ignored:,}" if summary.ignored else "")
        + f" in {summary.seconds:.1f}s"
    )
    _nothing_loaded(summary)


def _run_spark(
    settings: Settings,
    source: Path | KafkaSpec,
    *,
    until_idle: bool,
    master: str,
    choice: MappingChoice,
    max_files_per_trigger: int | None,
    archive: Path | None,
    delete: bool,
) -> None:
    """``run --engine spark``: a Structured Streaming query until idle or stopped."""

    from shopstream.engines.spark.job import KafkaConnectorMissingError, SparkJob, run_spark
    from shopstream.engines.spark.session import JavaUnavailableError, is_local, spark_session
    from shopstream.validation.current import current_rules

    if (
        not is_local(master)
        and settings.spark_environment is None
        and "PYSPARK_PYTHON" not in os.environ
    ):
        err.print(
            "[red]a Spark cluster needs the executors' Python:[/red] run `shopstream spark"
            " package` and set SHOPSTREAM_SPARK_ENVIRONMENT to the archive, or set"
            " PYSPARK_PYTHON to a Python with ShopStream installed on every worker (a"
            " container image)"
        )
        raise typer.Exit(2)
    if isinstance(source, Path):
        source = source.resolve()
    job = SparkJob(
        source=source,
        checkpoints=settings.home_dir / "spark" / "checkpoints",
        choice=choice,
        max_files_per_trigger=max_files_per_trigger or settings.spark_max_files_per_trigger,
        max_bytes_per_trigger=settings.spark_max_bytes_per_trigger,
        max_offsets_per_trigger=settings.spark_max_offsets_per_trigger,
        archive=archive.resolve() if archive else None,
        delete=delete,
        limits=settings.read_limits,
    )
    stop_requested = False

    def stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    with _database(settings, "ingest") as url:
        try:
            spark = spark_session(
                master,
                driver_memory=settings.spark_driver_memory,
                packages=settings.spark_packages,
                jars=settings.spark_jars,
                environment=settings.spark_environment,
                executor_memory=settings.spark_executor_memory,
            )
        except JavaUnavailableError as error:
            err.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from error
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            query, loader = run_spark(
                spark, job, url, settings, current_rules(settings),
                until_idle=until_idle, should_stop=lambda: stop_requested,
            )  # fmt: skip
        except KafkaConnectorMissingError as error:
            spark.stop()
            err.print(f"[red]{error}[/red]")
            raise typer.Exit(2) from error
        try:
            if query.isActive:
                query.stop()
            failure = query.exception()
        finally:
            loader.close()
            spark.stop()
    if failure is not None:
        err.print(f"[red]the Spark query failed; its checkpoint resumes it:[/red] {failure}")
        raise typer.Exit(1)
    console.print(f"spark query on {job.label} stopped; checkpoint {job.checkpoint}")


# -- db ------------------------------------------------------------------------------------


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (idempotent)."""
    from shopstream.store.connection import connect
    from shopstream.store.migrate import migrate

    with _database(Settings(), "owner", migrate=False) as url, connect(url) as conn:
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
    with connect(server.url(socket=True, purpose="owner")) as conn:
        migrate(conn)
    console.print(("started " if started else "already running ") + server.url(purpose="owner"))


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
        console.print(f"running: {server.url(purpose='owner')}")
        return
    console.print(f"stopped (data in {server.data_dir})")
    raise typer.Exit(1)


class RoleChoice(StrEnum):
    OWNER = "owner"
    INGEST = "ingest"
    API = "api"


@db_app.command("url")
def db_url(
    socket: Annotated[bool, typer.Option(help="Unix-socket form (fastest locally).")] = False,
    role: Annotated[
        RoleChoice, typer.Option(help="Connect as: owner (all rights), ingest, or api (read).")
    ] = RoleChoice.OWNER,
) -> None:
    """Print the database URL (for psql, the API, Spark JDBC ...)."""
    from shopstream.store.connection import embedded_server
    from shopstream.store.server import EmbeddedDatabaseError

    settings = Settings()
    if settings.database_url:
        given = {
            RoleChoice.OWNER: settings.database_url,
            RoleChoice.INGEST: settings.ingest_database_url,
            RoleChoice.API: settings.api_database_url,
        }
        typer.echo(given[role] or settings.database_url)
        return
    try:
        typer.echo(embedded_server(settings).url(socket=socket, purpose=role.value))
    except EmbeddedDatabaseError as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


@db_app.command("roles")
def db_roles(
    show_sql: Annotated[
        bool, typer.Option("--sql", help="Print the GRANTs an administrator runs instead.")
    ] = False,
) -> None:
    """The owner, ingest and API roles: login, superuser, tables they may write and read."""
    from shopstream.store.connection import connect
    from shopstream.store.roles import grant_statements, report

    if show_sql:
        for role in ("shopstream_ingest", "shopstream_api"):
            print(f"CREATE ROLE {role} NOLOGIN;")
        with _database(Settings(), "owner") as url, connect(url) as conn:
            for statement in grant_statements():
                print(statement.as_string(conn) + ";")
        return
    with _database(Settings(), "owner") as url, connect(url) as conn:
        rows = report(conn)
    table = Table()
    table.add_column("role", no_wrap=True)
    for column in ("exists", "login", "superuser", "tables written", "tables read"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.role, _yes(row.exists), _yes(row.can_login), _yes(row.superuser),
            str(row.tables_writable), str(row.tables_readable),
        )  # fmt: skip
    console.print(table)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# -- status and quarantine -----------------------------------------------------------------


@batch_app.command("daily")
def batch_daily(
    day: Annotated[
        datetime | None,
        typer.Option("--date", formats=["%Y-%m-%d"], help="UTC day; default yesterday."),
    ] = None,
) -> None:
    """Fill daily_aggregations for one day (idempotent: rerun to refresh)."""
    from datetime import UTC

    from shopstream.analytics.daily import run_daily
    from shopstream.store.connection import connect

    target = day.date() if day else (datetime.now(UTC) - timedelta(days=1)).date()
    with _database(Settings(), "ingest") as url, connect(url) as conn:
        rows = run_daily(conn, target)
    console.print(f"daily_aggregations for {target}: {rows} rows")


@batch_app.command("customers")
def batch_customers(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"], help="Reference day; default the day after the last purchase."
        ),
    ] = None,
) -> None:
    """RFM segments, historical and predicted customer value (BG/NBD + Gamma-Gamma)."""
    from shopstream.analytics.customers import run_customers
    from shopstream.store.connection import connect

    with _database(Settings(), "ingest") as url, connect(url) as conn:
        sizes = run_customers(conn, as_of.date() if as_of else None)
    table = Table(title="Customer segments")
    table.add_column("segment")
    table.add_column("customers", justify="right")
    for segment, customers in sizes.iter_rows():
        table.add_row(str(segment), f"{customers:,}")
    console.print(table)


@fx_app.command("load")
def fx_load(
    file: Annotated[Path, typer.Argument(help="CSV: date,currency,rate (YYYY-MM-DD, EUR, 1.09).")],
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="Currency the rates convert into; default SHOPSTREAM_REPORTING_CURRENCY."
        ),
    ] = None,
) -> None:
    """Load exchange rates (upsert; the same file twice changes nothing). A file with any
    bad line loads nothing and names the lines."""
    import re

    from shopstream.analytics.fx import RatesFileError, load_rates, read_rates
    from shopstream.store.connection import connect

    settings = Settings()
    quote = (to or settings.reporting_currency or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", quote):
        err.print(
            "[red]fx load:[/red] say which currency the rates convert into:"
            " --to USD, or SHOPSTREAM_REPORTING_CURRENCY=USD"
        )
        raise typer.Exit(2)
    try:
        rates = read_rates(file.read_bytes(), str(file))
    except (OSError, RatesFileError) as error:
        err.print(f"[red]fx load:[/red] {escape(str(error))}")
        raise typer.Exit(2) from error
    with _database(settings, "ingest") as url, connect(url) as conn:
        loaded = load_rates(conn, rates, quote)
    console.print(
        f"{loaded.rows:,} rates to {quote} for {', '.join(loaded.currencies)},"
        f" {loaded.first_day} to {loaded.last_day}"
    )
    if settings.reporting_currency != quote:
        console.print(
            f"[yellow]the API converts into SHOPSTREAM_REPORTING_CURRENCY"
            f" ({settings.reporting_currency or 'unset'}), not {quote}[/yellow]"
        )


@fx_app.command("list")
def fx_list() -> None:
    """The loaded rates: days covered and the latest rate, per currency."""
    from shopstream.analytics.fx import rate_coverage
    from shopstream.store.connection import connect

    with _database(Settings(), "api") as url, connect(url) as conn:
        rows = rate_coverage(conn)
    table = Table(title="Exchange rates")
    for column in ("to", "currency", "days", "first", "last", "latest rate"):
        table.add_column(column)
    for quote, currency, days, first, last, latest in rows:
        table.add_row(quote, currency, f"{days:,}", str(first), str(last), str(latest))
    console.print(table)


@fraud_app.command("train")
def fraud_train(
    days: Annotated[float, typer.Option(min=0.01, help="Orders of the last D days.")] = 30.0,
    contamination: Annotated[
        float, typer.Option(min=0.0001, max=0.5, help="Share of orders the model calls rare.")
    ] = 0.01,
) -> None:
    """Fit a new Isolation Forest version on recent orders' stored features; the loader
    scores with the newest version from its next batch on."""
    from shopstream.fraud.model import train
    from shopstream.store.connection import connect

    with _database(Settings(), "ingest") as url, connect(url) as conn:
        trained = train(conn, days=days, contamination=contamination)
    if trained is None:
        err.print("[red]fraud train:[/red] fewer than 100 scored orders to learn from")
        raise typer.Exit(1)
    console.print(
        f"model {trained.version}: {trained.orders:,} orders, fires above {trained.cutoff:.4f}"
    )


@fraud_app.command("evaluate")
def fraud_evaluate(
    labels: Annotated[Path, typer.Argument(help="CSV with event_id,pattern[,instance].")],
) -> None:
    """Precision and recall of the alerts against a ground truth (generate --fraud)."""
    from shopstream.analytics.fraud import evaluate
    from shopstream.store.connection import connect

    with _database(Settings(), "api") as url, connect(url) as conn:
        result = evaluate(conn, labels.read_bytes())
    table = Table(title="Fraud alerts against the ground truth")
    for column in ("pattern", "labelled", "alerted", "recall"):
        table.add_column(column, justify="right")
    for pattern, count, hit in result.by_pattern:
        table.add_row(pattern, f"{count:,}", f"{hit:,}", f"{hit / count:.2f}")
    console.print(table)
    precision = "n/a" if result.precision is None else f"{result.precision:.2f}"
    recall = "n/a" if result.recall is None else f"{result.recall:.2f}"
    console.print(
        f"alerts {result.alerts:,}, of them fraud {result.true_alerts:,}:"
        f" precision {precision}, recall {recall}"
    )
    if result.false_by_reason:
        console.print(
            "false alerts by reason: "
            + ", ".join(f"{reason} {n:,}" for reason, n in result.false_by_reason)
        )


@app.command()
def status(
    batches: Annotated[int, typer.Option(help="How many recent batches.")] = 10,
) -> None:
    """Totals and the last batches, from the database."""
    from shopstream.lake.location import Lake
    from shopstream.store import queries
    from shopstream.store.connection import connect
    from shopstream.store.rebuild import pending_days

    settings = Settings()
    lake = Lake.from_settings(settings)
    with _database(settings) as url, connect(url) as conn:
        total = queries.totals(conn)
        recent = queries.recent_batches(conn, batches)
        positions = queries.stream_positions(conn)
        unarchived, unarchived_events = queries.outside_lake(conn, lake.table_uri("events"))
        deferred = pending_days(conn) if total.awaiting_rebuild else None
    summary = Table(title="ShopStream totals", show_header=False)
    for label, value in (
        ("batches", total.batches),
        ("files", total.files),
        ("rows read", total.rows_read),
        ("rows loaded", total.rows_loaded),
        ("duplicates", total.duplicates),
        ("rows quarantined", total.rows_quarantined),
        ("files rejected whole", total.files_rejected),
        ("  records in them", total.records_in_rejected_files),
        ("events stored", total.events_stored),
        ("  in months (partitions)", total.event_months),
        ("quarantine open", total.open_quarantine),
        ("batches awaiting rebuild", total.awaiting_rebuild),
        ("batches not in the lake", unarchived),
        ("  events in them", unarchived_events),
    ):
        summary.add_row(label, f"{value:,}")
    console.print(summary)
    if deferred is not None:
        console.print(
            f"batches awaiting rebuild hold events from {deferred.first} to {deferred.last}:"
            f" run `shopstream backfill` again, or `shopstream rebuild --from {deferred.first}"
            f" --to {deferred.last}`"
        )
    table = Table(title="Recent batches")
    for column in ("batch", "engine", "committed", "files", "read", "loaded", "dup", "quar.", "ms"):
        table.add_column(column, justify="right")
    table.add_column("lag by partition")
    for row in recent:
        lag = row["source_lag"] or {}
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
            " ".join(f"{key}:{value:,}" for key, value in sorted(lag.items())),
        )
    console.print(table)
    if positions:
        streams = Table(title="Stream offsets (lag when last read)")
        for column in ("group", "topic", "partition", "next offset", "end", "lag", "updated"):
            streams.add_column(column, justify="right")
        for row in positions:
            streams.add_row(
                row["consumer_group"],
                row["topic"],
                str(row["partition"]),
                f"{row['next_offset']:,}",
                f"{row['high_watermark']:,}",
                f"{row['lag']:,}",
                row["updated_at"].strftime("%Y-%m-%d %H:%M:%S"),
            )
        console.print(streams)


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
    for column in ("id", "batch", "source", "line / offset", "rules", "fields", "raw"):
        listing.add_column(column, overflow="fold")
    for row in rows:
        source: str = row["source"]
        kafka = source.startswith("kafka://")
        where = "" if row["line_no"] is None else str(row["line_no"])
        listing.add_row(
            str(row["quarantine_id"]),
            str(row["batch_id"]),
            # Kafka rows: topic/partition, and the message offset in the next column.
            source.removeprefix("kafka://") if kafka else source.rsplit("/", 1)[-1],
            f"offset {where}" if kafka and where else where,
            ",".join(row["rules"]),
            ",".join(row.get("fields") or ()),
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
    from shopstream.validation.rules import RULE_DESCRIPTIONS

    for key, value in row.items():
        shown = repr(bytes(value)[:256]) if key == "raw_bytes" and value is not None else value
        console.print(f"{key}: {shown}", highlight=False, markup=False)
    for rule in row.get("rules") or ():
        described = RULE_DESCRIPTIONS.get(rule, "(a rule no longer defined)")
        console.print(f"rule {rule}: {described}", highlight=False, markup=False)
    if row.get("fields"):
        console.print(f"at fault: {', '.join(row['fields'])}", highlight=False, markup=False)


# -- mappings -------------------------------------------------------------------------------


@mapping_app.command("suggest")
def mapping_suggest(
    source: Annotated[str, typer.Argument(help="A directory, a file or kafka://HOST/TOPIC.")],
    sample_size: Annotated[int, typer.Option("--sample", min=1, help="Records to sample.")] = 1000,
) -> None:
    """Propose a mapping from sampled records (TOML on stdout), and what it would load."""
    from shopstream.engines.embedded.dryrun import proposal_mapping, sample, suggest
    from shopstream.parse.mapping import MappingError

    settings = Settings()
    files = sample(source, sample_size)
    proposal = suggest(files)
    typer.echo(proposal.toml, nl=False)
    if proposal.unresolved:
        err.print(f"[yellow]could not find: {', '.join(proposal.unresolved)}[/yellow]")
    try:
        choice = proposal_mapping(
            proposal, settings.privacy_hash_key(), frozenset(settings.custom_event_types)
        )
    except MappingError as error:
        err.print(f"[red]the proposal needs editing:[/red] {escape(str(error))}")
        raise typer.Exit(1) from error
    _print_dry_run(files, choice, settings)


@mapping_app.command("check")
def mapping_check(
    source: Annotated[str, typer.Argument(help="A directory, a file or kafka://HOST/TOPIC.")],
    mapping: Annotated[Path | None, typer.Option(help="The mapping file to try.")] = None,
    input_format: Annotated[
        InputFormat | None, typer.Option("--format", help="Or a built-in format.")
    ] = None,
    sample_size: Annotated[int, typer.Option("--sample", min=1, help="Records to sample.")] = 1000,
) -> None:
    """Dry run: what the mapping would load and quarantine, by rule; writes nothing."""
    from shopstream.engines.embedded.dryrun import sample

    settings = Settings()
    choice = _mapping_choice(settings, input_format, mapping)
    _print_dry_run(sample(source, sample_size), choice, settings)


def _print_dry_run(files: list[Any], choice: MappingChoice, settings: Settings) -> None:
    from shopstream.engines.embedded.dryrun import dry_run
    from shopstream.validation.current import current_rules
    from shopstream.validation.rules import RULE_DESCRIPTIONS

    result = dry_run(files, choice, current_rules(settings))
    quarantined = sum(result.quarantined_by_rule.values())
    err.print(
        f"dry run over {result.read:,} sampled records ({', '.join(result.formats) or '-'}):"
        f" would load {result.loaded:,}, quarantine {quarantined:,}, ignore {result.ignored:,},"
        f" duplicates {result.duplicates:,}",
        highlight=False,
    )
    for rule, count in result.quarantined_by_rule.most_common():
        err.print(f"  {rule}: {count:,} — {RULE_DESCRIPTIONS.get(rule, '')}", highlight=False)
    if result.fields_at_fault:
        at_fault = ", ".join(f"{f} ({n:,})" for f, n in result.fields_at_fault.most_common())
        err.print(f"  fields at fault: {at_fault}", highlight=False)
    if result.unmapped:
        err.print(f"  kept in properties: {', '.join(result.unmapped)}", highlight=False)


@quarantine_app.command("replay")
def quarantine_replay(
    rule: Annotated[str | None, typer.Option(help="Only rows that broke this rule.")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these rows.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100_000,
    input_format: Annotated[
        InputFormat | None, typer.Option("--format", help="Read the rows as this format.")
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Read the rows through this (corrected) mapping.")
    ] = None,
) -> None:
    """Re-run open quarantine rows through the current rules; load those that pass."""
    from shopstream.engines.embedded.replay import replay_quarantine
    from shopstream.store.loader import LoadStatus

    settings = Settings()
    choice = _mapping_choice(settings, input_format, mapping)
    with _database(settings, "ingest") as url:
        outcome = replay_quarantine(url, settings, rule=rule, ids=ids, limit=limit, choice=choice)
    if outcome is not None and outcome.status is not LoadStatus.COMMITTED:
        err.print("[red]another replay closed some of these rows; nothing changed[/red]")
        raise typer.Exit(1)
    result = outcome.result if outcome is not None else None
    if result is None:
        console.print("nothing to replay")
        return
    console.print(
        f"replayed {result.rows_read:,} rows in batch {result.batch_id}: "
        f"loaded {result.rows_loaded:,}, duplicates "
        f"{result.duplicates_in_batch + result.duplicates_in_store:,}, "
        f"still quarantined {result.rows_quarantined:,}"
    )


# -- serve and API keys ---------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    scheduler: Annotated[
        bool, typer.Option(help="Also run the scheduled jobs in this process.")
    ] = False,
) -> None:
    """REST API (/api/v1, OpenAPI at /docs), dashboard (/) and /metrics."""
    import os

    import uvicorn

    from shopstream.api.app import create_app

    settings = Settings()
    with _databases(settings) as urls, _scheduled(settings, urls("ingest"), on=scheduler):
        api_url, ingest_url = urls("api"), urls("ingest")
        if workers == 1:
            uvicorn.run(
                create_app(settings, api_url, ingest_url),
                host=host, port=port, log_level="warning",
            )  # fmt: skip
            return
        # Each worker process builds the app from these.
        os.environ["SHOPSTREAM_DATABASE_URL"] = urls("owner")
        os.environ["SHOPSTREAM_API_DATABASE_URL"] = api_url
        os.environ["SHOPSTREAM_INGEST_DATABASE_URL"] = ingest_url
        uvicorn.run(
            "shopstream.api.app:app_from_environment", factory=True, workers=workers,
            host=host, port=port, log_level="warning",
        )  # fmt: skip


@contextmanager
def _scheduled(settings: Settings, url: str, *, on: bool) -> Iterator[None]:
    """The job scheduler in a background thread of this process while the block runs."""
    if not on:
        yield
        return
    from shopstream.jobs.catalog import Jobs
    from shopstream.jobs.scheduler import build

    jobs = build(Jobs(settings, url), blocking=False)
    jobs.start()
    try:
        yield
    finally:
        jobs.shutdown(wait=False)


@apikey_app.command("create")
def apikey_create(
    role: Annotated[Role, typer.Option(help="viewer, analyst or admin.")],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "api",
    expires: Annotated[float | None, typer.Option(min=0.001, help="Expire after DAYS.")] = None,
) -> None:
    """Create a key and print it once, on its own line (only its digest is stored)."""
    from shopstream.api.keys import create_key, expiry
    from shopstream.store.connection import connect

    settings = Settings()
    with _database(settings) as url, connect(url) as conn:
        key_id, key = create_key(conn, role, name, expiry(expires))
    err.print(f"key {key_id} ({role.value}, {name!r}) created; it is shown only now:")
    print(key)


@apikey_app.command("list")
def apikey_list() -> None:
    """Keys with role, name, creation, expiry and whether they are active."""
    from shopstream.api.keys import list_keys
    from shopstream.store.connection import connect

    settings = Settings()
    with _database(settings) as url, connect(url) as conn:
        rows = list_keys(conn)
    table = Table("id", "name", "role", "prefix", "created", "expires", "active")
    for row in rows:
        table.add_row(
            str(row["key_id"]), row["name"], row["role"], row["key_prefix"] + "…",
            f"{row['created_at']:%Y-%m-%d %H:%M}",
            f"{row['expires_at']:%Y-%m-%d %H:%M}" if row["expires_at"] else "never",
            "yes" if row["active"] else "no",
        )  # fmt: skip
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key at once."""
    from shopstream.api.keys import revoke_key
    from shopstream.store.connection import connect

    settings = Settings()
    with _database(settings) as url, connect(url) as conn:
        revoked = revoke_key(conn, key_id)
    if not revoked:
        err.print(f"[red]no active key {key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


# -- demo ----------------------------------------------------------------------------------


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Generated events per second.")] = 3_000,
    duration: Annotated[float | None, typer.Option(help="Stop after S seconds.")] = None,
    port: Annotated[int, typer.Option(help="Port of the API and dashboard.")] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the API and dashboard too.")] = True,
    history_days: Annotated[
        float, typer.Option(min=0, help="Days of past traffic loaded first (0: none).")
    ] = 90,
    history_events: Annotated[int, typer.Option(min=0, help="Events in that history.")] = 500_000,
    scheduler: Annotated[
        bool, typer.Option(help="Run the scheduled jobs (daily, customers, quality, alerts).")
    ] = True,
) -> None:
    """Embedded database + live generator + pipeline + API and dashboard. Ctrl-C stops."""
    from shopstream.demo import DashboardUnavailableError, run_demo

    settings = Settings()
    with _databases(settings) as urls:
        try:
            run_demo(
                settings, urls, rate=rate, duration=duration, console=console,
                port=port if serve else None, history_days=history_days,
                history_events=history_events, scheduler=scheduler,
            )  # fmt: skip
        except DashboardUnavailableError as error:
            err.print(f"[red]{error}[/red]; pick another with --port, or --no-serve")
            raise typer.Exit(1) from error
    console.print(
        "\nThe data stays in the embedded database. Reach it with:\n"
        "  shopstream db up        # start it again for other tools\n"
        "  shopstream db url       # print its URL\n"
        '  psql "$(shopstream db url)" -c "SELECT event_type, count(*) FROM events GROUP BY 1"'
    )


from shopstream.cli import history, lake, operations, spark  # noqa: E402 - they need the helpers above

operations.register(app)
history.register(app)
lake.register(app)
spark.register(app)

if __name__ == "__main__":  # pragma: no cover
    main()
