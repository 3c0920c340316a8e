"""Mappings as data: each key does what README says, on records shaped unlike our own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shopstream.contract import IncomingFile
from shopstream.parse.batch import build_batch
from shopstream.parse.mapping import MappingChoice, MappingError, load_mapping
from shopstream.parse.suggest import propose
from tests.fixtures.batches import PREDICATES
from tests.fixtures.foreign import (
    STOREFRONT_EVENTS_MAPPING,
    STOREFRONT_TRANSACTIONS_MAPPING,
    jsonl,
    storefront_events,
    storefront_transactions,
    streaming_event_csv,
)

KEY = b"test-installation"


def mapped(tmp_path: Path, text: str) -> MappingChoice:
    path = tmp_path / "m.toml"
    path.write_text(text)
    return MappingChoice(load_mapping(path), hash_key=KEY)


def batch_of(data: bytes, name: str, choice: MappingChoice = MappingChoice(hash_key=KEY)):  # noqa: B008
    return build_batch([IncomingFile(f"/in/{name}", data, name)], source="/in",
                       predicates=PREDICATES, choice=choice)  # fmt: skip


def test_the_seed_generator_layout_loads_with_no_option() -> None:
    batch = batch_of(streaming_event_csv(500, seed=1), "gen.csv")
    assert batch.files[0].input_format == "streaming-event"
    assert batch.quarantine.height == 0 and batch.events.height == 500
    events = batch.events
    assert set(events["event_type"]) == {"view", "order", "add_to_cart", "click", "purchase",
                                         "add_to_wishlist"}  # fmt: skip
    assert (events.filter(events["event_type"] == "purchase")["quantity"] == 1).all()
    props = [json.loads(p) for p in events["properties"]]
    assert all(set(p) == {"product_name", "sku"} for p in props)  # PII dropped, not kept
    assert events["ip_address"].str.contains(r"^[0-9a-f]{32}$").all()  # pseudonymised


def test_properties_are_the_same_whether_every_record_holds_a_field_or_not() -> None:
    """A frame whose records all hold a field encodes its properties in one pass; one with a
    blank takes the per-field way. Both must store the same object, and leave blanks out."""
    header = b"event_id,event_type,user_id,event_timestamp,sku,note\n"
    start = b"0b0f7a4e-2c1e-4c1b-9a43-0d7a2f0e4e1%d,login,u,2026-01-01 10:00:00,"
    row = start.replace(b"%d", b"1") + b'S-1,"say ""hi"", \\o/"\n'
    whole = batch_of(header + row, "whole.csv")
    mixed = batch_of(header + row + start.replace(b"%d", b"2") + b"S-2,\n", "mixed.csv")
    expected = {"sku": "S-1", "note": 'say "hi", \\o/'}
    assert json.loads(whole.events["properties"][0]) == expected
    assert [json.loads(p) for p in mixed.events["properties"]] == [expected, {"sku": "S-2"}]


def test_explode_derives_stable_ids_and_never_collapses_two_records(tmp_path: Path) -> None:
    orders = storefront_transactions(200, seed=2)
    choice = mapped(tmp_path, STOREFRONT_TRANSACTIONS_MAPPING)
    first = batch_of(jsonl(orders), "t.jsonl", choice)
    lines = sum(len(o["products"]) for o in orders)  # type: ignore[arg-type]
    assert first.rows_read == lines and first.events.height == lines
    assert first.quarantine.height == 0
    assert first.events["event_id"].n_unique() == lines
    again = batch_of(jsonl(orders), "t2.jsonl", choice)
    assert again.events["event_id"].sort().equals(first.events["event_id"].sort())
    assert set(first.events["currency"]) == {"USD", "EUR", "GBP", "CAD", "AUD"}
    assert first.events["order_id"].str.starts_with("txn_").all()
    assert all("customer_email" not in (p or "") for p in first.events["properties"])


def test_custom_ignored_nested_and_hashed_fields(tmp_path: Path) -> None:
    events = storefront_events(300, seed=3)
    events.append({**events[0], "event_id": "evt_hb", "event_type": "heartbeat"})
    events.append({**events[0], "event_id": "evt_typo", "event_type": "pgae_view"})
    batch = batch_of(jsonl(events), "e.jsonl", mapped(tmp_path, STOREFRONT_EVENTS_MAPPING))
    assert batch.rows_ignored == 1
    assert batch.quarantine["rules"].to_list() == [["event_type_known"]]
    assert batch.quarantine["fields"].to_list() == [["event_type"]]
    assert batch.events.height == 300
    loaded = batch.events
    assert {"logout", "complete_checkout", "page_view", "view", "search"} <= set(
        loaded["event_type"]
    )
    assert loaded.filter(loaded["event_type"] == "page_view")["product_id"].null_count() > 0
    assert not loaded["ip_address"].str.starts_with("10.").any()
    first = json.loads(loaded.filter(loaded["event_type"] != "")["properties"][0])
    assert "ip_address" not in first.get("technical_info", {})
    assert first["location"] == {"city": "X"}  # what the mapping took is not repeated


def test_required_fields_name_the_missing_field_and_a_bad_header_hints(tmp_path: Path) -> None:
    data = b"event_id,event_type,customer_id,event_timestamp\n"
    row = b"0b0f7a4e-2c1e-4c1b-9a43-0d7a2f0e4e11,view,c,2026-01-01\n"
    batch = batch_of(data + row * 3 + b"\n", "a.csv")
    assert batch.quarantine["rules"].to_list() == [["file_unknown_header"]]
    assert batch.quarantined_rows == batch.rows_read == 3  # its records, not one file
    assert "no user_id; did you mean customer_id?" in batch.quarantine["raw"][0]
    missing = b'{"event_id":"0b0f7a4e-2c1e-4c1b-9a43-0d7a2f0e4e11","event_type":"search",'
    batch = batch_of(missing + b'"event_timestamp":"2026-01-01T00:00:00Z"}\n', "b.jsonl")
    assert batch.quarantine["rules"].to_list() == [["required_fields"]]
    assert batch.quarantine["fields"].to_list() == [["user_id"]]


def test_timestamp_format_and_zone(tmp_path: Path) -> None:
    choice = mapped(
        tmp_path, '[timestamp]\nformat = "%d/%m/%Y %H:%M"\ntimezone = "Europe/Berlin"\n'
    )
    row = {"event_id": "0b0f7a4e-2c1e-4c1b-9a43-0d7a2f0e4e11", "event_type": "login",
           "user_id": "u", "event_timestamp": "01/07/2026 12:30"}  # fmt: skip
    batch = batch_of(jsonl([row]), "t.jsonl", choice)
    assert str(batch.events["event_timestamp"][0]) == "2026-07-01 10:30:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[fields]\nbuyer = "x"\n', "names no canonical field ['buyer']"),
        ('[event_types]\nx = "purchased"\n', "x = 'purchased'"),
        ("[sauce]\n", "sauce"),
        ('[timestamp]\ntimezone = "Mars/Olympus"\n', "Mars/Olympus"),
    ],
)
def test_a_bad_mapping_names_the_key_at_fault(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MappingError) as raised:
        mapped(tmp_path, text)
    assert message in str(raised.value)


def test_suggest_proposes_synonyms_nested_paths_and_types() -> None:
    import polars as pl

    records = pl.read_ndjson(jsonl(storefront_transactions(20, seed=4)))
    proposal = propose(records, csv=False)
    assert 'explode = "products"' in proposal.toml
    assert 'user_id = "customer_id"' in proposal.toml
    assert 'event_timestamp = "timestamp"' in proposal.toml
    assert 'product_id = "products[].product_id"' in proposal.toml
    assert "derive_from" in proposal.toml
