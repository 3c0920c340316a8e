"""Transient vs terminal database errors, decided by SQLSTATE (never by message text)."""

from __future__ import annotations

from typing import Final

import psycopg

# Connection exceptions: the session is gone, a new one can succeed.
_TRANSIENT_CLASSES: Final = frozenset({"08"})
_TRANSIENT_STATES: Final = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up)
        "53300",  # too_many_connections
    }
)


def is_transient(error: BaseException) -> bool:
    """True when retrying the same transaction later can succeed. A statement cancelled
    by ``statement_timeout`` (57014) is not: it would time out again."""
    if not isinstance(error, psycopg.Error):
        return isinstance(error, ConnectionError | TimeoutError)
    state = error.sqlstate
    if state is None:
        # No SQLSTATE: the server never answered (refused, reset, closed mid-query).
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
