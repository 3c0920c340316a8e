"""Where the database is, and how to keep talking to it through outages."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import psycopg

from shopstream.errors import RetryBudgetSpentError, StopRequestedError, describe
from shopstream.metrics import record_db_failure
from shopstream.settings import Settings
from shopstream.store.errors import is_transient
from shopstream.store.roles import Purpose
from shopstream.store.server import EmbeddedPostgres

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How long one piece of work (a batch's commit, a lookup) may keep retrying
    transient failures before it counts as failed: whichever limit comes first."""

    seconds: float = 600.0
    attempts: int = 50
    max_delay: float = 30.0  # the longest wait between two attempts

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryBudget:
        return cls(
            seconds=settings.retry_budget_seconds,
            attempts=settings.retry_budget_attempts,
            max_delay=settings.retry_max_seconds,
        )


DEFAULT_BUDGET = RetryBudget()


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.home_dir, settings.pg_bin, settings.wal_archive)


@contextlib.contextmanager
def database_urls(settings: Settings) -> Iterator[Callable[[Purpose], str]]:
    """The database to use, as a URL per purpose (see :mod:`shopstream.store.roles`):
    ``SHOPSTREAM_DATABASE_URL`` (or the ingest and API URLs given beside it), or the
    embedded server with its own login role per purpose.

    An embedded server this call started is stopped again on exit; one that was already
    running (``shopstream db up``) is left running for the other processes sharing it.
    """
    if settings.database_url:
        given = {
            "owner": settings.database_url,
            "ingest": settings.ingest_database_url or settings.database_url,
            "api": settings.api_database_url or settings.database_url,
        }
        yield lambda purpose: given[purpose]
        return
    server = embedded_server(settings)
    started = server.start()
    try:
        yield lambda purpose: server.url(socket=True, purpose=purpose)
    finally:
        if started:
            server.stop()


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, connect_timeout=5, application_name="shopstream")


def retry_transient(
    operation: Callable[[], T],
    *,
    what: str,
    budget: RetryBudget,
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    """Run ``operation`` until it succeeds, fails terminally, or has spent ``budget``.

    Transient failures (by SQLSTATE) are retried with capped exponential backoff and
    jitter. A terminal one propagates unchanged; when the budget is spent,
    :class:`~shopstream.errors.RetryBudgetSpentError` carries the last one. Asked to stop
    while waiting, it raises :class:`~shopstream.errors.StopRequestedError`.
    """
    delay = 0.25
    attempt = 0
    started = time.monotonic()
    while True:
        try:
            return operation()
        except Exception as error:
            transient = is_transient(error)
            if isinstance(error, psycopg.Error):
                record_db_failure(error, retried=transient)
            if not transient:
                raise
            attempt += 1
            spent = time.monotonic() - started
            if attempt >= budget.attempts or spent + delay > budget.seconds:
                raise RetryBudgetSpentError(what, attempt, spent, error) from error
            log.warning(
                "%s failed (attempt %d, %s); retrying in %.1fs",
                what,
                attempt,
                describe(error),
                delay,
            )
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                if should_stop():
                    raise StopRequestedError(what) from error
                time.sleep(min(0.1, delay))
            delay = min(budget.max_delay, delay * 2) * random.uniform(0.8, 1.2)
