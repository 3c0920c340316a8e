import gzip

import pytest

from shopstream.parse.reader import FileRejectedError, decode_container, read_rows
from shopstream.schema import InputFormat
from shopstream.validation.rules import FileRejection, StructuralRule

SEED = (
    "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"
    "0f8fad5b-d9cb-469f-a165-70867728950e,view,product_1,user_1000,2024-01-01 10:00:00,,\n"
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427,purchase,product_2,user_1,2024-01-01 10:00:01,2,9.99\n"
)


def test_seed_format_is_read_as_is() -> None:
    rows = read_rows(SEED.encode(), "events_1700000000_0.csv")
    assert rows.input_format == InputFormat.SEED
    assert rows.frame.height == 2
    assert rows.frame["price"].to_list() == [None, "9.99"]
    assert rows.frame["_line"].to_list() == [2, 3]
    assert rows.rejected == []


def test_columns_are_matched_by_name_not_position() -> None:
    text = (
        "country,price,event_timestamp,user_id,product_id,event_type,event_id,unknown_a\n"
        "DE,5.00,2024-01-01T10:00:00Z,u1,p1,purchase,0f8fad5b-d9cb-469f-a165-70867728950e,x\n"
    )
    rows = read_rows(text.encode(), "e.csv")
    assert rows.input_format == InputFormat.CANONICAL
    assert rows.frame.row(0, named=True)["country"] == "DE"
    assert rows.frame.row(0, named=True)["event_id"].startswith("0f8fad5b")
    assert rows.ignored_columns == ("unknown_a",)


def test_bom_crlf_and_gzip() -> None:
    data = b"\xef\xbb\xbf" + SEED.replace("\n", "\r\n").encode()
    packed = gzip.compress(data)
    rows = read_rows(decode_container(packed, "e.csv.gz"), "e.csv.gz")
    assert rows.frame.height == 2
    assert rows.frame["event_timestamp"].to_list()[1] == "2024-01-01 10:00:01"


def test_jsonl_with_numbers_and_bad_lines() -> None:
    data = (
        b'{"event_id":"a","event_type":"view","price":12.5,"quantity":2,"extra":1}\n'
        b"not json\n\n"
        b'{"event_id":"b"}\n'
        b"[1,2]\n"
    )
    rows = read_rows(data, "e.jsonl")
    assert rows.frame["event_id"].to_list() == ["a", "b"]
    assert rows.frame["price"].to_list() == ["12.5", None]
    assert [(r.line_no, r.rule) for r in rows.rejected] == [
        (2, StructuralRule.JSON_SYNTAX),
        (5, StructuralRule.JSON_SYNTAX),
    ]
    assert rows.rows_read == 4


def test_structural_faults_keep_raw_bytes() -> None:
    data = SEED.encode() + b"\xff\xfe,view,p,u,2024-01-01 10:00:00,,\n" + b"a,b\n" + b"x\x00,1"
    rows = read_rows(data, "e.csv")
    assert [(r.line_no, r.rule) for r in rows.rejected] == [
        (4, StructuralRule.ENCODING),
        (5, StructuralRule.COLUMN_COUNT),
        (6, StructuralRule.ENCODING),
    ]
    first = rows.raw_line(4)
    assert first.text.startswith("\\xff\\xfe,view")
    assert first.exact is not None and first.exact.startswith(b"\xff")
    assert (rows.raw_line(5).text, rows.raw_line(5).exact) == ("a,b", None)
    assert (rows.raw_line(6).text, rows.raw_line(6).exact) == ("x\\x00,1", b"x\x00,1")
    assert rows.raw_line(6).size == 4
    both = read_rows(SEED.encode() + b"\x00\xff,1\n", "e.csv")
    assert (both.raw_line(4).text, both.raw_line(4).exact) == ("\\x00\\xff,1", b"\x00\xff,1")


def test_quoted_newlines_fall_back_to_exact_parser() -> None:
    data = (
        b"event_id,event_type,product_id,user_id,event_timestamp\n"
        b'a,view,"two\nlines",u,t\nb,view,p,u,t\n'
    )
    rows = read_rows(data, "e.csv")
    assert rows.frame["product_id"].to_list() == ["two\nlines", "p"]
    assert rows.frame["_line"].to_list() == [2, 4]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", FileRejection.NOT_TEXT),
        (b"a,b,c\n1,2,3\n", FileRejection.UNKNOWN_HEADER),
    ],
)
def test_unusable_files_are_rejected_whole(data: bytes, reason: FileRejection) -> None:
    with pytest.raises(FileRejectedError) as caught:
        read_rows(data, "junk.csv")
    assert caught.value.reason is reason


def test_broken_gzip_is_rejected() -> None:
    with pytest.raises(FileRejectedError) as caught:
        decode_container(b"\x1f\x8bnot really", "x.csv.gz")
    assert caught.value.reason is FileRejection.UNREADABLE
