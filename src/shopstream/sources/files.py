"""A directory of dropped files, read oldest first, each exactly once.

Writers should write under a hidden or ``.tmp`` name and rename (atomic). For writers
that do not, a file is read only once it has been quiet for ``settle_seconds``: its mtime
is that old, or its size and mtime were the same on two polls that far apart.

Nothing in the directory can stop the source: a file it may not read is reported with
its path and tried again later; a file over the size limit is hashed as a stream and
handed on for rejection, never held whole; symlinks and special files are skipped with a
log line. A file is archived or deleted only once the ledger holds exactly that path and
content, and only if it still has the content that was loaded. A file larger than the
piece size, or compressed, is read as a stream of pieces (see ``pieces``), so memory
follows the settings, not the file.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat as stat_module
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from shopstream.contract import FileProgress, IncomingFile
from shopstream.parse.reader import GZIP_MAGIC
from shopstream.schema import DATA_SUFFIXES, InputFormat
from shopstream.sources.base import Source
from shopstream.sources.pieces import PieceReader
from shopstream.validation.limits import DEFAULT_LIMITS, DEFAULT_PIECE_BYTES, ReadLimits
from shopstream.validation.rules import FileRejection

log = logging.getLogger(__name__)

_TEMP_SUFFIXES: Final = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_AVERAGE_ROW_BYTES: Final = 100
_READ_CHUNK: Final = 1 << 20
_HEAD_BYTES: Final = 1 << 20  # kept of a file over the limit (for its quarantine excerpt)
# How long a file that could not be read waits before it is tried again (a change of its
# permissions or content retries it at once).
_UNREADABLE_RETRY_NS: Final = 30 * 10**9


class Ledger(Protocol):
    """What the source asks the store between batches."""

    def holds(self, path: str, content_hash: str) -> bool:
        """Is exactly this file recorded? Asked right before archiving or deleting it."""

    def progress(self, path: str, content_hash: str) -> FileProgress | None:
        """Where loading a file in pieces stopped (None: not begun)."""


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int
    ctime_ns: int = 0  # a chmod moves only this


@dataclass(frozen=True, slots=True)
class _Unreadable:
    seen: _Seen
    since_ns: int


def is_candidate_name(name: str) -> bool:
    """Hidden, temporary and non-data files are never read."""
    if name.startswith((".", "_", "~")) or name.endswith(_TEMP_SUFFIXES):
        return False
    return name.endswith(DATA_SUFFIXES)


class DirectorySource(Source):
    """Polls one directory; the ledger (``known``) makes re-delivered files no-ops."""

    def __init__(
        self,
        directory: Path,
        *,
        known: dict[str, set[str]],
        archive: Path | None = None,
        delete: bool = False,
        settle_seconds: float = 0.1,
        input_format: InputFormat | None = None,
        limits: ReadLimits = DEFAULT_LIMITS,
        piece_bytes: int = DEFAULT_PIECE_BYTES,
        ledger: Ledger | None = None,
    ) -> None:
        if (archive is not None or delete) and ledger is None:
            raise ValueError("archive or delete needs the ledger")
        self.directory = directory.resolve()
        self.name = str(self.directory)
        self.input_format = input_format
        self._known = known
        self._archive = archive.resolve() if archive else None
        self._delete = delete
        self._ledger = ledger
        self._settle_ns = int(settle_seconds * 1e9)
        self._limits = limits
        self._piece_bytes = piece_bytes
        self._previous: dict[str, _Seen] = {}
        # Files handed out and not settled (stat when read), their pieces still out, and
        # the readers of files being read in pieces.
        self._in_flight: dict[str, _Seen] = {}
        self._pieces_out: Counter[str] = Counter()
        self._readers: dict[str, PieceReader] = {}
        self._done: dict[str, _Seen] = {}
        self._unreadable: dict[str, _Unreadable] = {}
        self._skipped: set[str] = set()
        self._waiting = False
        if self._archive:
            self._archive.mkdir(parents=True, exist_ok=True)

    def poll(self, max_rows_hint: int) -> list[IncomingFile]:
        budget = max_rows_hint * _AVERAGE_ROW_BYTES
        picked: list[IncomingFile] = []
        for path in list(self._readers):
            budget = self._take_pieces(path, picked, budget)
        for path, seen in self._stable_files():
            if picked and budget <= 0:
                break
            read = self._read(path, seen)
            if read is None:
                continue
            incoming, at_read = read
            self._in_flight[path] = at_read
            if incoming is None:
                budget = self._take_pieces(path, picked, budget)
            else:
                picked.append(incoming)
                budget -= len(incoming.data)
        return picked

    def committed(self, items: list[IncomingFile]) -> None:
        for item in items:
            if item.piece is not None and not item.piece.last:
                self._pieces_out[item.path] -= 1
                continue
            self._known.setdefault(item.path, set()).add(item.content_hash)
            self._finish(item.path)
            self._dispose(item, self._in_flight.pop(item.path, None))

    def abandoned(self, items: list[IncomingFile]) -> None:
        """Hand the files out again later; a file read in pieces is read again from its
        stored position, once none of its pieces is out any more."""
        for item in items:
            if item.piece is not None:
                self._pieces_out[item.path] -= 1
                reader = self._readers.pop(item.path, None)
                if reader is not None:
                    reader.close()
                if self._pieces_out[item.path] > 0:
                    continue
            self._finish(item.path)
            self._in_flight.pop(item.path, None)
            self._previous.pop(item.path, None)

    def idle(self) -> bool:
        return not self._in_flight and not self._waiting

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    # -- internals ----------------------------------------------------------------------

    def _take_pieces(self, path: str, picked: list[IncomingFile], budget: int) -> int:
        """The next pieces of a file being read in pieces, while the batch has room."""
        reader = self._readers[path]
        while not picked or budget >= self._piece_bytes:
            try:
                piece = reader.next_piece()
            except OSError as error:
                log.warning("cannot go on reading %s (%s); it is read again later", path, error)
                piece = None
                self._abandon_reader(path)
            if piece is None:
                break
            picked.append(piece)
            self._pieces_out[path] += 1
            budget -= len(piece.data)
            if piece.piece is None or piece.piece.last:
                reader.close()
                del self._readers[path]
                break
        return budget

    def _abandon_reader(self, path: str) -> None:
        self._readers.pop(path).close()
        if self._pieces_out[path] <= 0:
            self._finish(path)
            self._in_flight.pop(path, None)
        self._previous.pop(path, None)

    def _finish(self, path: str) -> None:
        self._pieces_out.pop(path, None)
        reader = self._readers.pop(path, None)
        if reader is not None:
            reader.close()

    def _stable_files(self) -> list[tuple[str, _Seen]]:
        current: dict[str, _Seen] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            entries = []
        except PermissionError as error:
            log.warning("cannot list %s (%s); trying again later", self.directory, error)
            entries = []
        for entry in entries:
            if not is_candidate_name(entry.name):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat_module.S_ISREG(info.st_mode):
                self._skip_once(entry.path, info.st_mode)
                continue
            current[entry.path] = _Seen(info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        stable = []
        waiting = False
        now = time.time_ns()
        quiet_since = now - self._settle_ns
        for path, seen in current.items():
            if path in self._in_flight or self._done.get(path) == seen:
                continue
            if self._still_unreadable(path, seen, now):
                continue
            if seen.mtime_ns <= quiet_since or self._previous.get(path) == seen:
                stable.append((path, seen))
            else:
                waiting = True
        self._previous = current
        self._done = {p: s for p, s in self._done.items() if p in current}
        self._unreadable = {p: u for p, u in self._unreadable.items() if p in current}
        self._waiting = waiting or bool(stable)
        stable.sort(key=lambda item: (item[1].mtime_ns, item[0]))
        return stable

    def _skip_once(self, path: str, mode: int) -> None:
        """Symlinks and special files are never read (a symlink could point anywhere)."""
        if path in self._skipped:
            return
        self._skipped.add(path)
        kind = "a symlink" if stat_module.S_ISLNK(mode) else "not a regular file"
        log.warning("%s is %s; skipping it", path, kind)

    def _still_unreadable(self, path: str, seen: _Seen, now: int) -> bool:
        """A file that could not be read waits, unless it changed, without counting as
        pending input (so ``--until-idle`` ends); it is retried every so often."""
        failed = self._unreadable.get(path)
        if failed is None:
            return False
        if failed.seen != seen or now - failed.since_ns >= _UNREADABLE_RETRY_NS:
            del self._unreadable[path]
            return False
        return True

    def _read(self, path: str, seen: _Seen) -> tuple[IncomingFile | None, _Seen] | None:
        """The file read once: its bytes (None when it is read in pieces: its reader is
        registered) and its stat; None when there is nothing to hand out now."""
        try:
            with _open_regular(path) as handle:
                info = os.fstat(handle.fileno())
                at_read = _Seen(info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                if info.st_size != seen.size:
                    self._previous.pop(path, None)  # still being written: look again later
                    return None
                data, digest, size = _read_bounded(handle, self._piece_bytes)
            whole = IncomingFile(path, data, digest, size=size)
            hashes = self._known.get(path, set())
            if digest in hashes:
                log.info("%s was ingested before; skipping", path)
                self._dispose(whole, at_read)
                return None
            if hashes:
                log.warning("%s changed after it was ingested; quarantining the new content", path)
                return replace(whole, changed_from=min(hashes)), at_read
            if size > self._limits.max_file_bytes:
                rejection = (
                    FileRejection.TOO_LARGE,
                    f"{size:,} bytes; the limit is {self._limits.max_file_bytes:,}",
                )
                return replace(whole, rejected_as=rejection), at_read
            compressed = path.endswith(".gz") or data[:2] == GZIP_MAGIC
            if size <= self._piece_bytes and not compressed:
                return whole, at_read
            self._readers[path] = self._piece_reader(whole, compressed)
            return None, at_read
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a symlink since the listing
                self._skip_once(path, stat_module.S_IFLNK)
                return None
            log.warning("cannot read %s (%s); trying again later", path, error)
            self._unreadable[path] = _Unreadable(seen, time.time_ns())
            return None

    def _piece_reader(self, whole: IncomingFile, compressed: bool) -> PieceReader:
        """A reader from where loading this file stopped (a restart mid-file)."""
        progress = self._ledger.progress(whole.path, whole.content_hash) if self._ledger else None
        if progress is not None:
            log.info("%s: resuming after piece %d", whole.path, progress.pieces)
        stem = whole.name.removesuffix(".gz")
        jsonl = (
            self.input_format is InputFormat.JSONL
            if self.input_format is not None
            else stem.endswith((".jsonl", ".ndjson"))
        )
        return PieceReader(
            _open_regular(whole.path),
            whole,
            compressed=compressed,
            csv=not jsonl,
            piece_bytes=self._piece_bytes,
            limits=self._limits,
            resume=progress,
        )

    def _dispose(self, item: IncomingFile, at_read: _Seen | None) -> None:
        """After commit: archive, delete, or remember the file as done; never a file whose
        exact content the ledger does not hold, nor one that changed since it was read."""
        path = Path(item.path)
        try:
            info = path.stat(follow_symlinks=False)
        except FileNotFoundError:
            return
        now = _Seen(info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if at_read is not None and (now.size, now.mtime_ns) != (at_read.size, at_read.mtime_ns):
            log.warning(
                "%s changed while its batch was committed; its new content is read next", path
            )
            self._previous.pop(item.path, None)
            return
        if self._delete or self._archive is not None:
            if not self._safe_to_move(item):
                return
            if self._delete:
                path.unlink(missing_ok=True)
                return
            assert self._archive is not None
            target = self._archive / path.name
            if target.exists():
                target = self._archive / f"{path.stem}.{info.st_mtime_ns}{path.suffix}"
            shutil.move(path, target)
            return
        self._done[item.path] = at_read or now

    def _safe_to_move(self, item: IncomingFile) -> bool:
        """The ledger holds exactly this path and content, and the file still has it."""
        assert self._ledger is not None
        if not self._ledger.holds(item.path, item.content_hash):
            log.error(
                "%s is not in the ledger with the content read; leaving it in place", item.path
            )
            return False
        try:
            with _open_regular(item.path) as handle:
                _, digest, _ = _read_bounded(handle, 0)
        except OSError as error:
            log.warning("cannot check %s before moving it (%s); leaving it", item.path, error)
            return False
        if digest != item.content_hash:
            log.warning("%s changed after it was read; its new content is read next", item.path)
            self._previous.pop(item.path, None)
            return False
        return True


def _open_regular(path: str) -> BinaryIO:
    """Open for reading without following a symlink in the last component."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    return os.fdopen(descriptor, "rb")


def _read_bounded(handle: BinaryIO, limit: int) -> tuple[bytes, str, int]:
    """Hash the whole file; keep its bytes only up to ``limit`` (a larger file keeps its
    head, enough for the quarantine excerpt). Returns (kept bytes, hash, size)."""
    digest = hashlib.sha256()
    kept: list[bytes] = []
    size = 0
    over = False
    while chunk := handle.read(_READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if over:
            continue
        kept.append(chunk)
        if size > limit:
            over = True
            kept = [b"".join(kept)[:_HEAD_BYTES]]
    return b"".join(kept), digest.hexdigest(), size
