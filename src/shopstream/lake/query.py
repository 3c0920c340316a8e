"""Historical queries without PostgreSQL: DuckDB over the lake's Delta tables.

DuckDB reads Delta through its ``delta`` extension (delta-kernel), and S3 through
``httpfs``. Both ship as Python wheels pinned to the DuckDB release, so nothing is fetched
at run time: the connection loads them from the wheels' folder and never installs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa

from shopstream.lake.errors import LakeConfigurationError
from shopstream.lake.location import LAKE_TABLES, Lake

_EXTENSIONS: Final = ("delta", "httpfs")


def extension_directory() -> Path:
    """Where the ``duckdb-ext-*`` wheels put their extensions."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise LakeConfigurationError(
            "DuckDB's delta extension is not installed (pip install duckdb-ext-delta)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "extensions"


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per lake table that exists (``events``,
    ``quarantine``), each the table's current version."""
    con = duckdb.connect(
        config={
            "extension_directory": str(extension_directory()),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    for extension in _EXTENSIONS:
        con.load_extension(extension)
    if not lake.is_local:
        con.execute(_s3_secret(lake))
    for name in LAKE_TABLES:
        if lake.open(name) is not None:
            scan = f"delta_scan({_quoted(lake.table_uri(name))})"
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {scan}")  # noqa: S608 - a fixed name
    return con


def query(lake: Lake, statement: str) -> pa.Table:
    """Run one SQL statement over the lake; the result as Arrow."""
    with connect(lake) as con:
        return con.sql(statement).to_arrow_table()


def _s3_secret(lake: Lake) -> str:
    """A DuckDB S3 secret from the same AWS variables delta-rs reads."""
    env = lake.environ
    options = {
        "KEY_ID": env.get("AWS_ACCESS_KEY_ID"),
        "SECRET": env.get("AWS_SECRET_ACCESS_KEY"),
        "SESSION_TOKEN": env.get("AWS_SESSION_TOKEN"),
        "REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }
    endpoint = env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        options |= {
            "ENDPOINT": parts.netloc,
            "URL_STYLE": "path",
            "USE_SSL": "true" if parts.scheme == "https" else "false",
        }
    body = ", ".join(
        f"{key} {value if key == 'USE_SSL' else _quoted(value)}"
        for key, value in options.items()
        if value is not None
    )
    return f"CREATE OR REPLACE SECRET shopstream_lake (TYPE s3, {body})"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
