"""Commit turns: batches finish in any order, but each waits for every earlier one."""

from __future__ import annotations

import threading

import pytest

from shopstream.store.commit_order import CommitOrder, EarlierBatchFailed


def _waits(turn_wait: threading.Thread) -> bool:
    turn_wait.join(timeout=0.2)
    return turn_wait.is_alive()


def test_a_turn_comes_once_every_earlier_batch_finished() -> None:
    order = CommitOrder()
    first, second, third = order.turn(), order.turn(), order.turn()
    first.wait()  # nothing before it
    waiting = threading.Thread(target=third.wait)
    waiting.start()

    second.finish()  # out of order: the third still waits for the first
    assert _waits(waiting)
    first.finish()
    assert not _waits(waiting)


def test_finishing_twice_does_not_skip_a_turn() -> None:
    order = CommitOrder()
    first, second, third = order.turn(), order.turn(), order.turn()
    first.finish()
    first.finish()
    waiting = threading.Thread(target=third.wait)
    waiting.start()
    assert _waits(waiting)
    second.finish()
    assert not _waits(waiting)


def test_after_a_failure_no_later_batch_may_commit() -> None:
    order = CommitOrder()
    first, second = order.turn(), order.turn()
    outcome: list[BaseException] = []

    def wait_for_turn() -> None:
        try:
            second.wait()
        except EarlierBatchFailed as error:
            outcome.append(error)

    waiting = threading.Thread(target=wait_for_turn)
    waiting.start()
    assert _waits(waiting)
    order.break_off()
    waiting.join(timeout=5)
    assert len(outcome) == 1
    first.finish()  # too late: the order stays broken
    with pytest.raises(EarlierBatchFailed):
        second.wait()
