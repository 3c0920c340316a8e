"""Read a large (or compressed) file as a stream of pieces of whole records.

Memory then follows ``SHOPSTREAM_FILE_PIECE_BYTES``, not the file: a gzip file is inflated
as it is read, with the size and ratio limits checked as it grows, and each piece is cut
at a line break outside any quoted field. A CSV piece repeats the header line, so every
piece parses on its own. Pieces carry their place in the file (see
:class:`~shopstream.contract.FilePiece`), so the loader commits them in order and a
restart resumes after the last committed one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final

import numpy as np

from shopstream.contract import FilePiece, FileProgress, IncomingFile
from shopstream.parse.reader import FileRejectedError, inflate
from shopstream.validation.limits import ReadLimits
from shopstream.validation.rules import FileRejection

_READ_BYTES: Final = 1 << 20
_NEWLINE, _QUOTE = 10, 34


class PieceReader:
    """Hands out one file's pieces in order; ``next_piece`` returns None once the last
    piece was handed out."""

    def __init__(
        self,
        handle: BinaryIO,
        item: IncomingFile,
        *,
        compressed: bool,
        csv: bool,
        piece_bytes: int,
        limits: ReadLimits,
        resume: FileProgress | None,
    ) -> None:
        self._item = item
        self._raw_head = item.data[: limits.excerpt_bytes]
        self._handle = handle
        self._csv = csv
        self._piece_bytes = piece_bytes
        self._limits = limits
        self._chunks = inflate(handle, limits) if compressed else _plain(handle, limits)
        self._buffer = bytearray()
        self._eof = False
        self._offset = 0  # decompressed offset of the buffer's first byte
        self._line = 1  # file line number of the buffer's first byte
        self._index = 0
        self._header = b""
        self._finished = False
        self._resume = resume
        self._started = False

    @property
    def path(self) -> str:
        return self._item.path

    def close(self) -> None:
        self._handle.close()

    def next_piece(self) -> IncomingFile | None:
        if self._finished:
            return None
        try:
            if not self._started:
                self._started = True
                if self._csv:
                    self._header = self._read_header()
                if self._resume is not None:
                    self._skip_to(self._resume)
            return self._next_piece()
        except FileRejectedError as rejection:
            # The rest of the file (a bomb, too large, broken) is one rejected last piece.
            self._finished = True
            head = bytes(self._buffer[: self._limits.excerpt_bytes])
            return self._piece(head, len(self._buffer), last=True, rejection=rejection)

    # -- internals ----------------------------------------------------------------------

    def _next_piece(self) -> IncomingFile:
        self._fill(self._piece_bytes)
        cut = self._cut(self._piece_bytes)
        if cut is None and not self._eof:
            self._fill(self._piece_bytes + self._limits.max_line_bytes)
            cut = self._cut(self._piece_bytes + self._limits.max_line_bytes)
        last = self._eof and (cut is None or cut == len(self._buffer))
        if cut is None:
            # No record boundary in the window: the whole window goes (a record this long
            # is quarantined in fragments, each one accounted for).
            cut = len(self._buffer)
        body = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        self._finished = last
        return self._piece(body, cut, last=last)

    def _piece(
        self,
        body: bytes,
        consumed: int,
        *,
        last: bool,
        rejection: FileRejectedError | None = None,
    ) -> IncomingFile:
        first = self._index == 0
        rejected_as = (rejection.reason, rejection.detail) if rejection is not None else None
        if first and last:
            # The whole file in one piece: an ordinary file, read already decompressed.
            data = self._header + body if rejection is None else self._raw_head
            return IncomingFile(
                self._item.path,
                data,
                self._item.content_hash,
                size=self._item.size_bytes,
                decoded=True,
                rejected_as=rejected_as,
            )
        piece = FilePiece(
            index=self._index,
            start=0 if first else self._offset,
            end=self._offset + consumed,
            end_line=self._line + body.count(b"\n"),
            # Piece line 1 is the header (CSV) or its first record (JSON Lines).
            line_shift=self._line - (2 if self._csv else 1),
            last=last,
        )
        self._offset += consumed
        self._line = piece.end_line
        self._index += 1
        return IncomingFile(
            self._item.path,
            self._header + body,
            self._item.content_hash,
            size=self._item.size_bytes,
            decoded=True,
            piece=piece,
            rejected_as=rejected_as,
        )

    def _read_header(self) -> bytes:
        """The CSV header line (with its break), kept to head every piece."""
        while b"\n" not in self._buffer and not self._eof:
            if len(self._buffer) > self._limits.max_line_bytes:
                raise FileRejectedError(
                    FileRejection.HEADER_TOO_LONG,
                    f"the first line is longer than {self._limits.max_line_bytes:,} bytes",
                )
            self._fill(len(self._buffer) + _READ_BYTES)
        end = self._buffer.find(b"\n")
        end = len(self._buffer) if end < 0 else end + 1
        header = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._offset = end
        self._line = 2
        return header

    def _skip_to(self, resume: FileProgress) -> None:
        """Drop what committed pieces already loaded (inflating it again, if compressed)."""
        while self._offset + len(self._buffer) < resume.next_offset and not self._eof:
            self._fill(len(self._buffer) + _READ_BYTES)
            drop = min(len(self._buffer), resume.next_offset - self._offset)
            del self._buffer[:drop]
            self._offset += drop
        drop = min(len(self._buffer), resume.next_offset - self._offset)
        del self._buffer[:drop]
        self._offset += drop
        self._line = resume.next_line
        self._index = resume.pieces

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._eof:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._eof = True
            else:
                self._buffer += chunk

    def _cut(self, window: int) -> int | None:
        """The end of the last whole record within ``window`` bytes (None: none ends
        there); a CSV record ends only at a break outside quotes (an even quote count)."""
        if self._eof and len(self._buffer) <= window:
            return len(self._buffer) if self._buffer else None
        view = np.frombuffer(self._buffer, dtype=np.uint8)[:window]
        breaks = np.flatnonzero(view == _NEWLINE)
        if self._csv and breaks.size:
            quotes = np.cumsum(view == _QUOTE)
            breaks = breaks[quotes[breaks] % 2 == 0]
        return int(breaks[-1]) + 1 if breaks.size else None


def _plain(handle: BinaryIO, limits: ReadLimits) -> Iterator[bytes]:
    total = 0
    while chunk := handle.read(_READ_BYTES):
        total += len(chunk)
        if total > limits.max_file_bytes:
            raise FileRejectedError(
                FileRejection.TOO_LARGE, f"more than {limits.max_file_bytes:,} bytes"
            )
        yield chunk
