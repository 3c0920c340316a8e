"""A directory of dropped files, read oldest first, each exactly once.

Writers should write under a hidden or ``.tmp`` name and rename (atomic). For writers
that do not, a file is read only once it has been quiet for ``settle_seconds``: its mtime
is that old, or its size and mtime were the same on two polls that far apart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shopstream.engines.embedded.batch import IncomingFile
from shopstream.schema import DATA_SUFFIXES, InputFormat
from shopstream.sources.base import Source

log = logging.getLogger(__name__)

_TEMP_SUFFIXES: Final = (".tmp", ".part", ".partial", ".crdownload", ".swp")
_AVERAGE_ROW_BYTES: Final = 100


@dataclass(frozen=True, slots=True)
class _Seen:
    size: int
    mtime_ns: int


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
    ) -> None:
        self.directory = directory.resolve()
        self.name = str(self.directory)
        self.input_format = input_format
        self._known = known
        self._archive = archive.resolve() if archive else None
        self._delete = delete
        self._settle_ns = int(settle_seconds * 1e9)
        self._previous: dict[str, _Seen] = {}
        self._in_flight: set[str] = set()
        self._done: dict[str, _Seen] = {}
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
            incoming = self._read(path, seen)
            if incoming is None:
                continue
            picked.append(incoming)
            self._in_flight.add(incoming.path)
            budget -= seen.size
        return picked

    def committed(self, items: list[IncomingFile]) -> None:
        for item in items:
            self._known.setdefault(item.path, set()).add(item.content_hash)
            self._in_flight.discard(item.path)
            self._dispose(Path(item.path))

    def abandoned(self, items: list[IncomingFile]) -> None:
        for item in items:
            self._in_flight.discard(item.path)
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
        for entry in entries:
            if not is_candidate_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            current[entry.path] = _Seen(stat.st_size, stat.st_mtime_ns)
        stable = []
        waiting = False
        quiet_since = time.time_ns() - self._settle_ns
        for path, seen in current.items():
            if path in self._in_flight or self._done.get(path) == seen:
                continue
            if seen.mtime_ns <= quiet_since or self._previous.get(path) == seen:
                stable.append((path, seen))
            else:
                waiting = True
        self._previous = current
        self._done = {p: s for p, s in self._done.items() if p in current}
        self._waiting = waiting or bool(stable)
        stable.sort(key=lambda item: (item[1].mtime_ns, item[0]))
        return stable

    def _read(self, path: str, seen: _Seen) -> IncomingFile | None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            return None
        if len(data) != seen.size:
            self._previous.pop(path, None)  # still being written: look again later
            return None
        digest = hashlib.sha256(data).hexdigest()
        hashes = self._known.get(path, set())
        if digest in hashes:
            log.info("%s was ingested before; skipping", path)
            self._dispose(Path(path))
            self._done[path] = seen
            return None
        changed_from = next(iter(sorted(hashes)), None)
        if changed_from is not None:
            log.warning("%s changed after it was ingested; quarantining the new content", path)
        return IncomingFile(path, data, digest, changed_from)

    def _dispose(self, path: Path) -> None:
        """After commit: archive, delete, or remember the file as done."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        if self._delete:
            path.unlink(missing_ok=True)
        elif self._archive is not None:
            target = self._archive / path.name
            if target.exists():
                target = self._archive / f"{path.stem}.{stat.st_mtime_ns}{path.suffix}"
            shutil.move(path, target)
        else:
            self._done[str(path)] = _Seen(stat.st_size, stat.st_mtime_ns)
