"""Request rate limits kept in PostgreSQL, so every ``serve --workers N`` process shares
them: a token bucket per API key, and one per client address for failed authentications
(a guessing client is refused before its keys are even looked up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` sustained, bursts of up to ``burst``."""

    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_key: Rate
    auth_failures: Rate

    def take_for_key(self, conn: psycopg.Connection[Any], key_id: int) -> float:
        """0 when the key's request may go ahead, else the seconds until it may."""
        return _take(conn, f"key:{key_id}", self.per_key)

    def wait_after_failures(self, conn: psycopg.Connection[Any], client: str) -> float:
        """Seconds this client must wait before it may try a key again (0: now)."""
        rate = self.auth_failures
        row = conn.execute(
            "SELECT shopstream_token_wait(%s, %s, %s)",
            (f"auth:{client}", rate.per_second, float(rate.burst)),
        ).fetchone()
        return float(row[0]) if row else 0.0

    def count_failure(self, conn: psycopg.Connection[Any], client: str) -> None:
        """Count one failed authentication against the client's address."""
        _take(conn, f"auth:{client}", self.auth_failures)


def _take(conn: psycopg.Connection[Any], bucket: str, rate: Rate) -> float:
    row = conn.execute(
        "SELECT shopstream_take_token(%s, %s, %s)", (bucket, rate.per_second, float(rate.burst))
    ).fetchone()
    conn.commit()
    return float(row[0]) if row else 0.0
