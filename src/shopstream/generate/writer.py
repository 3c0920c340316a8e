"""Write generated events, as files (atomically) or to any other row sink.

The generation loops (a reproducible backlog, or live traffic at a steady rate) hand chunks
of rows to a sink; ``FileWriter`` is the file sink, ``generate/kafka.py`` the Kafka one.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import polars as pl

from shopstream.generate.catalog import Shop, build_shop
from shopstream.generate.faults import Dirt, plan
from shopstream.generate.fraud import inject_fraud
from shopstream.generate.sessions import simulate
from shopstream.schema import FIELD_NAMES, SEED_COLUMNS, InputFormat

REPRODUCIBLE_START: Final = datetime(2026, 1, 1, tzinfo=UTC)
_EXTENSIONS: Final = {
    InputFormat.SEED: "csv",
    InputFormat.CANONICAL: "csv",
    InputFormat.JSONL: "jsonl",
}


WRITABLE_FORMATS: Final = tuple(_EXTENSIONS)


@dataclass(frozen=True, slots=True)
class Faults:
    dirty: float = 0.0
    duplicates: float = 0.0
    late: float = 0.0


@dataclass(slots=True)
class WriteSummary:
    files: int = 0
    rows: int = 0
    seconds: float = 0.0


class RowSink(Protocol):
    def write(self, rows: pl.DataFrame, stamp: float) -> object:
        """Deliver one chunk of rows (``_dirt`` column included) emitted at ``stamp``."""


class FileWriter:
    """Numbers files ``events_<unix_ts>_<n>.<ext>`` and renames them into place."""

    def __init__(self, out: Path, fmt: InputFormat, *, compress: bool = False) -> None:
        self.out = out
        self.fmt = fmt
        self.compress = compress
        self.sequence = 0
        out.mkdir(parents=True, exist_ok=True)

    def write(self, rows: pl.DataFrame, stamp: float) -> Path:
        payload = render(rows, self.fmt)
        suffix = _EXTENSIONS[self.fmt] + (".gz" if self.compress else "")
        if self.compress:
            payload = gzip.compress(payload, compresslevel=1, mtime=0)
        name = f"events_{int(stamp)}_{self.sequence}.{suffix}"
        self.sequence += 1
        temp = self.out / f".{name}.tmp"
        temp.write_bytes(payload)
        temp.replace(self.out / name)
        return self.out / name


def render(rows: pl.DataFrame, fmt: InputFormat) -> bytes:
    """Serialise rows (with an optional ``_dirt`` column) exactly as the format wants."""
    dirt = rows["_dirt"] if "_dirt" in rows.columns else pl.Series([None] * rows.height)
    timestamp_format = "%Y-%m-%d %H:%M:%S" if fmt is InputFormat.SEED else "%Y-%m-%dT%H:%M:%S%.3fZ"
    stamped = rows.with_columns(
        pl.when(pl.lit(dirt) == Dirt.BAD_TIMESTAMP)
        .then(pl.lit("2024-13-45 25:61:00"))
        .when(pl.lit(dirt) == Dirt.FUTURE_TIMESTAMP)
        .then((pl.col("event_timestamp") + timedelta(days=365 * 80)).dt.strftime(timestamp_format))
        .otherwise(pl.col("event_timestamp").dt.strftime(timestamp_format))
        .alias("event_timestamp")
    )
    if fmt is InputFormat.SEED:
        purchase = pl.col("event_type") == "purchase"
        table = stamped.select(
            pl.when(purchase).then(pl.col(c)).otherwise(None).alias(c)
            if c in ("quantity", "price")
            else pl.col(c)
            for c in SEED_COLUMNS
        )
        payload = table.write_csv(include_header=True).encode()
    elif fmt is InputFormat.CANONICAL:
        payload = stamped.select(_written(stamped)).write_csv(include_header=True).encode()
    else:
        payload = stamped.select(_written(stamped)).write_ndjson().encode()
    return _break_lines(payload, dirt, header=fmt is not InputFormat.JSONL)


def _break_lines(payload: bytes, dirt: pl.Series, *, header: bool) -> bytes:
    """Apply the line-level faults: a missing field / broken JSON, invalid UTF-8."""
    rows = np.flatnonzero(dirt.is_in([Dirt.COLUMN_COUNT.value, Dirt.INVALID_UTF8.value]).to_numpy())
    if rows.size == 0:
        return payload
    lines = payload.split(b"\n")
    first = 1 if header else 0
    for row in rows:
        line = lines[first + row]
        if dirt[int(row)] == Dirt.COLUMN_COUNT:
            lines[first + row] = line[:-1] if line.endswith(b"}") else line.rsplit(b",", 1)[0]
        else:
            cut = line.index(b",") + 1 if not line.startswith(b"{") else 14
            lines[first + row] = line[:cut] + b"\xff\xfe" + line[cut:]
    return b"\n".join(lines)


_MIN_CUSTOMERS: Final = 5_000
_EVENTS_PER_CUSTOMER: Final = 20


def generate_backlog(
    sink: RowSink,
    *,
    events: int,
    seed: int | None,
    faults: Faults,
    file_rows: int = 10_000,
    start: datetime | None = None,
    span: timedelta = timedelta(days=1),
    progress: Callable[[int], None] | None = None,
    fraud: float = 0.0,
    fraud_labels: Path | None = None,
    shop: Shop | None = None,
) -> WriteSummary:
    """A backlog of ``events`` events (plus duplicates) in chunks; reproducible with a seed.
    With ``fraud`` a share of the orders is labelled fraud, the labels written as CSV to
    ``fraud_labels`` (event_id, pattern, instance). ``shop``: the catalog and customers to
    use (default: built from the seed, sized by ``shop_customers(events)``)."""
    clock = time.perf_counter()
    if start is None:
        start = REPRODUCIBLE_START if seed is not None else datetime.now(UTC) - span
    rng = np.random.default_rng(seed)
    if shop is None:
        shop = build_shop(
            seed if seed is not None else int(rng.integers(0, 2**31)),
            customers=shop_customers(events),
        )
    simulated = simulate(shop, rng, events, start, span.total_seconds())
    if fraud:
        injected = inject_fraud(simulated, shop, rng, fraud)
        simulated = injected.events
        if fraud_labels is not None:
            injected.labels.write_csv(fraud_labels)
    planned = plan(
        simulated,
        rng,
        dirty=faults.dirty,
        duplicates=faults.duplicates,
        late=faults.late,
    )
    summary = WriteSummary()
    for offset in range(0, planned.height, file_rows):
        chunk = planned.slice(offset, file_rows)
        sink.write(chunk, float(chunk["_emit"][0]))
        summary.files += 1
        summary.rows += chunk.height
        if progress is not None:
            progress(chunk.height)
    summary.seconds = time.perf_counter() - clock
    return summary


def shop_customers(events: int) -> int:
    """About twenty events per customer: a million-event day comes from 50,000 customers,
    not a few thousand each ordering dozens of times."""
    return max(_MIN_CUSTOMERS, events // _EVENTS_PER_CUSTOMER)


def stream_live(
    sink: RowSink,
    *,
    rate: float,
    duration: float | None,
    seed: int | None,
    faults: Faults,
    interval: float = 0.2,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    shop: Shop | None = None,
) -> WriteSummary:
    """Live traffic: every ``interval`` a chunk of ``rate * interval`` events stamped now.
    ``shop``: the catalog and customers to use, e.g. the history's, so that customers keep
    their devices, addresses and cards (default: built from the seed)."""
    rng = np.random.default_rng(seed)
    if shop is None:
        shop = build_shop(seed if seed is not None else int(rng.integers(0, 2**31)))
    summary = WriteSummary()
    began = time.monotonic()
    owed = 0.0
    recent: pl.DataFrame | None = None
    stop = stop or threading.Event()
    while not stop.is_set() and (duration is None or time.monotonic() - began < duration):
        tick = time.monotonic()
        owed += rate * interval
        count = int(owed)
        owed -= count
        if count:
            now = datetime.now(UTC)
            chunk = _live_chunk(shop, rng, count, now, interval, faults, recent)
            sink.write(chunk, now.timestamp())
            recent = chunk
            summary.files += 1
            summary.rows += chunk.height
            if progress is not None:
                progress(chunk.height)
        stop.wait(max(0.0, interval - (time.monotonic() - tick)))
    summary.seconds = time.monotonic() - began
    return summary


def _live_chunk(
    shop: Shop,
    rng: np.random.Generator,
    count: int,
    now: datetime,
    interval: float,
    faults: Faults,
    recent: pl.DataFrame | None,
) -> pl.DataFrame:
    simulated = simulate(shop, rng, count, now - timedelta(seconds=interval), interval)
    # Sessions run for minutes; squeeze this slice of traffic into the last interval.
    spread = np.sort(rng.uniform(-interval, 0, simulated.height))
    late = rng.random(simulated.height) < faults.late
    shift = spread - np.where(late, rng.uniform(120, 3 * 3600, simulated.height), 0.0)
    now_us = int(now.timestamp() * 1_000_000)
    simulated = simulated.with_columns(
        (pl.lit(now_us) + pl.Series((shift * 1_000_000).astype(np.int64)))
        .cast(pl.Datetime("us"))
        .alias("event_timestamp")
    )
    planned = plan(simulated, rng, dirty=faults.dirty, duplicates=0.0, late=0.0)
    copies = round(count * faults.duplicates)
    if recent is not None and copies:
        picks = recent.filter(pl.col("_dirt").is_null())
        if picks.height:
            planned = pl.concat([planned, picks[rng.integers(0, picks.height, copies)]])
    return planned


def _written(events: pl.DataFrame) -> list[str]:
    """The canonical fields the generator makes, in canonical order."""
    return [name for name in FIELD_NAMES if name in events.columns]
