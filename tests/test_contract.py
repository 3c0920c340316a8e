"""Where a row came from, for every kind of incoming item."""

from __future__ import annotations

from shopstream.contract import (
    FileOrigin,
    IncomingFile,
    MessageOrigin,
    ReplayOrigin,
    SourceOffset,
    where_from,
)


def test_a_file_row_is_its_path_and_line() -> None:
    item = IncomingFile("/in/a.csv", b"", "h")
    assert item.origin == FileOrigin("/in/a.csv", "h")
    assert where_from(item, 7) == ("/in/a.csv", 7)
    assert where_from(item, None) == ("/in/a.csv", None)


def test_a_message_row_is_its_partition_and_offset() -> None:
    position = SourceOffset("g", "shop", 2, 40, 43, 50)
    origin = MessageOrigin("shop", 2, first_line=2, offsets=(40, 41, 42), position=position)
    item = IncomingFile("kafka-chunk", b"", "", came_from=origin)
    assert where_from(item, 2) == ("kafka://shop/2", 40)
    assert where_from(item, 4) == ("kafka://shop/2", 42)
    assert where_from(item, None) == ("kafka://shop/2", None)


def test_a_replayed_row_is_where_it_was_first_read() -> None:
    origin = ReplayOrigin(lines={2: ("/in/a.csv", 17), 3: ("/in/b.csv", 4)}, source="/in/a.csv")
    item = IncomingFile("replay:1-0.csv", b"", "replay:1-0.csv", came_from=origin)
    assert where_from(item, 3) == ("/in/b.csv", 4)
    assert where_from(item, None) == ("/in/a.csv", None)
