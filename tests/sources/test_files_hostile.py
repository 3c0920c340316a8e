"""Hostile input and careless operators against the file source, through the CLI."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.cli import cli_env, shopstream, start_shopstream
from tests.fixtures.counts import outcome
from tests.fixtures.postgres import service_reachable_dir

HEADER = "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"


def events_csv(count: int, *, user: str = "u1") -> str:
    lines = [
        f"{uuid.uuid4()},view,p{n % 7},{user},2026-11-30 10:{n % 60:02d}:00,1,9.99\n"
        for n in range(count)
    ]
    return HEADER + "".join(lines)


def quiet(path: Path) -> Path:
    """Backdate the mtime so the source reads the file at once."""
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def waiting_on_lock(url: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone()
        if row is not None and int(str(row[0])) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{count} sessions never waited on a lock")


def quarantine_rules(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT split_part(source, '/', -1), rules[1] FROM quarantine ORDER BY 1, 2"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def test_two_runners_with_delete_lose_no_file(tmp_path: Path, database_url: str) -> None:
    """Runner B's batch holds X (committed by A meanwhile) and Y: Y must still load.

    A polls rarely, so Y, dropped while A's commit waits on the lock, is B's alone."""
    env = cli_env(database_url, tmp_path / "home")
    slow_env = {**env, "SHOPSTREAM_TRIGGER_MS": "15000"}
    shopstream("db", "migrate", env=env)
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "x.csv").write_text(events_csv(50, user="x"))
    quiet(inbox / "x.csv")
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE batches IN EXCLUSIVE MODE")
        first = start_shopstream(
            "run", "--source", str(inbox), "--until-idle", "--delete", env=slow_env
        )
        waiting_on_lock(database_url, 1)
        (inbox / "y.csv").write_text(events_csv(30, user="y"))
        quiet(inbox / "y.csv")
        second = start_shopstream(
            "run", "--source", str(inbox), "--until-idle", "--delete", env=env
        )
        waiting_on_lock(database_url, 2)
        holder.commit()
    for runner in (first, second):
        runner.communicate(timeout=120)
        assert runner.returncode == 0
    result = outcome(database_url)
    assert result.events == 80
    assert result.ledger_files == 2
    assert list(inbox.iterdir()) == []


def test_bad_input_is_accounted_for_while_good_files_load(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_LINE_BYTES="200000")
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "good.csv").write_text(events_csv(40))
    long_field = HEADER + f'{uuid.uuid4()},view,"{"p" * 150_000}",u,2026-11-30 10:00:00,1,1\n'
    (inbox / "long_field.csv").write_text(long_field + events_csv(3)[len(HEADER) :])
    (inbox / "long_line.csv").write_text(
        HEADER + "x" * 300_000 + "\n" + events_csv(2)[len(HEADER) :]
    )
    (inbox / "long_header.csv").write_text("a" * 300_000 + "\n1\n")
    nul = f'{{"event_id":"{uuid.uuid4()}","event_type":"view","product_id":"a\\u0000b",'
    surrogate = f'{{"event_id":"{uuid.uuid4()}","event_type":"view","product_id":"\\ud800",'
    tail = '"user_id":"u","event_timestamp":"2026-11-30T10:00:00Z"}\n'
    good_json = f'{{"event_id":"{uuid.uuid4()}","event_type":"view","product_id":"p",{tail}'
    (inbox / "escapes.jsonl").write_text(nul + tail + surrogate + tail + good_json)
    deep = f'{{"event_id":"{uuid.uuid4()}","event_type":"view","product_id":"p","extra":'
    deep += "[" * 900 + "]" * 900 + "," + tail
    deeper = deep.replace("[" * 900, "[" * 3000).replace("]" * 900, "]" * 3000)
    (inbox / "deep.jsonl").write_text(deep + deeper)
    (inbox / "junk.csv.gz").write_bytes(gzip.compress(b"x\n" * 20_000_000, 9))
    for path in inbox.iterdir():
        quiet(path)

    run = shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert run.returncode == 0
    result = outcome(database_url)
    assert result.read == result.loaded + result.duplicates + result.quarantined
    assert result.ledger_files == 7
    assert quarantine_rules(database_url) == [
        ("deep.jsonl", "json_too_deep"),
        ("escapes.jsonl", "field_encoding"),
        ("escapes.jsonl", "field_encoding"),
        ("junk.csv.gz", "file_compression_ratio"),
        ("long_field.csv", "field_length"),  # parsed, not column_count: too long a product id
        ("long_header.csv", "file_header_too_long"),
        ("long_line.csv", "line_too_long"),
    ]
    assert result.events == 40 + 3 + 2 + 1 + 1
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT octet_length(raw), raw_size FROM quarantine WHERE rules[1] = 'line_too_long'"
        ).fetchone()
    assert stored == (65_536, 300_000)


def test_mostly_broken_file_is_rejected_whole_with_a_sample(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_REJECT_BAD_RECORDS="1000")
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "good.csv").write_text(events_csv(10))
    (inbox / "junk.csv").write_text(HEADER + "a,b\n" * 200_000)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert quarantine_rules(database_url) == [("junk.csv", "file_mostly_broken")]
    with psycopg.connect(database_url) as conn:
        raw = conn.execute("SELECT raw FROM quarantine").fetchone()
    assert raw is not None and "200,000 of 200,000 records are broken" in str(raw[0])
    assert "line 2 (column_count): a,b" in str(raw[0])
    assert outcome(database_url).events == 10
    # The file counts every record it held, in the batch, the ledger and `status`.
    assert outcome(database_url).quarantined == 200_000
    with psycopg.connect(database_url) as conn:
        held = conn.execute("SELECT records FROM quarantine").fetchone()
        ledger = conn.execute(
            "SELECT rows_read FROM ingested_files WHERE path LIKE '%junk.csv'"
        ).fetchone()
    assert held == (200_000,) and ledger == (200_000,)
    status = " ".join(shopstream("status", env=env).stdout.split())
    assert "files rejected whole │ 1" in status and "records in them │ 200,000" in status


def test_file_over_the_size_limit_is_rejected_not_read_whole(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(database_url, tmp_path / "home", SHOPSTREAM_MAX_FILE_BYTES="100000")
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "big.csv").write_text(events_csv(3000))
    (inbox / "small.csv").write_text(events_csv(5))
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert quarantine_rules(database_url) == [("big.csv", "file_too_large")]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT f.size_bytes, q.raw_size, q.raw_sha256 = f.content_hash"
            " FROM ingested_files f JOIN quarantine q ON q.source = f.path"
        ).fetchone()
    assert row == ((inbox / "big.csv").stat().st_size,) * 2 + (True,)
    assert outcome(database_url).events == 5


def test_symlinks_and_special_files_are_skipped_with_a_log_line(
    tmp_path: Path, database_url: str
) -> None:
    env = cli_env(
        database_url, tmp_path / "home", SHOPSTREAM_LOG_LEVEL="INFO", SHOPSTREAM_LOG_FORMAT="json"
    )
    inbox = tmp_path / "in"
    inbox.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text(events_csv(3))
    (inbox / "link.csv").symlink_to(secret)
    os.mkfifo(inbox / "pipe.csv")
    (inbox / "good.csv").write_text(events_csv(4))
    run = shopstream("run", "--source", str(inbox), "--until-idle", env=env, timeout=60)
    assert "link.csv is a symlink; skipping it" in run.stderr
    assert "pipe.csv is not a regular file; skipping it" in run.stderr
    assert outcome(database_url).events == 4


def test_unreadable_file_is_retried_later_while_others_load(database_url: str) -> None:
    """As root no permission stops a read, so the runner runs as nobody there."""
    tmp_path = service_reachable_dir("shopstream-test-unreadable-")
    home = tmp_path / "home"
    home.mkdir()
    inbox = tmp_path / "in"
    inbox.mkdir()
    for path in (tmp_path, home, inbox):
        path.chmod(0o777)
    (inbox / "secret.csv").write_text(events_csv(3))
    (inbox / "secret.csv").chmod(0o000)
    (inbox / "good.csv").write_text(events_csv(6))
    (inbox / "good.csv").chmod(0o644)
    env = cli_env(database_url, home, SHOPSTREAM_LOG_FORMAT="json")
    prefix = (
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        if os.geteuid() == 0
        else []
    )
    run = subprocess.run(
        [*prefix, sys.executable, "-m", "shopstream", "run", "--source", str(inbox),
         "--until-idle"],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "cannot read" in run.stderr and "secret.csv" in run.stderr
    assert "Traceback" not in run.stderr
    assert outcome(database_url).events == 6
    (inbox / "secret.csv").chmod(0o644)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert outcome(database_url).events == 9
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("delete", [False, True])
def test_file_changed_while_committing_is_reported_at_once(
    tmp_path: Path, database_url: str, delete: bool
) -> None:
    """A file appended to while its batch commits: reported in the same run, never
    deleted with content nobody loaded."""
    env = cli_env(database_url, tmp_path / "home")
    shopstream("db", "migrate", env=env)
    inbox = tmp_path / "in"
    inbox.mkdir()
    target = inbox / "a.csv"
    target.write_text(events_csv(20))
    quiet(target)
    args = ["run", "--source", str(inbox), *(["--delete"] if delete else [])]
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE batches IN EXCLUSIVE MODE")
        runner = start_shopstream(*args, env=env)
        waiting_on_lock(database_url, 1)
        with target.open("a") as handle:
            handle.write(events_csv(1)[len(HEADER) :])
        holder.commit()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(quarantine_rules(database_url)) == 0:
        time.sleep(0.2)
    runner.terminate()
    runner.communicate(timeout=60)
    assert quarantine_rules(database_url) == [("a.csv", "file_changed_after_ingestion")]
    assert outcome(database_url).events == 20
