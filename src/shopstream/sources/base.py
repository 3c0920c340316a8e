"""The contract between a source and the runner."""

from __future__ import annotations

from abc import ABC, abstractmethod

from shopstream.contract import IncomingFile, ParsedBatch
from shopstream.schema import InputFormat
from shopstream.validation.limits import ReadLimits


class Source(ABC):
    """Hands out input not yet committed; told afterwards what was committed.

    Calls come from the runner's two threads but never at the same time: the runner holds
    one lock around each of them.
    """

    name: str
    input_format: InputFormat | None = None  # None: recognised per file (extension, header)

    @abstractmethod
    def poll(self, max_rows_hint: int) -> list[IncomingFile]:
        """Input that is ready now and not handed out before (may be empty)."""

    @abstractmethod
    def committed(self, items: list[IncomingFile]) -> None:
        """The batch holding ``items`` committed: acknowledge, archive or delete them."""

    @abstractmethod
    def abandoned(self, items: list[IncomingFile]) -> None:
        """The batch holding ``items`` will not commit now: hand them out again later."""

    @abstractmethod
    def idle(self) -> bool:
        """Nothing is waiting and nothing is in flight."""

    def read_limits(self, limits: ReadLimits) -> ReadLimits:
        """The parse bounds for this source's items (a stream, whose records are each
        accounted for on their own, may lift the whole-file ones)."""
        return limits

    def before_load(self, batch: ParsedBatch, items: list[IncomingFile]) -> None:  # noqa: B027 - optional hook
        """Side effects that must happen before the batch may commit (never lost after)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the runner calls this once, on its way out."""
