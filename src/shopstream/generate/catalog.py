"""A realistic shop built once per seed with Faker: products and customers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl
from faker import Faker

# Category -> (median price, spread, share of sessions).
CATEGORIES: Final[dict[str, tuple[float, float, float]]] = {
    "Electronics": (180.0, 0.9, 0.28),
    "Clothing": (35.0, 0.6, 0.27),
    "Sports": (55.0, 0.7, 0.15),
    "Books": (14.0, 0.4, 0.12),
    "Home & Garden": (45.0, 0.8, 0.18),
}
DEVICES: Final = ("mobile", "desktop", "tablet")
_BRANDS_PER_CATEGORY: Final = 8
_FAKER_IDENTITIES: Final = 5_000
_BROWSERS: Final = 2_000


@dataclass(frozen=True, slots=True)
class Shop:
    products: pl.DataFrame  # product_id, name, category, brand, price
    # user_id, name, email, country, city, signup_date, device, and where they shop from:
    # ip_address, user_agent, payment_method (a card token)
    customers: pl.DataFrame
    category_bounds: dict[str, tuple[int, int]]  # product index range per category


def build_shop(seed: int, products: int = 1_000, customers: int = 5_000) -> Shop:
    faker = Faker("en_US")
    faker.seed_instance(seed)
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    bounds: dict[str, tuple[int, int]] = {}
    per_category = max(1, products // len(CATEGORIES))
    for category, (median, spread, _) in CATEGORIES.items():
        brands = [faker.unique.last_name() + " " + faker.word().title() for _ in range(8)]
        prices = np.clip(rng.lognormal(np.log(median), spread, per_category), 2, 5_000)
        start = len(rows)
        for price in prices:
            rows.append(
                {
                    "product_id": f"product_{len(rows) + 1}",
                    "name": faker.catch_phrase(),
                    "category": category,
                    "brand": brands[int(rng.integers(0, _BRANDS_PER_CATEGORY))],
                    "price": float(np.floor(price)) + 0.99,
                }
            )
        bounds[category] = (start, len(rows))
    # Faker makes a few thousand identities; a larger base reuses them under new ids,
    # each customer with an address, browser and card of its own (numpy, not Faker: fast).
    identities = [
        {
            "name": faker.name(),
            "email": faker.email(),
            "country": faker.country_code(),
            "city": faker.city(),
            "signup_date": faker.date_between("-3y", "-1d").isoformat(),
        }
        for _ in range(min(customers, _FAKER_IDENTITIES))
    ]
    browsers = [faker.user_agent() for _ in range(_BROWSERS)]
    octets = rng.integers(1, 255, size=(customers, 4))
    people = pl.DataFrame(
        {
            "user_id": [f"user_{1000 + i}" for i in range(customers)],
            **{key: [identities[i % len(identities)][key] for i in range(customers)]
               for key in identities[0]},
            "device": [DEVICES[i] for i in rng.choice(3, size=customers, p=[0.6, 0.32, 0.08])],
            "ip_address": [".".join(map(str, row)) for row in octets.tolist()],
            "user_agent": [browsers[i] for i in rng.integers(0, _BROWSERS, customers)],
            "payment_method": [f"card_{n}" for n in rng.integers(10**11, 10**12, customers)],
        }
    )  # fmt: skip
    return Shop(pl.DataFrame(rows), people, bounds)
