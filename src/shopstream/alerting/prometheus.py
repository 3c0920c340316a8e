"""The Prometheus side: alert rules shipped with the package and a scrape configuration for
``serve`` and ``run --metrics-port``, both rendered from templates with the operator's
thresholds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources
from string import Template
from typing import Final

API_JOB: Final = "shopstream-api"
RUNNER_JOB: Final = "shopstream-runner"


@dataclass(frozen=True, slots=True)
class Thresholds:
    freshness_seconds: int = 600
    no_commit_seconds: int = 300
    quarantine_rate: float = 0.05
    kafka_lag: int = 100_000
    api_error_rate: float = 0.05
    batch_retries: int = 3
    pending_for: str = "5m"  # how long a condition holds before it fires


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("prometheus", name).read_text())


def rules(thresholds: Thresholds) -> str:
    return _template("rules.yml").substitute(
        asdict(thresholds), api_job=API_JOB, runner_job=RUNNER_JOB
    )


def scrape_config(
    *,
    api: str,
    runner: str,
    alertmanager: str,
    rules_file: str,
    interval: str = "15s",
    bearer_token: str | None = None,
) -> str:
    authorization = (
        f"    authorization:\n      credentials: {bearer_token}\n" if bearer_token else ""
    )
    return _template("prometheus.yml").substitute(
        api=api, runner=runner, alertmanager=alertmanager, rules_file=rules_file,
        interval=interval, authorization=authorization, api_job=API_JOB, runner_job=RUNNER_JOB,
    )  # fmt: skip
