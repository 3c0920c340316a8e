"""Money is never added across currencies: per-currency revenue, one total only through
exchange rates (``shopstream fx load``), and the API saying why when there is none."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg

from tests.fixtures.analytics import NET_AMOUNT, assert_rollups_match_events
from tests.fixtures.api import new_key, serving
from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.foreign import (
    CURRENCIES,
    STOREFRONT_TRANSACTIONS_MAPPING,
    jsonl,
    storefront_transactions,
)

WINDOW = {"from": "2026-11-20T00:00:00Z", "to": "2026-11-21T00:00:00Z"}
DAY = "2026-11-20"
RATES = {"EUR": "1.0842", "GBP": "1.2611", "CAD": "0.7315", "AUD": "0.6523"}


def _by_currency(url: str) -> dict[str, tuple[Decimal, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"""SELECT currency, sum({NET_AMOUNT}), count(*) FILTER (WHERE event_type = 'purchase')
                  FROM events GROUP BY 1"""
        ).fetchall()
    return {currency: (revenue, orders) for currency, revenue, orders in rows}


def _kpis(base: str, key: str) -> dict[str, object]:
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
        response = client.get("/api/v1/kpis", params=WINDOW)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_revenue_per_currency_and_one_total_only_through_rates(
    tmp_path: Path, database_url: str
) -> None:
    mapping = tmp_path / "transactions.toml"
    mapping.write_text(STOREFRONT_TRANSACTIONS_MAPPING)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "orders.jsonl").write_bytes(jsonl(storefront_transactions(800, seed=11)))
    env = cli_env(database_url, tmp_path / "home")
    shopstream("run", "--source", str(inbox), "--until-idle", "--mapping", str(mapping), env=env)
    assert_rollups_match_events(database_url)  # per-currency rows, customers' money by code
    expected = _by_currency(database_url)
    assert set(expected) == set(CURRENCIES)
    key = new_key(env, "viewer")

    # No reporting currency: five figures, no total, and the reason.
    with serving(env) as (base, _):
        kpis = _kpis(base, key)
    assert kpis["revenue"] is None and kpis["currency"] is None
    assert "5 currencies" in str(kpis["revenue_note"])
    assert "SHOPSTREAM_REPORTING_CURRENCY" in str(kpis["revenue_note"])
    assert {
        m["currency"]: (Decimal(m["revenue"]), m["orders"])
        for m in kpis["revenue_by_currency"]  # type: ignore[attr-defined]
    } == expected

    # A reporting currency, rates for every currency but AUD: still no total, AUD named.
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "date,currency,rate\n"
        + "".join(f"{DAY},{code},{rate}\n" for code, rate in RATES.items() if code != "AUD")
    )
    usd = {**env, "SHOPSTREAM_REPORTING_CURRENCY": "USD"}
    shopstream("fx", "load", str(rates), env=usd)
    with serving(usd) as (base, _):
        partial = _kpis(base, key)
        assert partial["revenue"] is None
        assert "AUD on 2026-11-20" in str(partial["revenue_note"])

        # AUD's rate of an earlier day serves later days too (no rate on holidays).
        rates.write_text(f"date,currency,rate\n2026-11-17,AUD,{RATES['AUD']}\n")
        shopstream("fx", "load", str(rates), env=usd)
        shopstream("fx", "load", str(rates), env=usd)  # the same file again: no change
        total = _kpis(base, key)
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
            top = client.get("/api/v1/products/top", params={"from": DAY, "to": DAY}).json()
            eur = client.get(
                "/api/v1/products/top", params={"from": DAY, "to": DAY, "currency": "EUR"}
            ).json()
    ranked = [Decimal(p["reporting_revenue"]) for p in top]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 10  # converted, comparable
    assert eur and {p["currency"] for p in eur} == {"EUR"}
    converted = sum(
        (revenue * Decimal(RATES.get(code, "1")) for code, (revenue, _) in expected.items()),
        Decimal(0),
    )
    assert total["currency"] == "USD"
    assert abs(Decimal(str(total["revenue"])) - converted) <= Decimal("0.05")  # rounding per code
    assert "converted to USD" in str(total["revenue_note"])
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM fx_rates").fetchone() == (4,)


def _fx_load(rates: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``fx load`` expected to fail; its stderr unwrapped (rich wraps at the width)."""
    result = shopstream("fx", "load", str(rates), env=env, check=False)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout, " ".join(result.stderr.split())
    )


def test_a_bad_rates_file_loads_nothing_and_names_its_lines(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_REPORTING_CURRENCY="USD")
    shopstream("db", "migrate", env=env)
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "date,currency,rate\n2026-11-20,EUR,1.08\n20/11/2026,GBP,1.26\n2026-11-20,eu,1\n"
    )
    failed = _fx_load(rates, env)
    assert failed.returncode == 2
    assert "line 3: date" in failed.stderr and "line 4: currency" in failed.stderr
    rates.write_text("day,code,value\n")
    failed = _fx_load(rates, env)
    assert failed.returncode == 2 and "no column date, currency, rate" in failed.stderr
    failed = _fx_load(rates, cli_env(database_url, tmp_path / "home"))
    assert failed.returncode == 2 and "--to USD" in failed.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM fx_rates").fetchone() == (0,)
