"""``shopstream fx load``: exchange rates, so revenue in several currencies can be totalled.

A rates file is CSV with the columns ``date, currency, rate``: one unit of ``currency``
is worth ``rate`` units of the reporting currency on ``date``. Loading is an upsert (the
same file twice changes nothing; a corrected file replaces its days' rates) in one
transaction, and a file with any bad line loads nothing: a half-loaded rate table would
convert some days and not others without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import polars as pl
import psycopg

from shopstream.errors import TerminalError

_COLUMNS: Final = ("date", "currency", "rate")
_CODE: Final = r"^[A-Z]{3}$"
_SHOWN_ERRORS: Final = 5


class RatesFileError(TerminalError):
    """The rates file cannot be loaded as it is; the message names the lines at fault."""


@dataclass(frozen=True, slots=True)
class RatesLoaded:
    rows: int
    currencies: tuple[str, ...]
    first_day: date
    last_day: date


def read_rates(data: bytes, name: str) -> pl.DataFrame:
    """The file's rates as (day, currency, rate) rows; raises :class:`RatesFileError`."""
    try:
        raw = pl.read_csv(data, infer_schema=False, raise_if_empty=False)
    except pl.exceptions.PolarsError as error:
        raise RatesFileError(f"{name}: not a CSV file ({error})") from error
    raw = raw.rename({c: c.strip().lower() for c in raw.columns})
    missing = [c for c in _COLUMNS if c not in raw.columns]
    if missing:
        raise RatesFileError(
            f"{name}: no column {', '.join(missing)}; a rates file has the header"
            f" {','.join(_COLUMNS)} (rate: units of the reporting currency per unit)"
        )
    rates = raw.select(
        (pl.int_range(pl.len()) + 2).alias("line"),
        pl.col("date").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("day"),
        pl.col("currency").str.strip_chars().str.to_uppercase().alias("currency"),
        pl.col("rate").str.strip_chars().cast(pl.Float64, strict=False).alias("parsed"),
        pl.col("rate").str.strip_chars().alias("rate"),
    )
    problems = rates.select(
        "line",
        pl.when(pl.col("day").is_null())
        .then(pl.lit("date is not YYYY-MM-DD"))
        .when(~pl.col("currency").str.contains(_CODE).fill_null(value=False))
        .then(pl.lit("currency is not a three-letter ISO 4217 code"))
        .when(~(pl.col("parsed") > 0).fill_null(value=False))
        .then(pl.lit("rate is not a number above 0"))
        .alias("problem"),
    ).drop_nulls("problem")
    if problems.height:
        shown = "; ".join(
            f"line {line}: {problem}" for line, problem in problems.head(_SHOWN_ERRORS).rows()
        )
        more = problems.height - _SHOWN_ERRORS
        raise RatesFileError(
            f"{name}: {problems.height:,} bad lines, nothing loaded ({shown}"
            + (f"; and {more:,} more" if more > 0 else "")
            + ")"
        )
    doubled = rates.filter(pl.struct("day", "currency").is_duplicated())
    if doubled.height:
        day, currency = doubled.row(0, named=True)["day"], doubled.row(0, named=True)["currency"]
        raise RatesFileError(f"{name}: {currency} has two rates for {day}; nothing loaded")
    if not rates.height:
        raise RatesFileError(f"{name}: no rates in the file")
    return rates.select("day", "currency", "rate")


def load_rates(conn: psycopg.Connection[Any], rates: pl.DataFrame, quote: str) -> RatesLoaded:
    """Upsert ``rates`` into ``fx_rates`` as rates to ``quote``, in one transaction."""
    with conn.transaction():
        conn.execute(
            """CREATE TEMP TABLE IF NOT EXISTS stage_fx_rates
                   (day date, currency text, rate numeric) ON COMMIT DELETE ROWS"""
        )
        with conn.cursor().copy("COPY stage_fx_rates (day, currency, rate) FROM STDIN") as copy:
            for row in rates.iter_rows():
                copy.write_row(row)
        conn.execute(
            """INSERT INTO fx_rates AS f (day, currency, quote, rate)
               SELECT day, currency, %s, rate FROM stage_fx_rates ORDER BY 1, 2
               ON CONFLICT (quote, currency, day) DO UPDATE
                   SET rate = excluded.rate, loaded_at = now()
                 WHERE f.rate IS DISTINCT FROM excluded.rate""",
            (quote,),
        )
    days = rates.get_column("day")
    return RatesLoaded(
        rows=rates.height,
        currencies=tuple(sorted(rates.get_column("currency").unique().to_list())),
        first_day=days.min(),  # type: ignore[arg-type]
        last_day=days.max(),  # type: ignore[arg-type]
    )


def rate_coverage(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Per reporting and source currency: the days covered and the latest rate."""
    return conn.execute(
        """SELECT quote, currency, count(*), min(day), max(day),
                  (array_agg(rate ORDER BY day DESC))[1]
             FROM fx_rates GROUP BY quote, currency ORDER BY quote, currency"""
    ).fetchall()
