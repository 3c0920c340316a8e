"""What can go wrong with the lake; none of it is cured by retrying the same call."""

from __future__ import annotations

from shopstream.errors import TerminalError


class LakeConfigurationError(TerminalError):
    """SHOPSTREAM_LAKE_URI names no place the lake can be."""


class ArchiveIncompleteError(TerminalError):
    """Retention found rows it would delete that the lake does not hold: nothing deleted."""


class UnfoldedEventsError(TerminalError):
    """Retention would delete events no rebuild has folded into the derived tables yet."""
