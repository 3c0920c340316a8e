"""What operators see: the runner's Prometheus metrics, JSON logs, and `make demo`."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import httpx
import psycopg

from tests.fixtures.api import free_port
from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.counts import outcome


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


def test_runner_metrics_and_json_logs_carry_the_batch(tmp_path: Path, database_url: str) -> None:
    env = cli_env(
        database_url, tmp_path / "home", SHOPSTREAM_LOG_FORMAT="json", SHOPSTREAM_LOG_LEVEL="INFO"
    )
    inbox = tmp_path / "in"
    shopstream("generate", "--out", str(inbox), "--events", "6000", "--seed", "2",
               "--dirty", "0.05", "--duplicates", "0.05", env=env)  # fmt: skip
    shopstream("db", "migrate", env=env)
    port = free_port()
    runner = start_shopstream("run", "--source", str(inbox), "--metrics-port", str(port), env=env)
    try:
        deadline = time.monotonic() + 60
        while outcome(database_url).read < 6000 * 1.05 - 1:
            assert runner.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        runner.terminate()
        _, stderr = runner.communicate(timeout=60)
    done = outcome(database_url)
    assert _metric(text, "shopstream_events_read_total") == done.read
    assert _metric(text, "shopstream_events_loaded_total") == done.loaded
    assert _metric(text, "shopstream_events_duplicate_total") == done.duplicates
    with psycopg.connect(database_url) as conn:
        by_rule = dict(
            conn.execute(
                "SELECT rule, count(*) FROM quarantine, unnest(rules) AS rule GROUP BY 1"
            ).fetchall()
        )
    for rule, count in by_rule.items():
        assert _metric(text, f'shopstream_events_quarantined_total{{rule="{rule}"}}') == count
    assert _metric(text, "shopstream_batch_seconds_count") >= 1

    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    committed = [r for r in records if "committed" in r["event"]]
    assert committed and all(isinstance(r["batch_id"], int) for r in committed)
    assert all(f"batch {r['batch_id']} committed" in r["event"] for r in committed)


def test_demo_serves_the_dashboard_with_a_printed_key(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    port = free_port()
    demo = start_shopstream("demo", "--rate", "2000", "--duration", "12", "--port", str(port),
                            "--history-days", "0", "--no-scheduler", env=env)  # fmt: skip
    key = None
    deadline = time.monotonic() + 60
    while key is None:
        assert demo.poll() is None and time.monotonic() < deadline, "no key printed"
        time.sleep(0.3)
        found = re.search(r"^(ssk_\S+)$", demo.stdout_so_far(), re.MULTILINE)
        key = found.group(1) if found else None
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base, timeout=10).status_code == 200
    deadline = time.monotonic() + 30
    while True:
        # The demo's events are happening now: the default window (last 24 hours) holds them.
        kpis = httpx.get(f"{base}/api/v1/kpis", headers={"X-API-Key": key}, timeout=10).json()
        if kpis["events"] > 0:
            break
        assert time.monotonic() < deadline, "the demo loaded nothing"
        time.sleep(0.5)
    demo.communicate(timeout=90)
    assert demo.returncode == 0


def test_demo_on_a_taken_port_says_so(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = shopstream("demo", "--duration", "1", "--port", str(port), "--history-days", "0",
                            env=env, check=False)  # fmt: skip
    assert result.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in result.stderr
