"""Batches load side by side, each in its own transaction, and commit in the order read.

A loader transaction has two halves. Its first half writes rows no other batch touches
(events, quarantine rows, file ledger entries); its second half folds rollups and
sessions, moves stream offsets and commits, and those rows are shared with the batches
around it. With two connections, a batch runs its first half while the batch before it
runs its second: the two halves use the database's two cores instead of one.

The second halves run strictly in batch order, so stream offsets and sessions advance as
they would one batch at a time. No first half waits for a lock a later batch holds: a
batch never writes an event id an earlier in-flight batch holds (those count as its
duplicates, see ``ParsedBatch.in_flight_ids``), so the order should never deadlock; should
a lock cycle with the database arise all the same, the later batch's wait runs out
(:class:`TurnOverdue`), it rolls back, releasing its locks, and waits outside a transaction.
"""

from __future__ import annotations

import threading


class EarlierBatchFailed(Exception):  # noqa: N818 - an outcome, not a failure of this batch
    """An earlier batch failed or stopped without committing; later ones must not commit
    before it, so they roll back and are read again."""


class TurnOverdue(Exception):  # noqa: N818 - an outcome, not a failure
    """Earlier batches took longer than the waiting batch would hold its locks for."""


class CommitOrder:
    """Hands out turns, in the order batches are read. Thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0
        self._next = 0
        self._finished: set[int] = set()
        self._broken = False

    def turn(self) -> CommitTurn:
        """The next batch's place in the order."""
        with self._changed:
            position = self._issued
            self._issued += 1
        return CommitTurn(self, position)

    def break_off(self) -> None:
        """A batch failed: no batch still waiting may commit."""
        with self._changed:
            self._broken = True
            self._changed.notify_all()

    def _wait(self, position: int, timeout: float | None) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: self._next >= position or self._broken, timeout=timeout
            ):
                raise TurnOverdue
            if self._broken:
                raise EarlierBatchFailed

    def _finish(self, position: int) -> None:
        with self._changed:
            if position >= self._next:
                self._finished.add(position)
            while self._next in self._finished:
                self._finished.remove(self._next)
                self._next += 1
            self._changed.notify_all()


class CommitTurn:
    """One batch's place in a :class:`CommitOrder`."""

    def __init__(self, order: CommitOrder, position: int) -> None:
        self._order = order
        self._position = position

    @property
    def position(self) -> int:
        return self._position

    def wait(self, timeout: float | None = None) -> None:
        """Block until every earlier batch has committed or given up its turn; raises
        :class:`TurnOverdue` after ``timeout`` seconds."""
        self._order._wait(self._position, timeout)

    def finish(self) -> None:
        """This batch committed, or will not (its input was committed elsewhere, or its
        stream offsets moved): later batches may go on. Idempotent."""
        self._order._finish(self._position)
