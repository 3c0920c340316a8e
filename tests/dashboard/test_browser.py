"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.fixtures.api import Served
from tests.fixtures.cli import shopstream

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _tile(page: Page, name: str) -> str:
    return page.locator(f"#kpi-{name}").inner_text()


def _wait_until(page: Page, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the page did not get there in time"
        page.wait_for_timeout(100)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="make install puts chromium there")
def test_sign_in_see_kpis_change_while_ingesting_and_stay_local(served: Served) -> None:
    requests: list[str] = []
    console: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda message: console.append(message.text))
            page.goto(served.base_url)
            page.fill("#api-key", "ssk_wrong")
            page.click("#sign-in-form button")
            page.wait_for_selector("#sign-in-error:has-text('not valid')")

            page.fill("#api-key", served.keys["viewer"])
            page.click("#sign-in-form button")
            # No wait_for_function: its string is evaluated, which the dashboard's CSP
            # (scripts from the server only) rightly refuses.
            _wait_until(page, lambda: _tile(page, "events") != "…")
            before = _tile(page, "events")
            assert int(before.replace(",", "")) > 0 and "." in _tile(page, "revenue")
            page.wait_for_selector("#chart-revenue .main-svg")
            assert served.keys["viewer"] not in page.url

            # New events land now; the page polls and shows the newest hour.
            start = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
            inbox = served.inbox.parent / "live"
            shopstream(
                "generate", "--out", str(inbox), "--events", "3000", "--seed", "4",
                "--format", "canonical", "--start", start, "--days", "0.003", env=served.env,
            )  # fmt: skip
            shopstream("run", "--source", str(inbox), "--until-idle", env=served.env)
            deadline = time.monotonic() + 20
            while _tile(page, "events") == before:
                assert time.monotonic() < deadline, "the KPIs did not change"
                page.wait_for_timeout(250)

            page.click("nav a[data-page=operations]")
            page.wait_for_selector("#ops-denied", state="visible")  # a viewer key
            page.click("nav a[data-page=customers]")
            page.wait_for_selector("#chart-segments .main-svg")
            page.click("nav a[data-page=executive]")
            page.wait_for_selector("#chart-categories .main-svg")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert not [text for text in console if "Content Security Policy" in text], console
    assert requests and all(url.startswith(served.base_url) for url in requests), {
        url for url in requests if not url.startswith(served.base_url)
    }


@pytest.mark.skipif(not CHROMIUM.exists(), reason="make install puts chromium there")
def test_fraud_page_shows_alerts_and_reviews_them(served: Served) -> None:
    inbox = served.inbox.parent / "fraud"
    shopstream(
        "generate", "--out", str(inbox), "--events", "4000", "--seed", "12", "--format",
        "canonical", "--fraud", "0.05", "--start", (datetime.now(UTC) - timedelta(hours=20))
        .strftime("%Y-%m-%dT%H:%M:%S"), "--days", "0.8", env=served.env,
    )  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=served.env)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(served.base_url + "#fraud")
            page.fill("#api-key", served.keys["viewer"])
            page.click("#sign-in-form button")
            page.wait_for_selector("#fraud-denied", state="visible")  # viewers may not
            page.click("#sign-out")
            page.fill("#api-key", served.keys["analyst"])
            page.click("#sign-in-form button")
            page.click("nav a[data-page=fraud]")
            _wait_until(page, lambda: page.locator("#fraud-alerts tbody tr").count() > 0)
            page.wait_for_selector("#chart-fraud-reasons .main-svg")
            dismissed = int(page.locator("#fraud-dismissed").inner_text().replace(",", ""))
            page.locator("#fraud-alerts button[data-verdict=dismissed]").first.click()
            _wait_until(
                page,
                lambda: (
                    int(page.locator("#fraud-dismissed").inner_text().replace(",", ""))
                    == dismissed + 1
                ),
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "fraud.png"), full_page=True)
        finally:
            browser.close()
