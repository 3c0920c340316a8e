"""Which ids of the next batch are duplicates, found ahead of the loader.

The store's key is the arbiter: the loader COPYs the ids straight into ``event_ids`` (then
the rows into ``events``), and a conflict rolls the batch back and reloads it with an exact
lookup. The look-ahead only has
to be right often, and cheap. Asking the store about every id of every batch (an index
probe per row, on the same 2 cores as the COPY) costs nearly as much as the COPY's own key
check, so the look-ahead remembers what this runner committed lately and asks the store
only about ids it has seen before. It asks about every id while input overlaps what is
stored beyond that memory (at start, and after a conflict), until a batch shows none.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

Mode = Literal["ask_all", "ask_remembered"]
StoreLookup = Callable[[pl.Series], pl.Series]


class RecentIds:
    """Roughly the last ``capacity`` committed ids, as two generations of Bloom filters.

    A match only nominates an id for the store lookup, so a false positive (well under 1 %)
    costs one index probe, never an event. Each generation holds ``capacity / 2`` ids in
    32 bits an id; when the newer one is full the older is dropped, so the filter always
    remembers at least the last ``capacity / 2`` ids and at most ``capacity``.
    """

    def __init__(self, capacity: int) -> None:
        self._per_generation = capacity // 2
        bits = 1 << max(10, (self._per_generation * 32 - 1).bit_length())
        self._mask = np.uint64(bits - 1)
        self._generations = [np.zeros(bits // 8, dtype=np.uint8) for _ in range(2)]
        self._newest_size = 0

    def add(self, ids: pl.Series) -> None:
        if self._per_generation <= 0 or ids.is_empty():
            return
        if self._newest_size >= self._per_generation:
            self._generations.reverse()
            self._generations[0][:] = 0
            self._newest_size = 0
        newest = self._generations[0]
        for bit in self._bits(ids):
            _set_bits(newest, bit)
        self._newest_size += len(ids)

    def seen(self, ids: pl.Series) -> pl.Series:
        """The ids that were (probably) committed lately."""
        if self._per_generation <= 0 or ids.is_empty():
            return ids.clear()
        first, second = self._bits(ids)
        hit = np.zeros(len(ids), dtype=bool)
        for bitmap in self._generations:
            hit |= _is_set(bitmap, first) & _is_set(bitmap, second)
        return ids.filter(pl.Series(hit))

    def _bits(self, ids: pl.Series) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        hashes = ids.hash(seed=0).to_numpy()
        return hashes & self._mask, (hashes >> np.uint64(32)) & self._mask


def _set_bits(bitmap: npt.NDArray[np.uint8], bit: npt.NDArray[np.uint64]) -> None:
    """Set every bit in ``bit``. A fancy-indexed ``|=`` keeps one write per byte when
    several bits share a byte, so the few bits lost that way are set again, until none is
    (``np.bitwise_or.at`` does it in one pass, but five times slower)."""
    byte = bit >> np.uint64(3)
    flag = np.left_shift(np.uint8(1), (bit & np.uint64(7)).astype(np.uint8))
    while byte.size:
        bitmap[byte] |= flag
        lost = (bitmap[byte] & flag) == 0
        byte, flag = byte[lost], flag[lost]


def _is_set(bitmap: npt.NDArray[np.uint8], bit: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
    shifted = bitmap[bit >> np.uint64(3)] >> (bit & np.uint64(7)).astype(np.uint8)
    is_set: npt.NDArray[np.bool_] = (shifted & 1).astype(bool)
    return is_set


class LookAhead:
    """Thread-safe: the parser thread asks, the loader thread reports commits."""

    def __init__(self, ask_store: StoreLookup, *, memory_ids: int) -> None:
        self._ask_store = ask_store
        self._recent = RecentIds(memory_ids)
        self._lock = threading.Lock()
        # Event ids of batches handed to the loader and not yet settled, oldest first.
        self._in_flight: deque[pl.Series] = deque()
        # Committed, not yet in the memory: the parser thread folds them in, off the
        # loader's critical path.
        self._committed: deque[pl.Series] = deque()
        self._mode: Mode = "ask_all"

    @property
    def mode(self) -> Mode:
        return self._mode

    def duplicates(self, ids: pl.Series) -> pl.Series:
        """Ids already stored, or in an earlier batch that will commit before this one.

        In-flight batches and the memory are read before the store: a batch that commits
        in between is then seen by one of the two, never by neither.
        """
        with self._lock:
            while self._committed:
                self._recent.add(self._committed.popleft())
            in_flight = list(self._in_flight)
            remembered = self._recent.seen(ids)
            mode = self._mode
        if mode == "ask_all":
            stored = self._ask_store(ids)
            beyond_memory = not stored.is_in(remembered.implode()).all()
            with self._lock:
                self._mode = "ask_all" if beyond_memory else "ask_remembered"
        else:
            stored = self._ask_store(remembered)
        earlier = pl.concat([stored, *in_flight]) if in_flight else stored
        return ids.filter(ids.is_in(earlier.implode()))

    def in_flight(self) -> pl.Series | None:
        """Ids of the batches handed over and not yet settled."""
        with self._lock:
            return pl.concat(self._in_flight) if self._in_flight else None

    def handed_over(self, ids: pl.Series) -> None:
        """A batch with these ids goes to the loader, after every batch handed over before."""
        with self._lock:
            self._in_flight.append(ids)

    def taken_back(self) -> None:
        """The batch handed over last never reached the loader."""
        with self._lock:
            self._in_flight.pop()

    def settled(self, *, committed: bool, conflicted: bool = False) -> None:
        """The oldest in-flight batch is done. ``conflicted``: the store held ids this
        look-ahead did not expect, so ask about every id until that stops."""
        with self._lock:
            ids = self._in_flight.popleft()
            if committed:
                self._committed.append(ids)
            if conflicted:
                self._mode = "ask_all"
