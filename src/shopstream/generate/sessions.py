"""Vectorised session simulation: views -> some carts -> some removals or purchases.

Customers return (a heavy-tailed share of sessions belongs to a few), traffic follows a
daily rhythm, and purchase prices and quantities come from the catalog.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from shopstream.generate.catalog import CATEGORIES, Shop

# Relative traffic per hour of day (UTC): quiet nights, evening peak.
HOURLY_RHYTHM: Final = np.array(
    [2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 7, 8, 8, 7, 7, 7, 8, 9, 10, 10, 9, 6, 4], dtype=np.float64
)
P_CART: Final = 0.14
P_REMOVE: Final = 0.25
P_PURCHASE: Final = 0.45
P_WISHLIST: Final = 0.04
MEAN_GAP_SECONDS: Final = 35.0


def random_uuids(rng: np.random.Generator, count: int) -> pl.Series:
    """Version-4 UUID strings from ``rng`` (reproducible, unlike ``uuid.uuid4``)."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    binary = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), count, [None, pa.py_buffer(raw.tobytes())]
    )
    hexed = pl.Series(binary.cast(pa.binary())).bin.encode("hex")
    parts = [hexed.str.slice(a, n) for a, n in ((0, 8), (8, 4), (12, 4), (16, 4), (20, 12))]
    return pl.select(pl.concat_str(parts, separator="-")).to_series().alias("event_id")


def simulate(
    shop: Shop, rng: np.random.Generator, events: int, start: datetime, span_seconds: float
) -> pl.DataFrame:
    """About ``events`` canonical events (exactly that many), sorted by event time."""
    sessions = max(1, int(events / 2.2))
    products = shop.products
    customers = shop.customers
    categories = list(CATEGORIES)
    shares = np.array([CATEGORIES[c][2] for c in categories])
    session_category = rng.choice(len(categories), size=sessions, p=shares / shares.sum())
    # Returning customers: a heavy-tailed (log-normal) activity per customer concentrates
    # sessions on regulars, the busiest a few dozen times the median, never a bot's share.
    activity = rng.lognormal(0.0, 1.2, customers.height)
    regulars = rng.choice(customers.height, size=sessions, p=activity / activity.sum())
    anyone = rng.integers(0, customers.height, sessions)
    session_user = np.where(rng.random(sessions) < 0.4, regulars, anyone)
    session_start = _session_starts(rng, sessions, start, span_seconds)
    views = rng.geometric(0.45, size=sessions)

    # One row per viewed product.
    session_of_view = np.repeat(np.arange(sessions), views)
    lo = np.array([shop.category_bounds[categories[c]][0] for c in session_category])
    hi = np.array([shop.category_bounds[categories[c]][1] for c in session_category])
    product = lo[session_of_view] + (
        rng.random(session_of_view.size) * (hi - lo)[session_of_view]
    ).astype(np.int64)
    gaps = rng.exponential(MEAN_GAP_SECONDS, size=session_of_view.size)
    offset = _cumsum_within(gaps, views)
    view_time = session_start[session_of_view] + offset

    carted = rng.random(product.size) < P_CART
    removed = carted & (rng.random(product.size) < P_REMOVE)
    purchased = carted & ~removed & (rng.random(product.size) < P_PURCHASE)
    wished = ~carted & (rng.random(product.size) < P_WISHLIST)
    quantity = np.minimum(rng.geometric(0.7, size=product.size), 5)

    kinds = [
        ("view", np.ones(product.size, dtype=bool), 0.0),
        ("add_to_wishlist", wished, 8.0),
        ("add_to_cart", carted, 20.0),
        ("remove_from_cart", removed, 90.0),
        ("purchase", purchased, 240.0),
    ]
    frames = []
    for kind, mask, delay in kinds:
        index = np.flatnonzero(mask)
        jitter = rng.exponential(delay, size=index.size) if delay else 0.0
        frames.append(
            pl.DataFrame(
                {
                    "event_type": pl.Series([kind] * index.size, dtype=pl.String),
                    "_product": product[index],
                    "_user": session_user[session_of_view[index]],
                    "_session": session_of_view[index],
                    "_t": view_time[index] + jitter,
                    "quantity": np.where(
                        kind == "purchase", quantity[index], 1 if "cart" in kind else 0
                    ),
                }
            )
        )
    raw = _whole_sessions(pl.concat(frames), events, rng).sort("_t").head(events)
    catalog = products.with_row_index("_product").with_columns(pl.col("_product").cast(pl.Int64))
    people = customers.with_row_index("_user").with_columns(pl.col("_user").cast(pl.Int64))
    session_ids = random_uuids(rng, sessions).str.slice(0, 18).str.replace_all("-", "")
    joined = (
        raw.join(catalog, on="_product", how="left")
        .join(
            people.select(
                "_user",
                "user_id",
                "country",
                "device",
                "ip_address",
                "user_agent",
                "payment_method",
            ),
            on="_user",
            how="left",
        )
        .sort("_t")
    )
    start_us = int(start.timestamp() * 1_000_000)
    session = pl.concat_str(pl.lit("s"), session_ids.gather(joined["_session"]))
    purchase = pl.col("event_type") == "purchase"
    return joined.select(
        random_uuids(rng, joined.height),
        "event_type",
        "user_id",
        "product_id",
        (pl.lit(start_us) + (pl.col("_t") * 1_000_000).cast(pl.Int64))
        .cast(pl.Datetime("us"))
        .alias("event_timestamp"),
        session.alias("session_id"),
        "category",
        "brand",
        "price",
        pl.when(pl.col("quantity") > 0).then(pl.col("quantity")).alias("quantity"),
        pl.lit("USD").alias("currency"),
        "device",
        "country",
        # A session's purchases are the lines of one order, paid with the customer's card.
        pl.when(purchase).then(pl.concat_str(pl.lit("ord_"), session)).alias("order_id"),
        "ip_address",
        "user_agent",
        pl.when(purchase).then(pl.col("payment_method")).alias("payment_method"),
    )


def _whole_sessions(rows: pl.DataFrame, events: int, rng: np.random.Generator) -> pl.DataFrame:
    """Drop whole sessions at random until about ``events`` rows are left, so the events
    still span the whole period (cutting the newest rows would leave its end empty)."""
    sizes = rows.group_by("_session").len().sort("_session")
    order = rng.permutation(sizes.height)
    kept = np.cumsum(sizes["len"].to_numpy()[order]) - sizes["len"].to_numpy()[order] < events
    return rows.filter(pl.col("_session").is_in(sizes["_session"].to_numpy()[order][kept]))


def _session_starts(
    rng: np.random.Generator, sessions: int, start: datetime, span_seconds: float
) -> npt.NDArray[np.float64]:
    """Seconds after ``start``, denser in busy hours of the day."""
    candidates = rng.random(sessions * 3) * span_seconds
    hour = ((start.hour * 3600 + start.minute * 60 + candidates) // 3600 % 24).astype(int)
    keep = rng.random(candidates.size) < HOURLY_RHYTHM[hour] / HOURLY_RHYTHM.max()
    chosen = candidates[keep]
    if chosen.size < sessions:
        chosen = np.concatenate([chosen, rng.random(sessions - chosen.size) * span_seconds])
    return np.sort(chosen[:sessions])


def _cumsum_within(
    values: npt.NDArray[np.float64], sizes: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Running total of ``values`` restarting at each group (groups are consecutive)."""
    total = np.cumsum(values)
    group_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    before = np.concatenate(([0.0], total))[group_start]
    offsets: npt.NDArray[np.float64] = total - np.repeat(before, sizes) - values
    return offsets
