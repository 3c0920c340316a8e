"""The fraud rules as data: rendering, overrides, and how reasons join into one score."""

from __future__ import annotations

import math

import polars as pl
import pytest

from shopstream.fraud.rules import FRAUD_RULES, FraudParams, render_fraud_rules
from shopstream.fraud.score import judge


def _features(**values: object) -> pl.DataFrame:
    """One order's features: every column the rules read, neutral unless given."""
    neutral: dict[str, object] = {
        "event_type": "purchase", "amount": 50.0, "amount_z": 0.0, "amount_ratio": 1.0,
        "user_orders_10m": 1, "user_orders_1h": 1, "user_orders_24h": 1, "refunds_24h": 0,
        "ip_orders_1h": 1, "device_orders_1h": 1, "payment_orders_1h": 1,
        "ip_small_accounts_10m": 0, "device_small_accounts_10m": 0, "prior_orders": 5,
        "prior_activity": 5, "new_device": False, "new_country": False,
        "previous_country": "US", "country": "US", "minutes_since_previous": 600.0,
    }  # fmt: skip
    return pl.DataFrame([{**neutral, **values}])


RULES = render_fraud_rules(FraudParams())


@pytest.mark.parametrize(
    ("values", "reasons"),
    [
        ({}, []),
        ({"user_orders_10m": 5}, ["velocity_user"]),
        ({"ip_orders_1h": 12}, ["velocity_ip"]),
        ({"amount": 4.0, "ip_small_accounts_10m": 3}, ["card_testing"]),
        ({"amount": 2_000.0, "amount_z": 6.0, "amount_ratio": 40.0}, ["amount_anomaly"]),
        ({"amount": 2_000.0, "prior_orders": 0, "amount_ratio": None}, ["amount_cold_start"]),
        ({"new_device": True, "amount_ratio": 3.0}, ["new_context"]),
        ({"previous_country": "DE", "minutes_since_previous": 20.0}, ["impossible_travel"]),
        ({"event_type": "refund", "refunds_24h": 2, "user_orders_24h": 4}, ["refund_abuse"]),
        ({"country": None, "previous_country": "DE", "minutes_since_previous": 1.0}, []),
    ],
)
def test_each_rule_names_its_reason(values: dict[str, object], reasons: list[str]) -> None:
    judged = judge(_features(**values), RULES)
    assert judged["reasons"].to_list() == [reasons]
    weights = {r.code: r.weight for r in RULES}
    expected = 1 - math.prod(1 - weights[r] for r in reasons)
    assert judged["score"][0] == pytest.approx(expected)


def test_reasons_join_like_independent_evidence_and_the_model_adds_its_own() -> None:
    both = _features(user_orders_10m=5, ip_orders_1h=20)
    judged = judge(both, RULES, anomaly=[0.9], cutoff=0.6)
    assert judged["reasons"].to_list() == [["velocity_user", "velocity_ip", "model_anomaly"]]
    assert judged["score"][0] == pytest.approx(1 - 0.25 * 0.6 * 0.65)
    assert judge(both, RULES, anomaly=[0.5], cutoff=0.6)["reasons"].to_list() == [
        ["velocity_user", "velocity_ip"]
    ]


def test_limits_and_weights_are_settings_and_unknown_names_are_refused() -> None:
    strict = render_fraud_rules(FraudParams().with_overrides({"user_orders_10m": 2}),
                                {"velocity_user": 0.9})  # fmt: skip
    rule = next(r for r in strict if r.code == "velocity_user")
    assert "user_orders_10m >= 2" in rule.predicate and rule.weight == 0.9
    assert judge(_features(user_orders_10m=2), strict)["score"][0] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="amount_zz"):
        FraudParams().with_overrides({"amount_zz": 1})
    with pytest.raises(ValueError, match="no_such_rule"):
        render_fraud_rules(FraudParams(), {"no_such_rule": 0.1})
    assert len({r.code for r in FRAUD_RULES}) == len(FRAUD_RULES)
