"""Drive a source through the embedded engine into the loaders.

A parser thread builds the next batch while two loader threads, each with a connection of
its own, write the batches before it: Polars and psycopg's COPY both release the GIL, so
both cores work. One batch writes its events while the one before it folds rollups and
commits; commits still come one at a time, in the order batches were read (see
``store.commit_order``). The queue between parser and loaders holds one batch, which
bounds memory whatever the backlog. The parser thread also finds which ids are duplicates
(see ``lookahead``), so a loader's work is little more than its COPY.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

import polars as pl
import psycopg

from shopstream.contract import IncomingFile, ParsedBatch
from shopstream.engines.embedded.lookahead import LookAhead
from shopstream.errors import LoadFailedError, RetryBudgetSpentError, StopRequestedError
from shopstream.logs import bind_batch
from shopstream.metrics import INPUT_WAITING, record_batch
from shopstream.parse.batch import build_batch
from shopstream.parse.mapping import NO_CHOICE, MappingChoice
from shopstream.settings import Settings
from shopstream.sources.base import Source
from shopstream.store.commit_order import CommitOrder, CommitTurn
from shopstream.store.connection import RetryBudget
from shopstream.store.derived import derive
from shopstream.store.loader import BatchResult, Loader, LoadOutcome, LoadPlan, LoadStatus
from shopstream.store.stored_ids import AheadConnection, without
from shopstream.validation.current import current_rules

log = logging.getLogger(__name__)

BatchCallback = Callable[[ParsedBatch, BatchResult], None]


@dataclass(slots=True)
class RunSummary:
    batches: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    ignored: int = 0
    seconds: float = 0.0
    quarantined_by_rule: Counter[str] = field(default_factory=Counter)

    def add(self, result: BatchResult, batch: ParsedBatch) -> None:
        self.batches += 1
        self.rows_read += result.rows_read
        self.rows_loaded += result.rows_loaded
        self.duplicates += result.duplicates_in_batch + result.duplicates_in_store
        self.quarantined += result.rows_quarantined
        self.ignored += batch.rows_ignored
        self.quarantined_by_rule.update(batch.quarantined_by_rule)


def _newest(events: pl.DataFrame) -> datetime | None:
    newest = events["event_timestamp"].max() if events.height else None
    return newest if isinstance(newest, datetime) else None


class Runner:
    """Runs until stopped, or until the source is drained when ``until_idle``."""

    def __init__(
        self,
        source: Source,
        loader: Loader,
        settings: Settings,
        *,
        until_idle: bool = False,
        on_batch: BatchCallback | None = None,
        choice: MappingChoice = NO_CHOICE,
    ) -> None:
        self._source = source
        self._settings = settings
        self._choice = choice
        self._until_idle = until_idle
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._lock = threading.Lock()
        # One batch writes its own rows while the one before it folds rollups and commits
        # (see store.commit_order); a third would only queue for the same turn.
        self._loaders = [loader, loader.with_own_connection()]
        self._workers = [
            ThreadPoolExecutor(1, thread_name_prefix=f"shopstream-load-{n}")
            for n in range(len(self._loaders))
        ]
        self._order = CommitOrder()
        self._queue: queue.Queue[_Built | None] = queue.Queue(maxsize=1)
        self._outstanding = 0
        self._ahead = AheadConnection(
            loader.url,
            budget=RetryBudget.from_settings(settings),
            should_stop=self._stop.is_set,
        )
        self._look_ahead = LookAhead(self._ahead.stored_ids, memory_ids=settings.dedupe_memory_ids)
        self._failure: BaseException | None = None

    def stop(self) -> None:
        """Finish the batch being committed, then return from :meth:`run`."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> RunSummary:
        summary = RunSummary()
        started = time.perf_counter()
        producer = threading.Thread(target=self._produce, name="shopstream-parse", daemon=True)
        producer.start()
        try:
            self._consume(summary)
        except BaseException as error:
            if self._failure is not None and self._failure is not error:
                # Both threads failed: the parser's error must reach the user too.
                log.error("the parser thread failed as well", exc_info=self._failure)  # noqa: TRY400
                error.add_note(f"the parser thread failed as well: {self._failure!r}")
            raise
        finally:
            self._stop.set()
            producer.join(timeout=30)
            for worker in self._workers:
                worker.shutdown()
            for loader in self._loaders:
                loader.close()
            self._ahead.close()
            with self._lock:
                self._source.close()
        if self._failure is not None:
            raise self._failure
        summary.seconds = time.perf_counter() - started
        return summary

    # -- parser thread ------------------------------------------------------------------

    def _produce(self) -> None:
        trigger = self._settings.trigger_ms / 1000
        try:
            while not self._stop.is_set():
                with self._lock:
                    files = self._source.poll(self._settings.max_batch_rows)
                    drained = not files and self._source.idle() and self._outstanding == 0
                INPUT_WAITING.set(0 if drained else 1)
                if files:
                    batch_id = self._ahead.reserve_batch_id()
                    with bind_batch(batch_id):
                        batch, plan = self._build(files, batch_id)
                    with self._lock:
                        self._outstanding += 1
                    self._look_ahead.handed_over(batch.events["event_id"])
                    if not self._put(_Built(files, batch, plan)):
                        self._look_ahead.taken_back()
                        with self._lock:
                            self._source.abandoned(files)
                            self._outstanding -= 1
                        return
                    continue
                if drained and self._until_idle:
                    self._put(None)
                    return
                self._stop.wait(trigger)
        except StopRequestedError:
            return  # asked to stop while a database call was waiting to retry: a clean stop
        except BaseException as error:
            self._failure = error
            self._put(None)

    def _build(self, files: list[IncomingFile], batch_id: int) -> tuple[ParsedBatch, LoadPlan]:
        """The engine's batch, and the plan worked out ahead for loading it."""
        batch = build_batch(
            files,
            source=self._source.name,
            predicates=current_rules(self._settings),
            choice=self._choice,
            limits=self._source.read_limits(self._settings.read_limits),
        )
        try:
            hint = self._look_ahead.duplicates(batch.events["event_id"])
        except (psycopg.Error, RetryBudgetSpentError) as error:
            raise LoadFailedError.of(batch_id, batch.source, error) from error
        plan = LoadPlan(
            batch_id=batch_id,
            stored_ids=hint,
            in_flight_ids=self._look_ahead.in_flight(),
            derived=derive(without(batch.events, hint)) if self._settings.rollups else None,
        )
        return batch, plan

    def _put(self, item: _Built | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _settle(
        self, files: list[IncomingFile], *, committed: bool, conflicted: bool = False
    ) -> None:
        """The oldest in-flight batch is done: committed, or not (stopping, or its stream
        offsets moved under it)."""
        self._look_ahead.settled(committed=committed, conflicted=conflicted)
        with self._lock:
            if committed:
                self._source.committed(files)
            else:
                self._source.abandoned(files)
            self._outstanding -= 1

    # -- loaders (calling thread, and one thread per connection) ---------------------------

    def _consume(self, summary: RunSummary) -> None:
        """Start each batch on the loader its predecessor but one used, and conclude the
        batches in the order they were read, each as soon as it is done."""
        loading: deque[_Loading] = deque()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.02 if loading else 0.1)
                except queue.Empty:
                    while loading and loading[0].outcome.done():
                        self._conclude(loading.popleft(), summary)
                    if self._stop.is_set():
                        break
                    continue
                if item is None:
                    break
                if len(loading) == len(self._loaders):
                    self._conclude(loading.popleft(), summary)
                loading.append(self._start(item))
                if self._stop.is_set():
                    break
            while loading:
                self._conclude(loading.popleft(), summary)
        except BaseException:
            self._order.break_off()
            for rest in loading:
                try:
                    self._conclude(rest, summary)
                except Exception:
                    log.exception("batch %s failed after an earlier one", rest.batch_id)
            raise

    def _start(self, built: _Built) -> _Loading:
        files, batch = built.files, built.batch
        with self._lock:
            self._source.before_load(batch, files)
        turn = self._order.turn()
        slot = turn.position % len(self._loaders)
        outcome = self._workers[slot].submit(
            self._load, self._loaders[slot], batch, built.plan, turn
        )
        assert built.plan.batch_id is not None
        return _Loading(files, batch, built.plan.batch_id, outcome)

    def _load(
        self, loader: Loader, batch: ParsedBatch, plan: LoadPlan, turn: CommitTurn
    ) -> LoadOutcome:
        assert plan.batch_id is not None  # the runner always reserves it ahead
        with bind_batch(plan.batch_id):
            try:
                outcome = loader.load(batch, plan, turn)
            except BaseException:
                self._order.break_off()
                raise
            if outcome.status is LoadStatus.ABANDONED:
                self._order.break_off()  # the batches after it give up too
            return outcome

    def _conclude(self, loading: _Loading, summary: RunSummary) -> None:
        batch, files = loading.batch, loading.files
        with bind_batch(loading.batch_id):
            outcome = loading.outcome.result()
            match outcome.status:
                case LoadStatus.COMMITTED:
                    assert outcome.result is not None
                    self._settle(files, committed=True, conflicted=outcome.result.conflicted)
                    self._report(batch, outcome.result, summary)
                case LoadStatus.ALREADY_COMMITTED:
                    self._settle_committed_elsewhere(files, outcome.committed_files)
                case LoadStatus.OFFSETS_MOVED:
                    log.info(
                        "another consumer committed first (%s); re-reading from there",
                        ", ".join(f"{o.topic}[{o.partition}] at {o.start}" for o in outcome.moved),
                    )
                    self._settle(files, committed=False)
                case LoadStatus.ABANDONED:
                    self._settle(files, committed=False)

    def _settle_committed_elsewhere(
        self, files: list[IncomingFile], committed: frozenset[tuple[str, str]] | None
    ) -> None:
        """Settle file by file: only files the ledger holds count as committed; the
        batch's other files were loaded by nobody and are handed out again."""
        if committed is None:
            log.warning("this batch was committed elsewhere; skipping it")
            self._settle(files, committed=True)
            return
        # A piece of a file the ledger holds: the whole file was loaded elsewhere, so the
        # source stops reading it, as after its own last piece.
        done = [
            replace(f, piece=replace(f.piece, last=True)) if f.piece is not None else f
            for f in files
            if (f.path, f.content_hash) in committed
        ]
        again = [f for f in files if (f.path, f.content_hash) not in committed]
        for item in done:
            log.warning("%s was committed elsewhere; skipping it", item.path)
        if again:
            log.info("reading %d other file(s) of this batch again", len(again))
        self._look_ahead.settled(committed=False, conflicted=False)
        with self._lock:
            self._source.committed(done)
            self._source.abandoned(again)
            self._outstanding -= 1

    def _report(self, batch: ParsedBatch, result: BatchResult, summary: RunSummary) -> None:
        summary.add(result, batch)
        record_batch(
            read=result.rows_read,
            loaded=result.rows_loaded,
            duplicates=result.duplicates_in_batch + result.duplicates_in_store,
            quarantined_by_rule=dict(batch.quarantined_by_rule),
            seconds=batch.parse_seconds + result.load_seconds,
            newest_event=_newest(batch.events),
        )
        log.info(
            "batch %d committed: read %d, loaded %d, duplicates %d, quarantined %d "
            "(parse %.0f ms, load %.0f ms)",
            result.batch_id,
            result.rows_read,
            result.rows_loaded,
            result.duplicates_in_batch + result.duplicates_in_store,
            result.rows_quarantined,
            batch.parse_seconds * 1000,
            result.load_seconds * 1000,
        )
        if self._on_batch is not None:
            self._on_batch(batch, result)


@dataclass(frozen=True, slots=True)
class _Built:
    """A batch on its way from the parser thread to a loader, with its input and plan."""

    files: list[IncomingFile]
    batch: ParsedBatch
    plan: LoadPlan


@dataclass(frozen=True, slots=True)
class _Loading:
    """A batch handed to a loader thread, with what its conclusion needs."""

    files: list[IncomingFile]
    batch: ParsedBatch
    batch_id: int
    outcome: Future[LoadOutcome]
