"""The core pipeline driven through the CLI, as a subprocess, against real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.fixtures.cli import cli_env, shopstream
from tests.fixtures.counts import data_rows, outcome


def test_generate_is_reproducible(tmp_path: Path) -> None:
    env = cli_env(None, tmp_path / "home")
    for out in ("a", "b"):
        shopstream(
            "generate", "--out", str(tmp_path / out), "--events", "5000", "--seed", "11",
            "--dirty", "0.02", "--duplicates", "0.02", "--late", "0.02", "--file-rows", "1000",
            env=env,
        )  # fmt: skip
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len(names) == 6 and all(n.startswith("events_") and n.endswith(".csv") for n in names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    header = (tmp_path / "a" / names[0]).read_bytes().split(b"\n")[0].decode()
    assert header == "event_id,event_type,product_id,user_id,event_timestamp,quantity,price"


def test_run_loads_everything_once_and_accounts_for_every_row(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    shopstream(
        "generate", "--out", str(inbox), "--events", "30000", "--seed", "5",
        "--dirty", "0.02", "--duplicates", "0.03", "--late", "0.02", "--file-rows", "4000",
        env=env,
    )  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    first = outcome(database_url)
    assert first.read == data_rows(str(inbox))
    assert first.read == first.loaded + first.duplicates + first.quarantined
    assert first.events == first.distinct_ids == first.loaded
    assert first.quarantine_rows == first.quarantined > 0
    assert 800 < first.duplicates <= 900  # 900 re-sent; dirt on either copy turns some away
    assert first.ledger_files == len(list(inbox.iterdir()))

    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert outcome(database_url) == first  # re-delivered files are no-ops

    status = shopstream("status", env=env).stdout
    assert f"{first.loaded:,}" in status


@pytest.mark.parametrize(("fmt", "gzip"), [("canonical", False), ("jsonl", False), ("jsonl", True)])
def test_formats_load_the_same_events_as_seed(
    tmp_path: Path, database_url: str, pg_server: object, fmt: str, gzip: bool
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    args = ["--events", "8000", "--seed", "9", "--duplicates", "0.02", "--file-rows", "3000"]
    shopstream("generate", "--out", str(tmp_path / "seed"), *args, env=env)
    shopstream("run", "--source", str(tmp_path / "seed"), "--until-idle", env=env)
    seed_outcome = outcome(database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("TRUNCATE events, quarantine, ingested_files, batches CASCADE")
    extra = ["--gzip"] if gzip else []
    shopstream("generate", "--out", str(tmp_path / fmt), "--format", fmt, *args, *extra, env=env)
    shopstream("run", "--source", str(tmp_path / fmt), "--until-idle", env=env)
    other = outcome(database_url)
    assert other.ids_digest == seed_outcome.ids_digest
    assert (other.read, other.loaded, other.duplicates) == (
        seed_outcome.read,
        seed_outcome.loaded,
        seed_outcome.duplicates,
    )


def test_changed_file_is_reported_not_loaded_again(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    shopstream("generate", "--out", str(inbox), "--events", "500", "--seed", "2", env=env)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    before = outcome(database_url)
    target = next(inbox.iterdir())
    target.write_text(target.read_text() + target.read_text().splitlines()[1] + "\n")
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    after = outcome(database_url)
    assert after.events == before.events
    with psycopg.connect(database_url) as conn:
        rules = conn.execute("SELECT rules FROM quarantine WHERE scope = 'file'").fetchall()
    assert rules == [(["file_changed_after_ingestion"],)]


def test_archive_and_delete_move_committed_files(tmp_path: Path, database_url: str) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox, archive = tmp_path / "in", tmp_path / "done"
    shopstream("generate", "--out", str(inbox), "--events", "3000", "--file-rows", "1000",
               "--seed", "4", env=env)  # fmt: skip
    (inbox / ".hidden.csv").write_text("ignored")
    (inbox / "events_9_9.csv.tmp").write_text("ignored")
    shopstream("run", "--source", str(inbox), "--until-idle", "--archive", str(archive), env=env)
    assert sorted(p.name for p in inbox.iterdir()) == [".hidden.csv", "events_9_9.csv.tmp"]
    assert len(list(archive.iterdir())) == 3
    shopstream("generate", "--out", str(inbox), "--events", "1000", "--seed", "8", env=env)
    shopstream("run", "--source", str(inbox), "--until-idle", "--delete", env=env)
    assert len(list(inbox.iterdir())) == 2
    assert outcome(database_url).events == 4000


def test_binary_junk_is_quarantined_whole_and_the_run_goes_on(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home")
    inbox = tmp_path / "in"
    shopstream("generate", "--out", str(inbox), "--events", "200", "--seed", "1", env=env)
    (inbox / "broken.csv").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (inbox / "other.csv").write_text("a,b\n1,2\n")
    (inbox / "bad.csv.gz").write_bytes(b"\x1f\x8b\x08junk")
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    result = outcome(database_url)
    assert result.events == 200
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT rules[1], octet_length(raw_bytes) > 0 FROM quarantine WHERE scope = 'file'"
            " ORDER BY source"
        ).fetchall()
    assert rows == [
        ("file_unreadable", True),
        ("file_not_text", True),
        ("file_unknown_header", True),
    ]


def test_quarantine_replay_after_the_rules_change(tmp_path: Path, database_url: str) -> None:
    strict = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_PRICE="20")
    inbox = tmp_path / "in"
    shopstream("generate", "--out", str(inbox), "--events", "4000", "--seed", "3",
               "--format", "canonical", env=strict)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=strict)
    held = outcome(database_url)
    listing = shopstream("quarantine", "list", "--rule", "price_range", env=strict).stdout
    assert "price_range" in listing
    with psycopg.connect(database_url) as conn:
        first_id = conn.execute("SELECT min(quarantine_id) FROM quarantine").fetchone()
    assert first_id is not None
    shown = shopstream("quarantine", "show", str(first_id[0]), env=strict).stdout
    assert "raw:" in shown

    relaxed = cli_env(database_url, tmp_path / "home")
    shopstream("quarantine", "replay", "--rule", "price_range", env=relaxed)
    after = outcome(database_url)
    assert after.events == held.events + held.quarantined
    with psycopg.connect(database_url) as conn:
        open_rows = conn.execute(
            "SELECT count(*) FROM quarantine WHERE status = 'quarantined'"
        ).fetchone()
    assert open_rows == (0,)
    assert after.read == after.loaded + after.duplicates + after.quarantined
