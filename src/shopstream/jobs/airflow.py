"""``shopstream airflow dag``: a DAG for users who orchestrate with Airflow (seed 003).

The DAG calls the ``shopstream`` command, so Airflow needs nothing of ShopStream's but the
command and the ``SHOPSTREAM_*`` environment of its workers: Airflow stays out of the core's
dependencies (``shopstream[airflow]`` installs both in one environment for those who want
that). Every task is the same job ``shopstream jobs run`` runs, logged in
``pipeline_execution_logs`` with trigger ``airflow`` and locked against a scheduler running
it at the same moment. A task that fails after its retries raises a ShopStream alert; its
next success resolves it.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from importlib import resources
from string import Template


def this_command() -> str:
    """How to call the installed ``shopstream``, as a shell word list."""
    found = shutil.which("shopstream")
    return shlex.quote(found) if found else f"{shlex.quote(sys.executable)} -m shopstream"


def render_dag(*, schedule: str, retries: int, command: str) -> str:
    template = Template(resources.files(__package__).joinpath("airflow_dag.py.txt").read_text())
    return template.substitute(schedule=repr(schedule), retries=retries, command=repr(command))
