"""The contract between a source and the runner."""

from __future__ import annotations

from typing import Protocol

from shopstream.engines.embedded.batch import IncomingFile


class Source(Protocol):
    """Hands out input not yet committed; told afterwards what was committed."""

    name: str

    def poll(self, max_rows_hint: int) -> list[IncomingFile]:
        """Input that is ready now and not handed out before (may be empty)."""

    def committed(self, items: list[IncomingFile]) -> None:
        """The batch holding ``items`` committed: acknowledge, archive or delete them."""

    def abandoned(self, items: list[IncomingFile]) -> None:
        """The batch holding ``items`` will not commit now: hand them out again later."""

    def idle(self) -> bool:
        """Nothing is waiting and nothing is in flight."""
