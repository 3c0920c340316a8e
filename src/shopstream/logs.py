"""Logging: rich console lines for people, or JSON lines (structlog) for log pipelines.

In JSON, every record carries the context bound with :func:`bind_batch` — the batch id the
engine reserved before parsing, so the engine's, the loader's and the API's lines about one
batch share it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import structlog
from rich.console import Console
from rich.logging import RichHandler

LogFormat = Literal["console", "json"]


def configure(level: str, log_format: LogFormat, console: Console) -> None:
    if log_format == "console":
        handler: logging.Handler = RichHandler(
            console=console, show_path=False, rich_tracebacks=False
        )
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processor=structlog.processors.JSONRenderer(),
                foreign_pre_chain=[
                    structlog.contextvars.merge_contextvars,
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info,
                ],
            )
        )
    logging.basicConfig(level=level.upper(), format="%(message)s", handlers=[handler], force=True)


@contextmanager
def bind_batch(batch_id: int) -> Iterator[int]:
    """Tag this thread's log records with ``batch_id`` while the block runs."""
    with structlog.contextvars.bound_contextvars(batch_id=batch_id):
        yield batch_id
