"""Kafka messages as the in-memory "files" every engine parses.

JSON events become JSON Lines, seed-format CSV lines a CSV under the seed header; a line of
such a file maps back to its message's offset. The embedded Kafka source and the Spark job
frame messages with these same functions, so both quarantine the same messages alike.
"""

from __future__ import annotations

from typing import Final

from shopstream.schema import SEED_COLUMNS

SEED_HEADER: Final = ",".join(SEED_COLUMNS).encode()


def chunk_path(topic: str, partition: int, offsets: list[int], suffix: str) -> str:
    """A framed file's name: the suffix tells the parser its format."""
    return f"kafka://{topic}/{partition}/{offsets[0]}-{offsets[-1]}.{suffix}"


def first_line(suffix: str) -> int:
    """The line of a framed file that holds its first message (CSV files have a header)."""
    return 1 if suffix == "jsonl" else 2


def as_files(
    offsets: list[int], values: list[bytes]
) -> list[tuple[str, list[int], list[bytes], bytes]]:
    """One partition's messages as a JSON Lines file and/or a seed CSV file.

    The common case, a partition of JSON objects on one line each, is a single join.
    """
    if all(value[:1] == b"{" for value in values):
        data = b"\n".join(values) + b"\n"
        if data.count(b"\n") == len(values) and b"\r" not in data:
            return [("jsonl", offsets, values, data)]
    json_part: tuple[list[int], list[bytes]] = ([], [])
    csv_part: tuple[list[int], list[bytes]] = ([], [])
    for offset, value in zip(offsets, values, strict=True):
        part = json_part if value.lstrip()[:1] == b"{" or not value.strip() else csv_part
        part[0].append(offset)
        part[1].append(value)
    files = []
    if json_part[0]:
        lines = [one_line(v, json=True) for v in json_part[1]]
        files.append(("jsonl", *json_part, b"\n".join(lines) + b"\n"))
    if csv_part[0]:
        lines = [SEED_HEADER, *(one_line(v, json=False) for v in csv_part[1])]
        files.append(("csv", *csv_part, b"\n".join(lines) + b"\n"))
    return files


def one_line(value: bytes, *, json: bool) -> bytes:
    """A message as exactly one line (the engine frames messages by line breaks).

    An empty message becomes JSON ``null``, which the JSON syntax rule quarantines; its
    dead letter still carries the original (empty) bytes.
    """
    if not json:
        return value.rstrip(b"\r\n").replace(b"\r", b" ").replace(b"\n", b" ")
    if not value.strip():
        return b"null"
    return value.replace(b"\r", b" ").replace(b"\n", b" ")
