"""API keys: created once and shown once, stored as a digest, checked on every request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

KEY_PREFIX: Final = "ssk_"
_SHOWN_PREFIX: Final = 12


class Role(StrEnum):
    """Closed set of roles; each includes the rights of the ones before it."""

    VIEWER = "viewer"  # aggregate KPIs and dashboards
    ANALYST = "analyst"  # also customer- and event-level data, the quarantine
    ADMIN = "admin"  # also key management and quarantine replay

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid key belongs to."""

    key_id: int
    name: str
    role: Role


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create_key(
    conn: psycopg.Connection[Any], role: Role, name: str, expires_in: timedelta | None
) -> tuple[int, str]:
    """A new key's id and the key itself (the only time it exists in clear)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        """INSERT INTO api_keys (name, role, key_digest, key_prefix, expires_at)
           VALUES (%s, %s, %s, %s, now() + %s) RETURNING key_id""",
        (name, role.value, digest(key), key[:_SHOWN_PREFIX], expires_in),
    ).fetchone()
    assert row is not None
    return int(row[0]), key


def list_keys(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT key_id, name, role, key_prefix, created_at, expires_at, revoked_at,
                      revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
                          AS active
                 FROM api_keys ORDER BY key_id"""
        ).fetchall()


def revoke_key(conn: psycopg.Connection[Any], key_id: int) -> bool:
    """True when the key existed and was active until now."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL "
        "RETURNING key_id",
        (key_id,),
    ).fetchone()
    return row is not None


def authenticate(conn: psycopg.Connection[Any], key: str) -> Principal | None:
    """The key's owner, or None for an unknown, revoked or expired key."""
    if not key.startswith(KEY_PREFIX):
        return None
    row = conn.execute(
        """SELECT key_id, name, role FROM api_keys
            WHERE key_digest = %s AND revoked_at IS NULL
              AND (expires_at IS NULL OR expires_at > now())""",
        (digest(key),),
    ).fetchone()
    if row is None:
        return None
    return Principal(int(row[0]), str(row[1]), Role(str(row[2])))


def expiry(days: float | None) -> timedelta | None:
    return None if days is None else timedelta(days=days)
