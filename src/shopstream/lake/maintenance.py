"""Delta's own upkeep, exposed as commands: compaction of the many small files frequent
exports leave, and vacuum of the files no current version references."""

from __future__ import annotations

from typing import Any

from shopstream.lake.location import LAKE_TABLES, Lake


def optimize(lake: Lake) -> dict[str, dict[str, Any]]:
    """Compact every lake table's small files into fewer large ones (a new version; the
    old files stay readable by time travel until vacuumed)."""
    results: dict[str, dict[str, Any]] = {}
    for name in LAKE_TABLES:
        table = lake.open(name)
        if table is not None:
            metrics = table.optimize.compact()
            results[name] = {
                "files_added": metrics.get("numFilesAdded", 0),
                "files_removed": metrics.get("numFilesRemoved", 0),
                "version": table.version(),
            }
    return results


def vacuum(lake: Lake, *, retention_hours: int, dry_run: bool) -> dict[str, list[str]]:
    """Delete files unreferenced for ``retention_hours`` (Delta refuses less than its
    table's retention, 7 days by default, so a running reader never loses its files)."""
    return {
        name: table.vacuum(retention_hours=retention_hours, dry_run=dry_run)
        for name in LAKE_TABLES
        if (table := lake.open(name)) is not None
    }
