"""Batch ids: values of the ``batches`` sequence, never handed out twice.

A sequence value survives the rollback of the transaction that drew it, so an engine may
reserve a batch's id before parsing (its log lines then carry the id the batch record will
have) and the loader may retry the batch under the same id.
"""

from __future__ import annotations

from typing import Any

import psycopg


def reserve_batch_id(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT nextval('batches_batch_id_seq')").fetchone()
    assert row is not None
    return int(str(row[0]))
