"""A directory of dropped files, read oldest first, each exactly once.

Writers should write under a hidden or ``.tmp`` name and rename (atomic). For writers
that do not, a file is read only once it has been quiet for ``settle_seconds``: its mtime
is that old, or its size and mtime were the same on two polls that far apart.

Nothing in the directory can stop the source: a file it may not read is reported with
its path and tried again later; a file over the size limit is hashed as a stream and
handed on for rejection, never held whole; symlinks and special files are skipped with a
log line. A file is archived or deleted only once the ledger holds exactly that path and
content, and only if it still has the content that was loaded.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat as stat_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from shopstream.engines.embedded.batch import IncomingFile
from shopstream.schema import DATA_SUFFIXES, InputFormat
from shopstream.sources.base import Source
from shopstream.validation.limits import DEFAULT_LIMITS

log = logging.getLogger(__name__)

_TEMP_SUFFIXES: Final = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_AVERAGE_ROW_BYTES: Final = 100
_READ_CHUNK: Final = 1 << 20
_HEAD_BYTES: Final = 1 << 20  # kept of a file over the limit (for its quarantine excerpt)
# How long a file that could not be read waits before it is tried again (a change of its
# permissions or content retries it at once).
_UNREADABLE_RETRY_NS: Final = 30 * 10**9

# Is (path, content hash) recorded in the ledger? Asked right before archive or delete.
LedgerCheck = Callable[[str, str], bool]


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
        max_file_bytes: int = DEFAULT_LIMITS.max_file_bytes,
        in_ledger: LedgerCheck | None = None,
    ) -> None:
        if (archive is not None or delete) and in_ledger is None:
            raise ValueError("archive or delete needs a ledger check")
        self.directory = directory.resolve()
        self.name = str(self.directory)
        self.input_format = input_format
        self._known = known
        self._archive = archive.resolve() if archive else None
        self._delete = delete
        self._in_ledger = in_ledger
        self._settle_ns = int(settle_seconds * 1e9)
        self._max_file_bytes = max_file_bytes
        self._previous: dict[str, _Seen] = {}
        self._in_flight: dict[str, _Seen] = {}
        self._done: dict[str, _Seen] = {}
        self._unreadable: dict[str, _Unreadable] = {}
        self._skipped: set[str] = set()
        self._waiting = False
        if self._archive:
            self._archive.mkdir(parents=True, exist_ok=True)

    def poll(self, max_rows_hint: int) -> list[IncomingFile]:
        ready = self._stable_files()
        picked: list[IncomingFile] = []
        budget = max_rows_hint * _AVERAGE_ROW_BYTES
        for path, seen in ready:
            if picked and budget <= 0:
                break
            read = self._read(path, seen)
            if read is None:
                continue
            incoming, at_read = read
            picked.append(incoming)
            self._in_flight[incoming.path] = at_read
            budget -= seen.size
        return picked

    def committed(self, items: list[IncomingFile]) -> None:
        for item in items:
            self._known.setdefault(item.path, set()).add(item.content_hash)
            at_read = self._in_flight.pop(item.path, None)
            self._dispose(item, at_read)

    def abandoned(self, items: list[IncomingFile]) -> None:
        for item in items:
            self._in_flight.pop(item.path, None)
            self._previous.pop(item.path, None)

    def idle(self) -> bool:
        return not self._in_flight and not self._waiting

    # -- internals ----------------------------------------------------------------------

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

    def _read(self, path: str, seen: _Seen) -> tuple[IncomingFile, _Seen] | None:
        """The file's bytes (or its head, when over the limit) and hash, read from one
        descriptor that refuses to follow a symlink."""
        try:
            with _open_regular(path) as handle:
                info = os.fstat(handle.fileno())
                at_read = _Seen(info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                if info.st_size != seen.size:
                    self._previous.pop(path, None)  # still being written: look again later
                    return None
                data, digest, size = _read_bounded(handle, self._max_file_bytes)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a symlink since the listing
                self._skip_once(path, stat_module.S_IFLNK)
                return None
            log.warning("cannot read %s (%s); trying again later", path, error)
            self._unreadable[path] = _Unreadable(seen, time.time_ns())
            return None
        if size != seen.size:
            self._previous.pop(path, None)
            return None
        hashes = self._known.get(path, set())
        if digest in hashes:
            log.info("%s was ingested before; skipping", path)
            self._dispose(IncomingFile(path, b"", digest, size=size), at_read)
            return None
        changed_from = next(iter(sorted(hashes)), None)
        if changed_from is not None:
            log.warning("%s changed after it was ingested; quarantining the new content", path)
        truncated = size if len(data) < size else None
        return IncomingFile(path, data, digest, changed_from, size=truncated), at_read

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
        assert self._in_ledger is not None
        if not self._in_ledger(item.path, item.content_hash):
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
