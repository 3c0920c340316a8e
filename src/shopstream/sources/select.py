"""Turn ``--source`` (a directory, or ``kafka://BOOTSTRAP/TOPIC[,TOPIC…]``) into a source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from shopstream.schema import InputFormat
from shopstream.settings import Settings
from shopstream.sources.base import Source
from shopstream.store.ledger import LedgerCheck, known_files

if TYPE_CHECKING:
    from shopstream.sources.kafka import ResetPolicy

KAFKA_SCHEME = "kafka://"
_RESETS: Final[dict[str, ResetPolicy]] = {"earliest": "earliest", "latest": "latest"}


@dataclass(frozen=True, slots=True)
class KafkaSpec:
    bootstrap: str
    topics: list[str]


def parse_kafka(spec: str) -> KafkaSpec | None:
    """``kafka://host:9092,host2:9092/topic1,topic2`` -> bootstrap and topics; else None."""
    if not spec.startswith(KAFKA_SCHEME):
        return None
    parts = urlsplit(spec)
    topics = [t for t in parts.path.strip("/").split(",") if t]
    if not parts.netloc or not topics:
        raise ValueError(f"{spec!r}: expected kafka://BOOTSTRAP/TOPIC[,TOPIC…]")
    return KafkaSpec(parts.netloc, topics)


def directory_source(
    url: str,
    directory: Path,
    settings: Settings,
    *,
    archive: Path | None,
    delete: bool,
    input_format: InputFormat | None = None,
) -> Source:
    from shopstream.sources.files import DirectorySource

    directory = directory.resolve()
    return DirectorySource(
        directory,
        known=known_files(url, directory),
        archive=archive,
        delete=delete,
        settle_seconds=settings.trigger_ms / 1000,
        input_format=input_format,
        limits=settings.read_limits,
        piece_bytes=settings.file_piece_bytes,
        ledger=LedgerCheck(url),
    )


def kafka_source(
    url: str,
    spec: KafkaSpec,
    settings: Settings,
    *,
    group: str,
    reset_offsets: str | None,
    dead_letters: bool,
    emit_processed: bool,
    should_stop: Callable[[], bool],
) -> Source:
    from shopstream.sources.kafka import KafkaSource
    from shopstream.store.connection import RetryBudget
    from shopstream.store.offsets import stored_offsets

    if reset_offsets and reset_offsets not in _RESETS:
        raise ValueError("--reset-offsets takes earliest or latest")
    return KafkaSource(
        spec.bootstrap,
        spec.topics,
        group,
        stored_offsets=stored_offsets(
            url, budget=RetryBudget.from_settings(settings), should_stop=should_stop
        ),
        reset_offsets=_RESETS[reset_offsets] if reset_offsets else None,
        dead_letters=dead_letters,
        emit_processed=emit_processed,
    )
