"""Runtime settings, read from ``SHOPSTREAM_*`` environment variables."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopstream.validation.limits import DEFAULT_LIMITS, DEFAULT_PIECE_BYTES, ReadLimits


class Settings(BaseSettings):
    """Everything a deployment may tune; the defaults run the embedded setup."""

    model_config = SettingsConfigDict(env_prefix="SHOPSTREAM_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="Any PostgreSQL >= 14. Unset: ShopStream starts its own under SHOPSTREAM_HOME.",
    )
    ingest_database_url: str | None = Field(
        default=None,
        description="With SHOPSTREAM_DATABASE_URL: connect the runner and batch jobs as a login"
        " role granted shopstream_ingest (unset: SHOPSTREAM_DATABASE_URL).",
    )
    api_database_url: str | None = Field(
        default=None,
        description="With SHOPSTREAM_DATABASE_URL: connect the API as a login role granted"
        " shopstream_api (unset: SHOPSTREAM_DATABASE_URL).",
    )
    home: Path = Field(default=Path(".shopstream"), description="State directory.")
    trigger_ms: int = Field(default=100, ge=10, description="File source poll interval.")
    max_batch_rows: int = Field(default=50_000, ge=1, description="Rows per micro-batch.")
    dedupe_memory_ids: int = Field(
        default=4_000_000,
        ge=0,
        description="Committed event ids the runner remembers (4 bytes each) so it asks the"
        " store only about ids it has seen; 0 asks about every id.",
    )
    max_price: float = Field(
        default=100_000.0, gt=0, lt=100_000_000, description="Largest price; numeric(10,2)."
    )
    max_quantity: int = Field(
        default=100_000, ge=1, le=2**31 - 1, description="Largest quantity; integer column."
    )
    max_future_seconds: int = Field(
        default=300, ge=0, description="How far ahead of the clock an event time may be."
    )
    pg_bin: Path | None = Field(
        default=None, description="Directory of PostgreSQL server binaries for the embedded DB."
    )
    wal_archive: Path | None = Field(
        default=None,
        description="The embedded server archives its WAL to this folder (a minute at most"
        " behind): with `backup create --base`, recovery to any moment since.",
    )
    rollups: bool = Field(
        default=True, description="Maintain the live rollups in every batch transaction."
    )
    fraud: bool = Field(
        default=True,
        description="Score every inserted purchase and refund for fraud in its batch's"
        " transaction (fraud_scores, fraud_alerts).",
    )
    fraud_alert_threshold: float = Field(
        default=0.7, ge=0, le=1, description="A score at or above this opens a fraud alert."
    )
    fraud_params: dict[str, float] = Field(
        default_factory=dict,
        description='Fraud rule limits by name (JSON, e.g. {"amount_z": 4, "small_amount": 5});'
        " see shopstream/fraud/rules.py for the names and defaults.",
    )
    fraud_weights: dict[str, float] = Field(
        default_factory=dict,
        description='Weights of fraud rules by reason code (JSON, e.g. {"velocity_ip": 0.6}).',
    )
    late_horizon_hours: float = Field(
        default=168.0, gt=0, description="Events older than this at arrival count as late."
    )
    retry_max_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait between database retries."
    )
    retry_budget_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long one batch (or lookup) keeps retrying transient database"
        " failures before the runner stops with exit 1, its input left in place.",
    )
    retry_budget_attempts: int = Field(
        default=50, ge=1, description="Attempts one batch (or lookup) may make in all."
    )
    api_rate_per_second: float = Field(
        default=50.0, gt=0, description="API requests per second and key (sustained)."
    )
    api_rate_burst: int = Field(default=100, ge=1, description="API requests a key may burst.")
    api_auth_failures_per_second: float = Field(
        default=0.2,
        gt=0,
        description="Failed API key checks per second a client address may make (sustained);"
        " beyond, it gets 429 before any key lookup.",
    )
    api_auth_failure_burst: int = Field(
        default=20, ge=1, description="Failed API key checks a client address may burst."
    )
    metrics_access: Literal["off", "key", "open"] = Field(
        default="key",
        description="The API's /metrics: off; key (an analyst or admin API key, or"
        " SHOPSTREAM_METRICS_TOKEN, as a Bearer token: Prometheus' authorization setting);"
        " open (only on a private scrape network).",
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="A token for scraping /metrics when metrics_access is key."
    )
    api_cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser."
    )
    api_max_body_bytes: int = Field(
        default=65_536, ge=1024, description="Largest request body the API accepts."
    )
    spark_driver_memory: str = Field(
        default="4g", description="Spark driver heap (local mode: executors share it)."
    )
    spark_packages: str | None = Field(
        default=None,
        description="Spark: Maven coordinates to add (spark.jars.packages), e.g. the Kafka"
        " connector org.apache.spark:spark-sql-kafka-0-10_2.13:<spark version>.",
    )
    spark_jars: str | None = Field(
        default=None, description="Spark: local jar files to add (spark.jars), comma-separated."
    )
    spark_max_offsets_per_trigger: int = Field(
        default=200_000, ge=1, description="Spark with Kafka: messages per micro-batch."
    )
    spark_environment: Path | None = Field(
        default=None,
        description="Spark on a cluster: the packed Python environment for executors"
        " (`shopstream spark package`), shipped through spark.archives.",
    )
    spark_executor_memory: str | None = Field(
        default=None, description="Spark on a cluster: heap per executor (spark.executor.memory)."
    )
    spark_max_files_per_trigger: int | None = Field(
        default=None,
        ge=1,
        description="Spark: files per micro-batch unless --max-files-per-trigger; unset, the"
        " micro-batch is bounded by SHOPSTREAM_SPARK_MAX_BYTES_PER_TRIGGER instead.",
    )
    spark_max_bytes_per_trigger: int = Field(
        default=128 * 2**20,
        ge=2**20,
        description="Spark: input bytes (files as stored) per micro-batch, when no file count"
        " is given; Spark's maxBytesPerTrigger (a larger file still makes a batch alone).",
    )
    api_pool_size: int = Field(default=10, ge=1, description="API database connections.")
    max_file_bytes: int = Field(
        default=DEFAULT_LIMITS.max_file_bytes,
        ge=1024,
        description="Largest input file, after decompression, loaded at all; larger files"
        " are rejected as file_too_large (hashed as a stream, never held in memory).",
    )
    file_piece_bytes: int = Field(
        default=DEFAULT_PIECE_BYTES,
        ge=64 * 1024,
        description="A file larger than this (decompressed), or compressed, is read as a"
        " stream and loaded in pieces of about this size, each in its own batch, resuming"
        " after the last committed piece on restart: memory follows this, not the file.",
    )
    max_compression_ratio: float = Field(
        default=DEFAULT_LIMITS.max_compression_ratio,
        gt=1,
        description="A gzip file expanding more than this (past its first MiB) is rejected as"
        " file_compression_ratio: a decompression bomb.",
    )
    max_line_bytes: int = Field(
        default=DEFAULT_LIMITS.max_line_bytes,
        ge=1024,
        description="Longest record parsed; longer ones are quarantined as line_too_long.",
    )
    quarantine_excerpt_bytes: int = Field(
        default=DEFAULT_LIMITS.excerpt_bytes,
        ge=256,
        description="How much of a quarantined record's raw content is stored (its full size"
        " and SHA-256 always are).",
    )
    reject_bad_records: int = Field(
        default=DEFAULT_LIMITS.reject_bad_records,
        ge=1,
        description="A file with more bad records than this, over 90% of it, is rejected whole"
        " as file_mostly_broken with a sample, instead of quarantined line by line.",
    )

    mapping: Path | None = Field(
        default=None,
        description="A mapping file (TOML) reading every source record; --mapping wins.",
    )
    custom_event_types: list[str] = Field(
        default_factory=list,
        description="Event types beyond the canonical ones to accept under their own name"
        ' (JSON list, e.g. ["logout","share"]); a mapping may declare more.',
    )
    reporting_currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code the API converts revenue into, at the rates shopstream"
        " fx load stored; unset: revenue is reported per currency (one total only when"
        " there is one currency).",
    )
    schedule_daily: str = Field(
        default="0 2 * * *",
        description="Cron (UTC) of the daily job: daily_aggregations for every finished day"
        " not yet aggregated, then the quality suites for it.",
    )
    schedule_customers: str = Field(default="0 * * * *", description="Cron of segments/value.")
    schedule_quality: str = Field(default="*/15 * * * *", description="Cron of quality suites.")
    schedule_alerts: str = Field(default="* * * * *", description="Cron of alert evaluation.")
    job_retries: int = Field(default=3, ge=0, description="Retries of a failed job run.")
    job_retry_seconds: float = Field(
        default=30.0, ge=0, description="First wait before a job retry; doubles each time."
    )
    job_catchup_days: int = Field(
        default=400, ge=1, description="The daily job goes back at most this many days."
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka to publish job results to (topics daily-aggregations and"
        " data-quality-alerts); unset: nothing is published.",
    )
    quality_suites: Path | None = Field(
        default=None, description="A folder of suite files to run instead of the shipped ones."
    )
    quality_freshness_minutes: float = Field(
        default=30.0, gt=0, description="Quality: newest event at most this old (traffic hours)."
    )
    quality_volume_band: tuple[float, float] = Field(
        default=(0.6, 1.6),
        description="Quality: a day's events as a share of the 7-day median, low and high.",
    )
    quality_max_quarantine_rate: float = Field(
        default=0.05, ge=0, le=1, description="Quality: share of a day's input rows quarantined."
    )
    anomaly_weeks: int = Field(
        default=4, ge=3, description="Anomaly alerts: earlier weeks forming an hour's baseline."
    )
    anomaly_threshold: float = Field(
        default=4.0, gt=0, description="Anomaly alerts: robust z-score that fires."
    )
    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager to deliver data alerts to (its base URL)."
    )
    alert_webhook_url: str | None = Field(
        default=None, description="Without Alertmanager: POST alerts as JSON here."
    )
    alert_slack_webhook_url: str | None = Field(
        default=None, description="Without Alertmanager: a Slack-compatible incoming webhook."
    )
    alert_smtp_url: str | None = Field(
        default=None, description="Without Alertmanager: smtp://[user:password@]host:port."
    )
    alert_email_to: list[str] = Field(
        default_factory=list, description="Recipients of alert e-mail (JSON list)."
    )
    alert_email_from: str = Field(default="shopstream@localhost", description="Sender.")
    alert_freshness_seconds: int = Field(
        default=600, ge=1, description="Prometheus rules: no commit for this long fires."
    )
    alert_no_commit_seconds: int = Field(
        default=300, ge=1, description="Prometheus rules: input waits, no commit this long."
    )
    alert_quarantine_rate: float = Field(
        default=0.05, ge=0, le=1, description="Prometheus rules: quarantined share that fires."
    )
    alert_kafka_lag: int = Field(
        default=100_000, ge=0, description="Prometheus rules: messages behind that fires."
    )
    alert_pending_for: str = Field(
        default="5m",
        pattern=r"^\d+[smh]$",
        description="Prometheus rules: how long a condition holds before it fires.",
    )
    lake_uri: str | None = Field(
        default=None,
        description="The lake archive: a Delta Lake folder, file://PATH or s3://BUCKET/PREFIX"
        " (credentials and endpoint from the usual AWS_* variables); unset:"
        " SHOPSTREAM_HOME/lake.",
    )
    lake_export_rows: int = Field(
        default=1_000_000, ge=1, description="Lake export: rows per Delta commit (at most)."
    )
    schedule_lake: str = Field(default="15 * * * *", description="Cron of the lake export.")
    schedule_retention: str = Field(
        default="30 3 * * *", description="Cron of retention (archives, then deletes)."
    )
    retention_events_days: int | None = Field(
        default=None, ge=1, description="Events older than this leave PostgreSQL once the lake"
        " holds them (unset: kept forever).",
    )  # fmt: skip
    retention_quarantine_raw_days: int | None = Field(
        default=None, ge=1, description="Quarantined records' raw content is dropped after this"
        " many days once the lake holds it; the rule, fields, size and hash stay (unset: kept).",
    )  # fmt: skip
    retention_logs_days: int = Field(
        default=90, ge=1, description="Job runs, quality results and resolved alerts older than"
        " this are deleted (batch records stay: they are the exactly-once ledger).",
    )  # fmt: skip
    retention_minute_rollups_days: int = Field(
        default=365, ge=1, description="Minute rollups (realtime_metrics) kept this many days."
    )
    privacy_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hash that [privacy] hash applies; unset: a random key"
        " kept in SHOPSTREAM_HOME/privacy.key, so pseudonyms are stable per installation.",
    )

    @property
    def read_limits(self) -> ReadLimits:
        return ReadLimits(
            max_file_bytes=self.max_file_bytes,
            max_compression_ratio=self.max_compression_ratio,
            max_line_bytes=self.max_line_bytes,
            excerpt_bytes=self.quarantine_excerpt_bytes,
            reject_bad_records=self.reject_bad_records,
        )

    def privacy_hash_key(self) -> bytes:
        """The installation's key for pseudonymising fields: the setting, else a random key
        made once and kept (owner-readable only) in the state directory."""
        if self.privacy_key is not None:
            return self.privacy_key.get_secret_value().encode()
        path = self.home_dir / "privacy.key"
        try:
            return bytes.fromhex(path.read_text().strip())
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                return bytes.fromhex(path.read_text().strip())
            with os.fdopen(descriptor, "w") as handle:
                handle.write(key.hex())
            return key

    @staticmethod
    def days_before(days: int, now: datetime) -> datetime:
        """The UTC midnight ``days`` before ``now``'s day: where a retention policy of that
        many days cuts (whole days leave together)."""
        today = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), UTC)
        return today - timedelta(days=days)

    @property
    def lake(self) -> str:
        """Where the lake archive lives: the setting, else a folder in the state directory."""
        return self.lake_uri or (self.home_dir / "lake").as_uri()

    @cached_property
    def home_dir(self) -> Path:
        """Absolute state directory, created on first use."""
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
