"""What `make demo` shows a new user, in a real browser: signed in with the key the demo
prints, every page has data, the Operations page included (alerts, job runs, quality
checks and the Great Expectations report)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.dashboard.test_browser import ARTIFACTS, CHROMIUM, FLAGS, _wait_until
from tests.fixtures.api import free_port
from tests.fixtures.cli import cli_env, start_shopstream


@pytest.mark.skipif(not CHROMIUM.exists(), reason="make install puts chromium there")
def test_the_demo_shows_data_on_every_page(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_LOG_LEVEL="INFO")
    port = free_port()
    demo = start_shopstream(
        "demo", "--rate", "300", "--duration", "240", "--port", str(port),
        "--history-days", "28", "--history-events", "120000", env=env,
    )  # fmt: skip
    try:
        key = None
        deadline = time.monotonic() + 240
        while key is None:
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "no key printed"
            time.sleep(0.5)
            found = re.search(r"^(ssk_\S+)$", demo.stdout_so_far(), re.MULTILINE)
            key = found.group(1) if found else None
        assert "Analyst API key" in demo.stdout_so_far()
        base = f"http://127.0.0.1:{port}"
        api = httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)
        # The scheduler caught up: every history day aggregated, segments and quality done.
        deadline = time.monotonic() + 180
        while True:
            runs = api.get("/api/v1/jobs/runs", params={"limit": 500}).json()
            done = {r["job"] for r in runs if r["status"] == "success"}
            if {"daily", "customers", "quality", "alerts"} <= done:
                break
            assert time.monotonic() < deadline, runs[:5]
            time.sleep(1)
        assert len([r for r in runs if r["job"] == "daily" and r["status"] == "success"]) >= 27
        assert len(api.get("/api/v1/segments").json()) >= 4  # history gives real segments

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1200})
                page = context.new_page()
                page.goto(base)
                page.fill("#api-key", key)
                page.click("#sign-in-form button")
                _wait_until(page, lambda: page.locator("#kpi-events").inner_text() != "…")
                page.wait_for_selector("#chart-revenue .main-svg")

                page.click("nav a[data-page=operations]")
                for table in ("#ops-alerts", "#ops-jobs", "#ops-checks"):
                    _wait_until(page, lambda t=table: page.locator(f"{t} tbody tr").count() > 0)
                assert page.locator("#ops-denied").is_hidden()
                page.wait_for_selector("#chart-batches .main-svg")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "demo-operations.png"), full_page=True)
                with context.expect_page() as opened:
                    page.click("#ops-docs")
                report = opened.value
                report.wait_for_load_state()
                assert "/quality-docs/" in report.url
                assert "events" in report.content()  # the suites' names

                page.click("nav a[data-page=customers]")
                page.wait_for_selector("#chart-segments .main-svg")
                page.wait_for_selector("#chart-clv .main-svg")
                assert page.locator("#customers-empty").is_hidden()

                page.click("nav a[data-page=fraud]")
                _wait_until(page, lambda: page.locator("#fraud-alerts tbody tr").count() > 0)
                page.screenshot(path=str(ARTIFACTS / "demo-fraud.png"), full_page=True)
            finally:
                browser.close()
        # Without the cookie the report is closed to everyone.
        assert httpx.get(f"{base}/quality-docs/index.html", timeout=10).status_code == 401
    finally:
        demo.process.send_signal(signal.SIGINT)
        demo.communicate(timeout=120)
