"""Transient vs terminal database errors, decided by SQLSTATE and exception class."""

from __future__ import annotations

from typing import Final

import psycopg

# SQLSTATE classes worth retrying: connection exceptions, insufficient resources,
# operator intervention (server shutting down or starting up).
_TRANSIENT_CLASSES: Final = frozenset({"08", "53", "57"})
# Single states worth retrying: serialization failure, deadlock, lock not available.
_TRANSIENT_STATES: Final = frozenset({"40001", "40P01", "55P03"})


def is_transient(error: BaseException) -> bool:
    """True when retrying the same transaction later can succeed."""
    if not isinstance(error, psycopg.Error):
        return isinstance(error, ConnectionError | TimeoutError)
    state = error.sqlstate
    if state is None:
        # No SQLSTATE: the server never answered (refused, reset, closed mid-query).
        return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)
    return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
