"""`shopstream demo`: live traffic through the whole pipeline, watched in a rich panel."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import uvicorn
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shopstream.api.app import create_app
from shopstream.api.keys import Role, create_key
from shopstream.contract import ParsedBatch
from shopstream.engines.embedded.runner import Runner, RunSummary
from shopstream.generate.catalog import Shop, build_shop
from shopstream.generate.writer import (
    Faults,
    FileWriter,
    generate_backlog,
    shop_customers,
    stream_live,
)
from shopstream.jobs.catalog import Jobs
from shopstream.jobs.scheduler import build as build_scheduler
from shopstream.schema import InputFormat
from shopstream.settings import Settings
from shopstream.sources.files import DirectorySource
from shopstream.store.connection import connect
from shopstream.store.ledger import LedgerCheck
from shopstream.store.loader import BatchResult, Loader
from shopstream.store.roles import Purpose

log = logging.getLogger(__name__)
SERVER_START_S: Final = 30.0
LOG_LINES: Final = 6  # the newest log lines the live panel shows
HISTORY_FILE_ROWS: Final = 50_000
HISTORY_FRAUD_SHARE: Final = 0.005  # of the orders: the fraud page and alerts have cases
DEMO_SHOP_SEED: Final = 20261202


@dataclass
class DemoStats:
    generated: int = 0
    committed: RunSummary = field(default_factory=RunSummary)
    lag_seconds: float = 0.0
    dashboard: str = ""
    by_rule: Counter[str] = field(default_factory=Counter)
    window: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=50))
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rates(self) -> tuple[float, float]:
        with self.lock:
            if len(self.window) < 2:
                return 0.0, 0.0
            (t0, g0, l0), (t1, g1, l1) = self.window[0], self.window[-1]
        span = max(t1 - t0, 1e-6)
        return (g1 - g0) / span, (l1 - l0) / span


class DashboardUnavailableError(Exception):
    """The API and dashboard could not start (the port is taken, say)."""


def _serve(settings: Settings, urls: Callable[[Purpose], str], port: int) -> uvicorn.Server:
    """The API and dashboard on 127.0.0.1:port, in a thread of this process; returns once
    it accepts connections, so the address printed next already answers."""
    app = create_app(settings, urls("api"), urls("ingest"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, name="shopstream-api", daemon=True)
    serving.start()
    deadline = time.monotonic() + SERVER_START_S
    while not server.started:
        if not serving.is_alive() or time.monotonic() > deadline:
            raise DashboardUnavailableError(f"the dashboard could not listen on 127.0.0.1:{port}")
        time.sleep(0.05)
    return server


class _PanelLog(logging.Handler):
    """While the live panel shows, log lines go into it (the newest few) instead of
    scrolling through it and tearing it apart."""

    def __init__(self, stats: DemoStats) -> None:
        super().__init__(logging.INFO)
        self._stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{time.strftime('%H:%M:%S')} {record.levelname.lower():7} {record.getMessage()}"
        with self._stats.lock:
            self._stats.logs.append(line)


def _load_history(
    settings: Settings, url: str, *, days: float, events: int, shop: Shop, console: Console
) -> None:
    """Generate ``days`` of past traffic and load it through the normal pipeline, so the
    dashboard has history (segments, daily aggregates, quality baselines) from the start.
    Skipped when the database already holds events."""
    with connect(url) as conn:
        stored = conn.execute("SELECT EXISTS (SELECT 1 FROM events)").fetchone()
    if stored and stored[0]:
        console.print("History: the database already holds events; not generating more.")
        return
    folder = settings.home_dir / "demo" / "history"
    shutil.rmtree(folder, ignore_errors=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        written = progress.add_task(f"generating {days:g} days of history", total=events)
        summary = generate_backlog(
            FileWriter(folder, InputFormat.CANONICAL), events=events, seed=None, shop=shop,
            faults=Faults(dirty=0.005, duplicates=0.01), file_rows=HISTORY_FILE_ROWS,
            span=timedelta(days=days), fraud=HISTORY_FRAUD_SHARE,
            progress=lambda rows: progress.advance(written, rows),
        )  # fmt: skip
        # Re-sent duplicates make the files hold a few more rows than events.
        progress.update(written, total=summary.rows, completed=summary.rows)
        loaded = progress.add_task("loading it through the pipeline", total=summary.rows)
        Runner(
            DirectorySource(
                folder, known={}, delete=True, settle_seconds=0.0, limits=settings.read_limits,
                piece_bytes=settings.file_piece_bytes, ledger=LedgerCheck(url),
            ),
            Loader.from_settings(url, settings),
            settings,
            until_idle=True,
            on_batch=lambda batch, _: progress.advance(loaded, batch.rows_read),
        ).run()  # fmt: skip


def run_demo(
    settings: Settings,
    urls: Callable[[Purpose], str],
    *,
    rate: float,
    duration: float | None,
    console: Console,
    port: int | None = 8000,
    history_days: float = 90,
    history_events: int = 500_000,
    scheduler: bool = True,
) -> None:
    stats = DemoStats()
    # From here on, log lines go into the panel (and, before it shows, wait there): one line
    # per batch would tear the progress bars and the panel apart.
    root = logging.getLogger()
    handlers, root.handlers = root.handlers, [_PanelLog(stats)]
    try:
        _run_demo(settings, urls, stats, rate=rate, duration=duration, console=console,
                  port=port, history_days=history_days, history_events=history_events,
                  scheduler=scheduler)  # fmt: skip
    finally:
        root.handlers = handlers


def _run_demo(
    settings: Settings,
    urls: Callable[[Purpose], str],
    stats: DemoStats,
    *,
    rate: float,
    duration: float | None,
    console: Console,
    port: int | None,
    history_days: float,
    history_events: int,
    scheduler: bool,
) -> None:
    url = urls("ingest")
    # One catalog and customer base for history and live traffic, the same on every start
    # (a restarted demo keeps its history): customers keep their devices, addresses and
    # cards, as real ones do, instead of looking new to the fraud rules on every live order.
    shop = build_shop(DEMO_SHOP_SEED, customers=shop_customers(history_events))
    if history_days > 0 and history_events > 0:
        _load_history(settings, url, days=history_days, events=history_events, shop=shop,
                      console=console)  # fmt: skip
    jobs = build_scheduler(Jobs(settings, url), blocking=False) if scheduler else None
    inbox = settings.home_dir / "demo" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def count_generated(rows: int) -> None:
        with stats.lock:
            stats.generated += rows

    def on_batch(batch: ParsedBatch, result: BatchResult) -> None:
        with stats.lock:
            stats.committed.add(result, batch)
            stats.by_rule.update(batch.quarantined_by_rule)
            stats.lag_seconds = (time.time() - batch.started_at.timestamp()) + result.load_seconds

    generator = threading.Thread(
        target=stream_live,
        kwargs={
            "sink": FileWriter(inbox, InputFormat.CANONICAL),
            "rate": rate,
            "duration": duration,
            "seed": None,
            "shop": shop,
            "faults": Faults(dirty=0.01, duplicates=0.02, late=0.01),
            "stop": stop,
            "progress": count_generated,
        },
        daemon=True,
    )
    runner = Runner(
        DirectorySource(
            inbox,
            known={},
            delete=True,
            settle_seconds=settings.trigger_ms / 1000,
            limits=settings.read_limits,
            piece_bytes=settings.file_piece_bytes,
            ledger=LedgerCheck(url),
        ),
        Loader.from_settings(url, settings, should_stop=stop.is_set),
        settings,
        on_batch=on_batch,
    )

    def shutdown(*_: Any) -> None:
        stop.set()
        runner.stop()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    server = None
    if port is not None:
        with connect(urls("api")) as conn:
            _, key = create_key(conn, Role.ANALYST, "demo", timedelta(days=1))
        server = _serve(settings, urls, port)
        stats.dashboard = f"http://127.0.0.1:{port}/"
        console.print(f"Dashboard and API: {stats.dashboard} (OpenAPI at /docs)")
        console.print(
            "Analyst API key for this demo (valid for a day; every page, alerts and the"
            " quality report included. A viewer key, `shopstream apikey create --role"
            " viewer`, sees the executive and customer pages only):"
        )
        console.print(key, soft_wrap=True, highlight=False)
    if jobs is not None:
        jobs.start()  # catches up daily aggregations and quality at once
        for name in ("customers", "alerts"):
            jobs.modify_job(name, next_run_time=datetime.now(UTC))
    generator.start()
    pipeline = threading.Thread(target=runner.run, name="shopstream-demo", daemon=True)
    pipeline.start()
    began = time.monotonic()
    with Live(_panel(stats, rate), console=console, refresh_per_second=4) as live:
        while pipeline.is_alive():
            with stats.lock:
                stats.window.append(
                    (time.monotonic(), stats.generated, stats.committed.rows_loaded)
                )
            live.update(_panel(stats, rate))
            if duration is not None and time.monotonic() - began > duration + 2:
                shutdown()
            time.sleep(0.25)
    generator.join(timeout=5)
    if jobs is not None:
        jobs.shutdown(wait=False)
    if server is not None:
        server.should_exit = True


def _panel(stats: DemoStats, rate: float) -> Panel:
    generated_rate, loaded_rate = stats.rates()
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="left")
    table.add_column(justify="right")
    with stats.lock:
        done = stats.committed
        rows = [
            *((("dashboard", stats.dashboard),) if stats.dashboard else ()),
            ("target rate", f"{rate:,.0f} ev/s"),
            ("events in", f"{generated_rate:,.0f} ev/s"),
            ("events loaded", f"{loaded_rate:,.0f} ev/s"),
            ("lag (last batch)", f"{stats.lag_seconds * 1000:,.0f} ms"),
            ("batches", f"{done.batches:,}"),
            ("read / loaded", f"{done.rows_read:,} / {done.rows_loaded:,}"),
            ("duplicates", f"{done.duplicates:,}"),
            ("quarantined", f"{done.quarantined:,}"),
        ]
        rules = stats.by_rule.most_common()
        logs = list(stats.logs)
    for label, value in rows:
        table.add_row(label, value)
    quarantine = Table("rule", "rows", title="quarantined by rule", expand=False)
    for name, count in rules:
        quarantine.add_row(name, f"{count:,}")
    recent = Text(
        "\n".join(logs) if logs else "(no log lines yet)",
        style="dim",
        no_wrap=True,
        overflow="ellipsis",
    )
    return Panel(
        Group(table, quarantine, Text("recent log", style="bold"), recent),
        title="ShopStream demo — Ctrl-C to stop",
    )
