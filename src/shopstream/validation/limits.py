"""Bounds on what one input file or record may cost, so memory follows settings, not input.

Each bound turns hostile or careless input into an accounted-for rejection with a rule
name (see :class:`~shopstream.validation.rules.FileRejection` and
:class:`~shopstream.validation.rules.StructuralRule`) instead of a crash or a runaway
process. Every engine parses with the same bounds.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

MIB = 1024 * 1024
# A file larger than this (decompressed) is read and loaded in pieces of about this size.
DEFAULT_PIECE_BYTES = 4 * MIB  # about SHOPSTREAM_MAX_BATCH_ROWS' default of rows


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """The bounds one parse applies (``SHOPSTREAM_MAX_*`` settings fill them in)."""

    # The largest file, after decompression, loaded at all (in pieces); larger ones are
    # rejected (their hash is still taken, streaming, so the ledger settles them).
    max_file_bytes: int = 1024 * MIB
    # Decompressed / compressed size beyond which a gzip stream counts as a bomb (checked
    # once it has produced ``ratio_floor_bytes``, so small files never trip it).
    max_compression_ratio: float = 100.0
    ratio_floor_bytes: int = 1 * MIB
    # The longest line (record) parsed; longer ones are quarantined as ``line_too_long``.
    max_line_bytes: int = 1 * MIB
    # How much of a quarantined record's raw content is stored (its size and hash always).
    excerpt_bytes: int = 64 * 1024
    # A file with more bad records than this, making up more than ``reject_bad_share`` of
    # what was read, is rejected whole with a sample instead of quarantined line by line.
    reject_bad_records: int = 100_000
    reject_bad_share: float = 0.9
    # Bad records kept as the sample of a file rejected as mostly broken.
    sample_records: int = 20

    def mostly_broken(self, bad: int, read: int) -> bool:
        return bad > self.reject_bad_records and bad > self.reject_bad_share * read

    def for_messages(self) -> ReadLimits:
        """Stream messages framed into chunks of our own making: each bad message is
        quarantined (and dead-lettered) on its own, never a chunk as a whole."""
        return replace(self, reject_bad_records=sys.maxsize, max_file_bytes=sys.maxsize)


DEFAULT_LIMITS = ReadLimits()
