"""Real Prometheus and Alertmanager: the shipped rules are valid; Prometheus scrapes a real
``serve`` and runner; stopping the runner while files keep landing fires the freshness
alert through Alertmanager to a webhook, and it resolves once the runner is back.
ShopStream's own data alerts reach Alertmanager's API, one per condition, resolved once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.api import free_port, serving
from tests.fixtures.batches import uuids, views_file
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.monitoring import MISSING, PROMTOOL, Server, alertmanager, prometheus, query
from tests.fixtures.postgres import fresh_database, service_reachable_dir
from tests.fixtures.receivers import Webhook

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

FAST_RULES = {
    "SHOPSTREAM_ALERT_FRESHNESS_SECONDS": "6",
    "SHOPSTREAM_ALERT_NO_COMMIT_SECONDS": "6",
    "SHOPSTREAM_ALERT_PENDING_FOR": "1s",
}


def test_the_shipped_rules_pass_promtool(tmp_path: Path) -> None:
    env = cli_env(None, tmp_path / "home")
    rules = tmp_path / "rules.yml"
    rules.write_text(shopstream("monitoring", "rules", env=env).stdout)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        shopstream("monitoring", "prometheus-config", "--rules-file", str(rules), env=env).stdout
    )
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    checked = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def arrives(hook: Webhook, alertname: str, status: str) -> Callable[[], bool]:
    return lambda: bool(notified(hook, alertname, status))


def notified(hook: Webhook, alertname: str, status: str) -> list[dict[str, object]]:
    return [
        a for body in hook.bodies for a in body.get("alerts", [])
        if a["labels"].get("alertname") == alertname and a["status"] == status
    ]  # fmt: skip


class Landing:
    """Drops a small file into the inbox every second, like a shop's exporter."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            data = views_file(uuids(n * 10, 10))
            (self.inbox / f".events_{n}.tmp").write_bytes(data)
            (self.inbox / f".events_{n}.tmp").rename(self.inbox / f"events_{n}.csv")
            n += 1
            self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def stack(pg_server: EmbeddedPostgres) -> Iterator[dict[str, object]]:
    work = service_reachable_dir("shopstream-monitoring-")
    hook = Webhook()
    manager = alertmanager(work / "alertmanager", hook.url)
    env = cli_env(
        fresh_database(pg_server, "monitoring"), work / "home",
        SHOPSTREAM_METRICS_ACCESS="open", SHOPSTREAM_ALERTMANAGER_URL=manager.base, **FAST_RULES,
    )  # fmt: skip
    inbox = work / "in"
    inbox.mkdir()
    try:
        yield {"work": work, "hook": hook, "manager": manager, "env": env, "inbox": inbox}
    finally:
        manager.stop()
        hook.close()


def test_a_stopped_runner_fires_freshness_through_alertmanager_and_resolves(
    stack: dict[str, object],
) -> None:
    env, inbox, hook = stack["env"], stack["inbox"], stack["hook"]
    assert isinstance(env, dict) and isinstance(inbox, Path) and isinstance(hook, Webhook)
    manager = stack["manager"]
    assert isinstance(manager, Server)
    runner_port = free_port()
    landing = Landing(inbox)
    runner = start_shopstream("run", "--source", str(inbox), "--delete",
                              "--metrics-port", str(runner_port), env=env)  # fmt: skip
    try:
        with serving(env) as (api, _):
            work = stack["work"]
            assert isinstance(work, Path)
            rules = shopstream("monitoring", "rules", env=env).stdout
            config = shopstream(
                "monitoring", "prometheus-config", "--api", api.removeprefix("http://"),
                "--runner", f"127.0.0.1:{runner_port}", "--interval", "1s",
                "--alertmanager", manager.base.removeprefix("http://"),
                "--rules-file", str(work / "prometheus" / "rules.yml"), env=env,
            ).stdout  # fmt: skip
            prom = prometheus(work / "prometheus", config, rules)
            try:
                wait_for("both targets up", lambda: len(query(prom, "up == 1")) == 2)
                wait_for("a commit", lambda: bool(
                    query(prom, "shopstream_pipeline_seconds_since_last_commit < 5")
                ))  # fmt: skip
                assert not notified(hook, "ShopStreamFreshnessLag", "firing")

                runner.kill()  # files keep landing, nothing commits
                runner.communicate()
                wait_for(
                    "the freshness alert at the webhook",
                    arrives(hook, "ShopStreamFreshnessLag", "firing"),
                )
                wait_for("the runner-down alert", arrives(hook, "ShopStreamRunnerDown", "firing"))
                assert not notified(hook, "ShopStreamFreshnessLag", "resolved")

                runner = start_shopstream("run", "--source", str(inbox), "--delete",
                                          "--metrics-port", str(runner_port), env=env)  # fmt: skip
                wait_for(
                    "the freshness alert to resolve",
                    arrives(hook, "ShopStreamFreshnessLag", "resolved"),
                )
                firing = notified(hook, "ShopStreamFreshnessLag", "firing")
                assert firing[0]["labels"]["severity"] == "warning"
            finally:
                prom.stop()
    finally:
        landing.stop()
        runner.kill()
        runner.communicate()


def test_shopstreams_own_alerts_reach_alertmanager_once_and_resolve_once(
    stack: dict[str, object],
) -> None:
    env, hook = stack["env"], stack["hook"]
    assert isinstance(env, dict) and isinstance(hook, Webhook)
    raise_it = ("alerts", "raise", "volume_anomaly", "--fingerprint", "anomaly:volume",
                "--summary", "10 events where 100 are usual")  # fmt: skip
    assert "fired" in shopstream(*raise_it, env=env).stdout
    assert "unchanged" in shopstream(*raise_it, env=env).stdout  # still one condition
    wait_for("the data alert at the webhook",
             lambda: bool(notified(hook, "volume_anomaly", "firing")))  # fmt: skip
    assert "resolved" in shopstream(*raise_it, "--resolve", env=env).stdout
    wait_for("its resolution", lambda: bool(notified(hook, "volume_anomaly", "resolved")))
    time.sleep(3)  # anything more would arrive within Alertmanager's 1 s group interval
    firing = notified(hook, "volume_anomaly", "firing")
    assert {a["annotations"]["summary"] for a in firing} == {"10 events where 100 are usual"}
    assert len(notified(hook, "volume_anomaly", "resolved")) == 1
