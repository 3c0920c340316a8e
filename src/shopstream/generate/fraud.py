"""Labelled fraud for ``generate --fraud RATE``: patterns injected among simulated events,
with the ground truth kept apart (a side file), never in the events themselves.

Patterns, each a stretch of events about one attacker or victim:
- ``card_testing``: a burst of tiny orders from one IP and device across several accounts;
- ``account_takeover``: a known customer logs in from a new device and country, then
  places a large order;
- ``velocity_abuse``: one customer places many orders within minutes;
- ``amount_outlier``: a customer with a history orders far above it;
- ``refund_abuse``: a customer buys, then refunds most of it.
A labelled event is an order (or refund) of the pattern; logins are context.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import polars as pl

from shopstream.generate.catalog import Shop
from shopstream.generate.sessions import random_uuids

PATTERNS: Final = (
    "card_testing",
    "account_takeover",
    "velocity_abuse",
    "amount_outlier",
    "refund_abuse",
)
# Labelled orders one instance of each pattern makes, on average.
_ORDERS_PER_INSTANCE: Final = {
    "card_testing": 14.0,
    "account_takeover": 1.0,
    "velocity_abuse": 8.0,
    "amount_outlier": 1.0,
    "refund_abuse": 3.5,
}
LABEL_SCHEMA: Final = {"event_id": pl.String, "pattern": pl.String, "instance": pl.Int64}


@dataclass(frozen=True, slots=True)
class Injected:
    events: pl.DataFrame  # the input events plus the fraud, sorted by event time
    labels: pl.DataFrame  # event_id, pattern, instance


def inject_fraud(
    events: pl.DataFrame, shop: Shop, rng: np.random.Generator, rate: float
) -> Injected:
    """About ``rate`` of all orders become labelled fraud, spread evenly over the patterns
    and over the events' time span."""
    orders = int(events.filter(pl.col("event_type") == "purchase")["order_id"].n_unique())
    if rate <= 0 or orders == 0:
        return Injected(events, pl.DataFrame(schema=LABEL_SCHEMA))
    start = events["event_timestamp"].min()
    end = events["event_timestamp"].max()
    assert isinstance(start, datetime) and isinstance(end, datetime)
    span = (end - start).total_seconds()
    history = _customer_history(events)
    if not history.height:  # too few events for regulars: any customer, from the start
        history = shop.customers.head(100).select(
            "user_id", "ip_address", "user_agent", "payment_method", "country", "device",
            pl.lit(3).alias("orders"), pl.lit(50.0).alias("typical"),
            pl.lit(start).alias("third_order"),
        )  # fmt: skip
    parts: list[pl.DataFrame] = []
    wanted = rate * orders / (1 - rate)
    instance = 0
    for pattern in PATTERNS:
        count = max(1, round(wanted / len(PATTERNS) / _ORDERS_PER_INSTANCE[pattern]))
        for _ in range(count):
            # Late in the span, so victims have a history to deviate from.
            at = start + _seconds(rng.uniform(0.3, 0.95) * span)
            rows = _MAKERS[pattern](shop, rng, at, history)
            parts.append(
                rows.with_columns(
                    pl.lit(pattern).alias("_pattern"), pl.lit(instance).alias("_instance")
                )
            )
            instance += 1
    fraud = pl.concat(parts, how="diagonal_relaxed")
    fraud = fraud.with_columns(random_uuids(rng, fraud.height))
    # A refund abuser's purchases look like anyone's: their refunds are the fraud.
    kind = pl.col("event_type")
    labelled = kind.is_in(["purchase", "refund"]) & ~(
        (pl.col("_pattern") == "refund_abuse") & (kind == "purchase")
    )
    labels = fraud.filter(labelled).select(
        "event_id", pl.col("_pattern").alias("pattern"), pl.col("_instance").alias("instance")
    )
    merged = (
        pl.concat([events, fraud.drop("_pattern", "_instance")], how="diagonal_relaxed")
        .select(events.columns)
        .sort("event_timestamp")
    )
    return Injected(merged, labels.cast(LABEL_SCHEMA))  # type: ignore[arg-type]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _customer_history(events: pl.DataFrame) -> pl.DataFrame:
    """Customers with at least three orders: their context, typical line amount, and when
    their third order was (a pattern that deviates from a history comes after it)."""
    purchases = events.filter(pl.col("event_type") == "purchase")
    return (
        purchases.sort("event_timestamp")
        .group_by("user_id")
        .agg(
            pl.col("order_id").n_unique().alias("orders"),
            pl.col("event_timestamp")
            .filter(pl.col("order_id").is_first_distinct())
            .get(2, null_on_oob=True)
            .alias("third_order"),
            (pl.col("price") * pl.col("quantity")).median().alias("typical"),
            pl.col("ip_address").first(),
            pl.col("user_agent").first(),
            pl.col("payment_method").first(),
            pl.col("country").first(),
            pl.col("device").first(),
        )
        .filter(pl.col("orders") >= 3)
        .sort("user_id")
    )


def _rows(
    shop: Shop, rng: np.random.Generator, at: datetime, offsets: list[float], **columns: object
) -> pl.DataFrame:
    """Events at ``at + offsets`` seconds; ``columns`` are constants or per-row lists."""
    products = shop.products
    picks = rng.integers(0, products.height, len(offsets))
    chosen = products[picks]
    frame = pl.DataFrame(
        {
            "event_timestamp": [at + _seconds(o) for o in offsets],
            "product_id": chosen["product_id"],
            "category": chosen["category"],
            "brand": chosen["brand"],
            "price": chosen["price"],
            "quantity": [1] * len(offsets),
            "currency": ["USD"] * len(offsets),
        }
    )
    return frame.with_columns(
        pl.Series(name, value) if isinstance(value, list) else pl.lit(value).alias(name)
        for name, value in columns.items()
    )


def _stranger(rng: np.random.Generator) -> dict[str, str]:
    octets = rng.integers(1, 255, 4)
    return {
        "ip_address": ".".join(str(o) for o in octets),
        "user_agent": f"Mozilla/5.0 (X11; Linux x86_64; rv:{int(rng.integers(60, 130))}.0)",
        "country": str(rng.choice(["RU", "NG", "VN", "BR", "UA", "ID"])),
    }


def _card_testing(
    shop: Shop, rng: np.random.Generator, at: datetime, _: pl.DataFrame
) -> pl.DataFrame:
    size = int(rng.integers(10, 19))
    victims = shop.customers["user_id"].sample(
        int(rng.integers(4, 9)), seed=int(rng.integers(2**31))
    )
    offsets = sorted(rng.uniform(0, 300, size).tolist())
    attacker = _stranger(rng)
    rows = _rows(shop, rng, at, offsets, event_type="purchase", device="desktop", **attacker)
    return rows.with_columns(
        pl.Series("user_id", [victims[i % victims.len()] for i in range(size)]),
        pl.Series("price", np.round(rng.uniform(0.5, 5.0, size), 2)),
        pl.Series("order_id", [f"ord_ct_{rng.integers(10**12)}" for _ in range(size)]),
        pl.Series("payment_method", [f"card_{rng.integers(10**11, 10**12)}" for _ in range(size)]),
    )


def _account_takeover(
    shop: Shop, rng: np.random.Generator, at: datetime, history: pl.DataFrame
) -> pl.DataFrame:
    victim = history.row(int(rng.integers(0, history.height)), named=True)
    at = max(at, victim["third_order"] + timedelta(hours=2))
    attacker = _stranger(rng)
    login = _rows(
        shop,
        rng,
        at,
        [0.0],
        event_type="login",
        user_id=victim["user_id"],
        device="desktop",
        **attacker,
    ).with_columns(
        pl.lit(None, dtype=pl.String).alias("product_id"),
        pl.lit(None, dtype=pl.Float64).alias("price"),
        pl.lit(None, dtype=pl.Int64).alias("quantity"),
    )
    expensive = shop.products.filter(pl.col("price") > 300)
    item = expensive.row(int(rng.integers(0, expensive.height)), named=True)
    quantity = max(2, int(np.ceil(8 * float(victim["typical"] or 50) / item["price"])))
    order = _rows(
        shop,
        rng,
        at,
        [float(rng.uniform(60, 240))],
        event_type="purchase",
        user_id=victim["user_id"],
        device="desktop",
        order_id=f"ord_ato_{rng.integers(10**12)}",
        payment_method=f"card_{rng.integers(10**11, 10**12)}",
        **attacker,
    )
    order = order.with_columns(
        pl.lit(item["product_id"]).alias("product_id"),
        pl.lit(item["category"]).alias("category"),
        pl.lit(item["price"]).alias("price"),
        pl.lit(quantity).alias("quantity"),
    )
    return pl.concat([login, order], how="diagonal_relaxed")


def _velocity_abuse(
    shop: Shop, rng: np.random.Generator, at: datetime, history: pl.DataFrame
) -> pl.DataFrame:
    abuser = history.row(int(rng.integers(0, history.height)), named=True)
    size = int(rng.integers(6, 11))
    offsets = sorted(rng.uniform(0, 540, size).tolist())
    return _rows(
        shop,
        rng,
        at,
        offsets,
        event_type="purchase",
        user_id=abuser["user_id"],
        ip_address=abuser["ip_address"],
        user_agent=abuser["user_agent"],
        country=abuser["country"],
        device=abuser["device"],
        payment_method=abuser["payment_method"],
        order_id=[f"ord_va_{rng.integers(10**12)}" for _ in range(size)],
    )


def _amount_outlier(
    shop: Shop, rng: np.random.Generator, at: datetime, history: pl.DataFrame
) -> pl.DataFrame:
    buyer = history.row(int(rng.integers(0, history.height)), named=True)
    at = max(at, buyer["third_order"] + timedelta(minutes=30))
    typical = float(buyer["typical"] or 50)
    rows = _rows(
        shop,
        rng,
        at,
        [0.0],
        event_type="purchase",
        user_id=buyer["user_id"],
        ip_address=buyer["ip_address"],
        user_agent=buyer["user_agent"],
        country=buyer["country"],
        device=buyer["device"],
        payment_method=buyer["payment_method"],
        order_id=f"ord_ao_{rng.integers(10**12)}",
    )
    return rows.with_columns(pl.lit(round(typical * float(rng.uniform(25, 60)), 2)).alias("price"))


def _refund_abuse(
    shop: Shop, rng: np.random.Generator, at: datetime, history: pl.DataFrame
) -> pl.DataFrame:
    buyer = history.row(int(rng.integers(0, history.height)), named=True)
    context = {
        "user_id": buyer["user_id"],
        "ip_address": buyer["ip_address"],
        "user_agent": buyer["user_agent"],
        "country": buyer["country"],
        "device": buyer["device"],
        "payment_method": buyer["payment_method"],
    }
    bought = int(rng.integers(3, 6))
    days = sorted(rng.uniform(0, 6 * 3600, bought).tolist())
    purchases = _rows(
        shop,
        rng,
        at,
        days,
        event_type="purchase",
        order_id=[f"ord_ra_{rng.integers(10**12)}" for _ in days],
        **context,
    )
    refunded = purchases.head(int(rng.integers(3, bought + 1))).with_columns(
        pl.col("event_timestamp") + pl.duration(hours=8),
        pl.lit("refund").alias("event_type"),
    )
    return pl.concat([purchases, refunded], how="diagonal_relaxed")


_MAKERS: Final = {
    "card_testing": _card_testing,
    "account_takeover": _account_takeover,
    "velocity_abuse": _velocity_abuse,
    "amount_outlier": _amount_outlier,
    "refund_abuse": _refund_abuse,
}
