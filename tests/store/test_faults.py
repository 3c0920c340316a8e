"""Exactly-once under faults: kill -9 at random moments, and a database outage."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import SHOPSTREAM, cli_env, shopstream
from tests.fixtures.counts import Outcome, data_rows, outcome
from tests.fixtures.postgres import fresh_database, service_reachable_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backlog(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres
) -> Iterator[tuple[Path, Outcome]]:
    """~300k rows with duplicates and bad rows, and what an uninterrupted run makes of them."""
    root = tmp_path_factory.mktemp("backlog")
    inbox = root / "in"
    env = cli_env(None, root / "home")
    shopstream(
        "generate", "--out", str(inbox), "--events", "300000", "--seed", "21",
        "--dirty", "0.01", "--duplicates", "0.03", "--late", "0.01", "--file-rows", "5000",
        env=env,
    )  # fmt: skip
    reference_url = fresh_database(pg_server)
    shopstream("run", "--source", str(inbox), "--until-idle", env=cli_env(reference_url, root))
    reference = outcome(reference_url)
    assert reference.read == data_rows(str(inbox))
    yield inbox, reference


def assert_same_totals(final: Outcome, reference: Outcome) -> None:
    assert (final.read, final.loaded, final.duplicates, final.quarantined) == (
        reference.read,
        reference.loaded,
        reference.duplicates,
        reference.quarantined,
    )


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    trial: int, backlog: tuple[Path, Outcome], database_url: str, tmp_path: Path
) -> None:
    inbox, reference = backlog
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="20000")
    rng = random.Random(trial)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(
            [*SHOPSTREAM, "run", "--source", str(inbox), "--until-idle"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 1.0))
        if process.poll() is None:
            process.kill()  # SIGKILL: no cleanup of any kind
            kills += 1
        process.wait()
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    final = outcome(database_url)
    assert kills >= 1
    assert final.events == final.distinct_ids == reference.events
    assert final.ids_digest == reference.ids_digest
    assert_same_totals(final, reference)
    assert final.quarantine_rows == reference.quarantine_rows
    assert final.ledger_files == len(list(inbox.iterdir()))


def test_database_outage_mid_run_loses_nothing(
    backlog: tuple[Path, Outcome], tmp_path: Path
) -> None:
    inbox, reference = backlog
    home = service_reachable_dir("shopstream-outage-")
    server = EmbeddedPostgres(home)
    server.start()
    try:
        url = server.url()
        env = cli_env(
            url, tmp_path / "home", SHOPSTREAM_MAX_BATCH_ROWS="10000", SHOPSTREAM_LOG_LEVEL="INFO"
        )
        process = subprocess.Popen(
            [*SHOPSTREAM, "run", "--source", str(inbox), "--until-idle"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        assert process.poll() is None, "the run finished before the outage could happen"
        server.stop()
        time.sleep(4.0)
        assert process.poll() is None, "the runner must wait for the database, not give up"
        server.start()
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        assert "retrying" in stderr
        final = outcome(url)
        assert final.ids_digest == reference.ids_digest
        assert_same_totals(final, reference)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_sigterm_while_waiting_for_the_database_stops_cleanly(
    backlog: tuple[Path, Outcome], tmp_path: Path
) -> None:
    """A file arrives during an outage: the runner waits for the database to reserve its
    batch; SIGTERM then ends it with exit 0, and a later run loads everything."""
    source, _ = backlog
    files = sorted(source.iterdir())
    inbox = tmp_path / "in"
    inbox.mkdir()
    shutil.copy(files[0], inbox)
    home = service_reachable_dir("shopstream-sigterm-")
    server = EmbeddedPostgres(home)
    server.start()
    try:
        url = server.url()
        env = cli_env(url, tmp_path / "home")
        shopstream("db", "migrate", env=env)
        process = subprocess.Popen(
            [*SHOPSTREAM, "run", "--source", str(inbox)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while outcome(url).ledger_files < 1:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.2)
        server.stop()
        shutil.copy(files[1], inbox)
        time.sleep(3.0)
        process.terminate()
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        server.start()
        shopstream("run", "--source", str(inbox), "--until-idle", env=env)
        final = outcome(url)
        assert final.read == data_rows(str(inbox))
        assert final.ledger_files == 2
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
