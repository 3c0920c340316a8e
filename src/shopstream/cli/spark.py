"""``shopstream spark``: what running on a Spark cluster needs beyond ``run --engine spark``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopstream.cli import console
from shopstream.settings import Settings

spark_app = typer.Typer(no_args_is_help=True, help="Spark on a cluster: the executors' Python.")


def register(app: typer.Typer) -> None:
    app.add_typer(spark_app, name="spark")


@spark_app.command("package")
def package_command(
    output: Annotated[
        Path | None,
        typer.Argument(
            help="Archive to write (default SHOPSTREAM_HOME/spark/shopstream_env.tar.gz)."
        ),
    ] = None,
    python_prefix: Annotated[
        str | None,
        typer.Option(help="Where Python lives on the workers, if not where it lives here."),
    ] = None,
) -> None:
    """Pack the executors' Python environment for spark.archives (SHOPSTREAM_SPARK_ENVIRONMENT)."""
    from shopstream.engines.spark.package import package

    target = output or Settings().home_dir / "spark" / "shopstream_env.tar.gz"
    packed = package(target.resolve(), python_prefix)
    console.print(
        f"packed {len(packed.distributions)} distributions into {packed.archive}"
        f" ({packed.size_bytes / 1e6:,.0f} MB)"
    )
    for name in packed.distributions:
        console.print(f"  {name}")
    console.print(f"use it with: SHOPSTREAM_SPARK_ENVIRONMENT={packed.archive}")
