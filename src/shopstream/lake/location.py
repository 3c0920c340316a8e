"""Where the lake is and how to reach it: a local folder or S3-compatible object storage.

Credentials and endpoint come from the usual AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for
MinIO and other S3 APIs), so the lake needs no secret of ShopStream's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

from deltalake import DeltaTable

from shopstream.lake.errors import LakeConfigurationError
from shopstream.settings import Settings

LakeTableName = Literal["events", "quarantine"]
LAKE_TABLES: Final[tuple[LakeTableName, ...]] = ("events", "quarantine")


@dataclass(frozen=True, slots=True)
class Lake:
    """A lake root: ``root`` is a local folder or ``s3://bucket/prefix``."""

    root: str
    environ: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Lake:
        return cls.at(settings.lake, os.environ if environ is None else environ)

    @classmethod
    def at(cls, uri: str, environ: Mapping[str, str]) -> Lake:
        parts = urlsplit(uri)
        if parts.scheme in ("", "file"):
            folder = Path(parts.path if parts.scheme else uri).expanduser().resolve()
            return cls(str(folder), {})
        if parts.scheme in ("s3", "s3a"):
            if not parts.netloc:
                raise LakeConfigurationError(f"lake URI {uri!r} names no bucket")
            aws = {k: v for k, v in environ.items() if k.startswith("AWS_")}
            return cls(f"s3://{parts.netloc}{parts.path.rstrip('/')}", aws)
        raise LakeConfigurationError(
            f"lake URI {uri!r}: use a folder, file://PATH or s3://BUCKET/PREFIX"
        )

    @property
    def is_local(self) -> bool:
        return not self.root.startswith("s3://")

    def table_uri(self, name: LakeTableName) -> str:
        return f"{self.root}/{name}"

    @property
    def storage_options(self) -> dict[str, str]:
        """What delta-rs needs: the AWS variables, plain HTTP for a local endpoint, and
        S3's conditional writes so two commits of one version cannot both succeed."""
        if self.is_local:
            return {}
        options = dict(self.environ)
        endpoint = options.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            options.setdefault("AWS_ALLOW_HTTP", "true")
        if "AWS_S3_LOCKING_PROVIDER" not in options:
            options.setdefault("aws_conditional_put", "etag")
        return options

    def open(self, name: LakeTableName) -> DeltaTable | None:
        """The table, or None before its first export."""
        uri = self.table_uri(name)
        if not DeltaTable.is_deltatable(uri, storage_options=self.storage_options):
            return None
        return DeltaTable(uri, storage_options=self.storage_options)
