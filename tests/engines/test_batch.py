from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopstream.contract import IncomingFile
from shopstream.parse.batch import build_batch
from shopstream.parse.mapping import MappingChoice, choose
from shopstream.schema import InputFormat
from shopstream.validation.rules import RuleParams, render_rules
from tests.fixtures.batches import HEADER, PREDICATES, incoming


def test_every_row_is_accounted_for_and_reasons_are_kept() -> None:
    good = "0f8fad5b-d9cb-469f-a165-70867728950e,view,product_1,user_1,2024-01-01 10:00:00,,\n"
    data = (
        HEADER
        + (
            good
            + good
            + "1b4e28ba-2fa1-11d2-883f-0016d3cca427,purchase,p,u,2024-01-01 10:00:00,0,9.99\n"
            + "nope,teleport,p,u,2099-01-01 00:00:00,1,-3\n"
            + "2b4e28ba-2fa1-11d2-883f-0016d3cca427,view,p,u,yesterday,,\n"
        ).encode()
    )
    batch = build_batch([incoming(data)], source="/in", predicates=PREDICATES)
    assert (batch.rows_read, batch.events.height, batch.duplicates_in_batch) == (5, 1, 1)
    rules = dict(zip(batch.quarantine["line_no"], batch.quarantine["rules"].to_list(), strict=True))
    assert rules[4] == ["purchase_price_quantity"]
    assert set(rules[5]) == {
        "event_id_uuid",
        "event_type_known",
        "timestamp_not_future",
        "price_range",
    }
    assert rules[6] == ["timestamp_parsable"]
    assert batch.quarantined_by_rule["price_range"] == 1


def test_limits_are_configurable() -> None:
    strict = render_rules(RuleParams(datetime.now(), max_price=5, max_quantity=1))
    row = "1b4e28ba-2fa1-11d2-883f-0016d3cca427,purchase,p,u,2024-01-01 10:00:00,2,9.99\n"
    batch = build_batch([incoming(HEADER + row.encode())], source="/in", predicates=strict)
    assert batch.quarantine["rules"].to_list() == [["price_range", "quantity_range"]]


def test_changed_file_is_quarantined_whole() -> None:
    item = IncomingFile("/in/a.csv", HEADER, "new", changed_from="old")
    batch = build_batch([item], source="/in", predicates=PREDICATES)
    assert batch.quarantine["rules"].to_list() == [["file_changed_after_ingestion"]]
    assert batch.files[0].status.value == "rejected"


def format_given(fmt: InputFormat) -> MappingChoice:
    return choose(fmt, None, hash_key=b"test")


def test_a_given_format_accepts_only_that_format() -> None:
    seed = incoming(
        HEADER + b"1b4e28ba-2fa1-11d2-883f-0016d3cca427,view,p,u,2024-01-01 10:00:00,,\n"
    )
    retail = build_batch(
        [seed], source="/in", predicates=PREDICATES, choice=format_given(InputFormat.ONLINE_RETAIL)
    )
    assert retail.quarantine["rules"].to_list() == [["file_format_mismatch"]]
    assert "--format online-retail given, the file is canonical" in retail.quarantine["raw"][0]
    canonical = build_batch(
        [seed], source="/in", predicates=PREDICATES, choice=format_given(InputFormat.CANONICAL)
    )
    assert canonical.events.height == 1  # the seed layout is canonical CSV


def test_online_retail_lines_become_purchases_refunds_or_quarantine() -> None:
    header = b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
    body = (
        b"536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        b"C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527.0,United Kingdom\n"
        b"536414,22139,,-56,2010-12-01 11:52:00,0,,United Kingdom\n"
        b"A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom\n"
        b'536370,POST,"POSTAGE, FRANCE",3,2010-12-01 08:45:00,18,,France\n'
    )
    batch = build_batch([incoming(header + body)], source="/in", predicates=PREDICATES)
    events = batch.events.sort("event_timestamp")
    assert events.select("event_type", "user_id", "quantity", "price").rows() == [
        ("purchase", "17850", 6, 2.55),
        ("purchase", "guest:536370", 3, 18.0),
        ("refund", "14527", 1, 27.5),
    ]
    assert str(events["event_timestamp"][2]) == "2010-12-01 09:41:00"
    rules = dict(zip(batch.quarantine["line_no"], batch.quarantine["rules"].to_list(), strict=True))
    assert set(rules[4]) == {
        "retail_quantity_sign", "retail_price_positive", "purchase_price_quantity",
        "quantity_range",
    }  # fmt: skip
    assert rules[5] == ["retail_bad_debt_adjustment"]


lines = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")),
    st.lists(st.text(max_size=40).map(lambda t: t.replace("\n", "")), max_size=9).map(
        lambda parts: ",".join(parts).encode("utf-8", "surrogatepass")
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(lines, max_size=30), with_header=st.booleans(), jsonl=st.booleans())
def test_garbage_never_crashes_and_is_accounted(
    body: list[bytes], with_header: bool, jsonl: bool
) -> None:
    data = (HEADER if with_header and not jsonl else b"") + b"\n".join(body)
    name = "/in/g.jsonl" if jsonl else "/in/g.csv"
    batch = build_batch([incoming(data, name)], source="/in", predicates=PREDICATES)
    batch.check_accounting()
    assert batch.quarantine["raw"].null_count() == 0
    assert not batch.quarantine["raw"].str.contains("\x00", literal=True).any()  # PG text
    assert sum(f.rows_read for f in batch.files) == batch.rows_read
