"""API load benchmark: 100 concurrent clients on the KPI, time-series and top-products
endpoints of ``shopstream serve``, over a store of 10,000,000 events.

    .venv/bin/python bench/api.py --loaded URL [--clients 100] [--seconds 30]

``--loaded`` names a database already holding the events (``bench/queries.py`` loads one;
with ``--keep`` it leaves it in place). Each client asks what a dashboard asks: the newest
hour's KPIs and per-minute series, and the newest day's top products, one request after the
other with no pause. Prints p50/p95/max latency per endpoint, errors and requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta

import httpx

from shopstream.api.ready import wait_ready

GOAL_P95_MS = 50.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loaded", required=True, help="URL of a loaded database")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--think",
        type=float,
        nargs="*",
        default=[1.0, 0.0],
        help="Seconds each client waits between requests; one run per value "
        "(1 s: a dashboard polling its three queries every 3 s; 0: back to back)",
    )
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPSTREAM_")}
    env |= {
        "SHOPSTREAM_DATABASE_URL": args.loaded,
        "SHOPSTREAM_API_RATE_BURST": "100000000",
        "SHOPSTREAM_LOG_LEVEL": "WARNING",
    }
    shopstream = [sys.executable, "-m", "shopstream"]
    key = subprocess.run(
        [*shopstream, "apikey", "create", "--role", "viewer", "--name", "bench"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    port = free_port()
    server = subprocess.Popen(
        [*shopstream, "serve", "--port", str(port), "--workers", str(args.workers)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, alive=lambda: server.poll() is None)
        for think in args.think:
            asyncio.run(load(base, key, args.clients, args.seconds, think))
    finally:
        server.terminate()
        server.wait(timeout=30)


async def load(base: str, key: str, clients: int, seconds: float, think: float) -> None:
    headers = {"X-API-Key": key}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as http:
        coverage = (await http.get("/api/v1/coverage")).json()
        end = datetime.fromisoformat(coverage["last_minute"]) + timedelta(minutes=1)
        hour = {"from": (end - timedelta(hours=1)).isoformat(), "to": end.isoformat()}
        day = end.date().isoformat()
        requests = {
            "GET /api/v1/kpis (last hour)": ("/api/v1/kpis", hour),
            "GET /api/v1/timeseries (last hour)": ("/api/v1/timeseries", hour),
            "GET /api/v1/products/top (last day)": (
                "/api/v1/products/top",
                {"from": day, "to": day, "limit": "10"},
            ),
        }
        timings: dict[str, list[float]] = defaultdict(list)
        errors: dict[str, int] = defaultdict(int)
        stop_at = time.monotonic() + seconds

        async def client(number: int) -> None:
            names = list(requests)
            turn = number
            await asyncio.sleep(think * number / clients)  # spread the first requests
            while time.monotonic() < stop_at:
                name = names[turn % len(names)]
                path, params = requests[name]
                started = time.perf_counter()
                try:
                    response = await http.get(path, params=params, timeout=30)
                    if response.status_code != 200:
                        errors[name] += 1
                except httpx.HTTPError:
                    errors[name] += 1
                timings[name].append((time.perf_counter() - started) * 1000)
                turn += 1
                if think:
                    await asyncio.sleep(think)

        began = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - began
    total = sum(len(t) for t in timings.values())
    print(
        f"\n{clients} clients, {think:g} s between requests, {elapsed:.0f} s: "
        f"{total:,} requests, {total / elapsed:,.0f}/s"
    )
    print(f"{'endpoint':<38} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'errors':>6}")
    for name, values in timings.items():
        p95 = statistics.quantiles(values, n=20)[-1]
        verdict = "met" if p95 <= GOAL_P95_MS and not errors[name] else "MISSED"
        print(
            f"{name:<38} {len(values):6d} {statistics.median(values):8.1f} {p95:8.1f} "
            f"{max(values):8.1f} {errors[name]:6d}  goal p95 <= 50 ms: {verdict}"
        )


if __name__ == "__main__":
    main()
