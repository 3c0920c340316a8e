"""Every fraud rule, as data: a reason code, a weight, and a SQL predicate over an order's
features (see :mod:`shopstream.fraud.features`), with its limits as ``${name}`` parameters.

The predicates use the same dialect as the validation rules, evaluated by Polars
(``pl.sql_expr``) over the features PostgreSQL computes inside the batch transaction; the
loader does this for every engine, so no engine keeps a copy. An order's score joins the
weights of the rules it breaks like independent evidence: ``1 - prod(1 - weight)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from string import Template
from typing import Final, Literal


@dataclass(frozen=True, slots=True)
class FraudRule:
    code: str
    description: str
    predicate: str  # over the feature columns; ${param} are FraudParams values
    weight: float


FRAUD_RULES: Final[tuple[FraudRule, ...]] = (
    FraudRule(
        "velocity_user",
        "many orders from one customer in a short time",
        "user_orders_10m >= ${user_orders_10m} OR user_orders_1h >= ${user_orders_1h}"
        " OR user_orders_24h >= ${user_orders_24h}",
        0.75,
    ),
    FraudRule(
        "velocity_ip",
        "many orders from one IP address within an hour",
        "ip_orders_1h >= ${shared_orders_1h}",
        0.4,
    ),
    FraudRule(
        "velocity_device",
        "many orders from one device within an hour",
        "device_orders_1h >= ${shared_orders_1h}",
        0.4,
    ),
    FraudRule(
        "velocity_payment",
        "many orders with one payment method within an hour",
        "payment_orders_1h >= ${shared_orders_1h}",
        0.5,
    ),
    FraudRule(
        "card_testing",
        "a small order in a burst of small orders from one IP or device across accounts",
        "amount <= ${small_amount} AND (ip_small_accounts_10m >= ${testing_accounts}"
        " OR device_small_accounts_10m >= ${testing_accounts})",
        0.85,
    ),
    FraudRule(
        "amount_anomaly",
        "a large order far above the customer's own history (robust z-score of the log"
        " amount, and a multiple of its median)",
        "prior_orders >= ${history_orders} AND amount_z >= ${amount_z}"
        " AND amount_ratio >= ${amount_ratio} AND amount >= ${large_amount}",
        0.75,
    ),
    FraudRule(
        "amount_cold_start",
        "a large first order from a customer without history",
        "prior_orders < ${history_orders} AND amount >= ${cold_start_amount}",
        0.4,
    ),
    FraudRule(
        "new_context",
        "a high amount from a device or country the customer has not used before",
        "(new_device OR new_country) AND prior_activity > 0 AND (amount_ratio >= ${context_ratio}"
        " OR (amount_ratio IS NULL AND amount >= ${cold_start_amount}))",
        0.75,
    ),
    FraudRule(
        "impossible_travel",
        "another country than the customer's previous login, order or refund, too soon to"
        " have travelled",
        "previous_country IS NOT NULL AND country IS NOT NULL AND previous_country <> country"
        " AND minutes_since_previous < ${travel_minutes}",
        0.6,
    ),
    FraudRule(
        "refund_abuse",
        "refunds make up a large share of the customer's orders of the last 24 hours",
        "event_type = 'refund' AND refunds_24h >= ${abuse_refunds}"
        " AND refunds_24h >= ${abuse_share} * user_orders_24h",
        0.75,
    ),
)


@dataclass(frozen=True, slots=True)
class Burst:
    """A rule that fires on a burst only once the burst has grown: the order that breaks it
    also reveals the burst's earlier orders, scored before the burst existed. Those open
    alerts too (reason ``<rule>_burst``), in the same commit: members share the firing
    order's ``same`` context, are of ``kind``, lie within ``window`` before it, and (with
    ``small_only``) are small orders. Whether an order is a member depends on stored
    activity only, never on how events were split into batches."""

    rule: str
    same: Literal["user_id", "ip_address", "device"]
    kind: Literal["purchase", "refund"]
    window: str  # a PostgreSQL interval
    small_only: bool = False


BURSTS: Final[tuple[Burst, ...]] = (
    Burst("velocity_user", "user_id", "purchase", "10 minutes"),
    Burst("card_testing", "ip_address", "purchase", "10 minutes", small_only=True),
    Burst("card_testing", "device", "purchase", "10 minutes", small_only=True),
    Burst("refund_abuse", "user_id", "refund", "24 hours"),
)
BURST_SUFFIX: Final = "_burst"

# The learned model's reason code; its weight joins the rules' like theirs.
MODEL_REASON: Final = "model_anomaly"
MODEL_WEIGHT: Final = 0.35


@dataclass(frozen=True, slots=True)
class FraudParams:
    """The rules' limits (``SHOPSTREAM_FRAUD_PARAMS`` overrides any by name)."""

    user_orders_10m: int = 5
    user_orders_1h: int = 10
    user_orders_24h: int = 100
    shared_orders_1h: int = 12
    small_amount: float = 10.0
    testing_accounts: int = 3
    history_orders: int = 3
    amount_z: float = 3.0
    amount_ratio: float = 10.0
    large_amount: float = 1_000.0
    cold_start_amount: float = 1_500.0
    context_ratio: float = 2.5
    travel_minutes: float = 120.0
    abuse_refunds: int = 2
    abuse_share: float = 0.25

    def with_overrides(self, overrides: Mapping[str, float]) -> FraudParams:
        unknown = set(overrides) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fraud parameters: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)  # type: ignore[arg-type]


def render_fraud_rules(
    params: FraudParams, weights: Mapping[str, float] | None = None
) -> tuple[FraudRule, ...]:
    """The rules with their limits filled in and any weight overridden by code."""
    weights = weights or {}
    unknown = set(weights) - {r.code for r in FRAUD_RULES} - {MODEL_REASON}
    if unknown:
        raise ValueError(f"unknown fraud rules: {', '.join(sorted(unknown))}")
    values = {name: repr(getattr(params, name)) for name in params.__dataclass_fields__}
    return tuple(
        FraudRule(
            rule.code,
            rule.description,
            Template(rule.predicate).substitute(values),
            weights.get(rule.code, rule.weight),
        )
        for rule in FRAUD_RULES
    )
