"""Large and compressed files load in pieces: same result as whole, bounded memory,
exactly once across kill -9."""

from __future__ import annotations

import gzip
import random
import time
import uuid
import zlib
from pathlib import Path

import psycopg
import pytest

from shopstream.store.server import EmbeddedPostgres
from tests.fixtures.cli import cli_env, kill_9_at_random, peak_rss_mb, shopstream
from tests.fixtures.counts import outcome
from tests.fixtures.postgres import fresh_database

HEADER = "event_id,event_type,product_id,user_id,event_timestamp,quantity,price\n"
# Fraud scoring is not what this file checks, and its 50 customers with 600 orders each
# would make it most of the run (each order reads up to 500 earlier ones).
NO_FRAUD = {"SHOPSTREAM_FRAUD": "false"}
SMALL_PIECES = {"SHOPSTREAM_FILE_PIECE_BYTES": str(96 * 1024), **NO_FRAUD}


def big_csv(path: Path, rows: int, seed: int) -> None:
    """Valid rows, with broken ones, duplicates, and quoted fields holding line breaks."""
    rng = random.Random(seed)
    lines = [HEADER]
    ids: list[str] = []
    for n in range(rows):
        event_id = str(uuid.UUID(int=rng.getrandbits(128)))
        ids.append(event_id)
        roll = rng.random()
        if roll < 0.01:
            lines.append("broken,line\n")
        elif roll < 0.02:
            lines.append(f"{rng.choice(ids)},view,p1,u1,2026-11-30 10:00:00,1,1\n")
        elif roll < 0.03:
            lines.append(f'{event_id},view,"p\n{n}",u{n % 50},2026-11-30 10:00:00,1,2.5\n')
        else:
            price = "-3" if roll < 0.04 else f"{rng.uniform(1, 90):.2f}"
            lines.append(f"{event_id},purchase,p{n % 97},u{n % 50},2026-11-30 11:00:00,1,{price}\n")
    path.write_text("".join(lines))


def quarantine_lines(url: str) -> list[tuple[str, int | None, list[str]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT split_part(source, '/', -1), line_no, rules FROM quarantine ORDER BY 1, 2"
        ).fetchall()
    return [(str(a), b if b is None else int(b), list(c)) for a, b, c in rows]


@pytest.fixture(scope="module")
def inbox_and_reference(
    tmp_path_factory: pytest.TempPathFactory, pg_server: EmbeddedPostgres
) -> tuple[Path, str]:
    """A 30,000-row CSV and the same rows as gzipped JSON Lines, loaded whole."""
    root = tmp_path_factory.mktemp("pieces")
    inbox = root / "in"
    inbox.mkdir()
    big_csv(inbox / "big.csv", 30_000, seed=3)
    jsonl = "".join(
        f'{{"event_id":"{uuid.uuid4()}","event_type":"view","product_id":"p{n % 9}",'
        f'"user_id":"u{n % 40}","event_timestamp":"2026-11-30T12:00:00Z"}}\n'
        if n % 500
        else "not json\n"
        for n in range(20_000)
    )
    (inbox / "more.jsonl.gz").write_bytes(gzip.compress(jsonl.encode()))
    reference = fresh_database(pg_server)
    env = cli_env(
        reference, root / "home", SHOPSTREAM_FILE_PIECE_BYTES=str(64 * 1024 * 1024), **NO_FRAUD
    )
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    return inbox, reference


def test_pieces_load_what_a_whole_file_loads(
    inbox_and_reference: tuple[Path, str], database_url: str, tmp_path: Path
) -> None:
    inbox, reference = inbox_and_reference
    env = cli_env(database_url, tmp_path / "home", **SMALL_PIECES)
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert outcome(database_url) == outcome(reference)
    assert quarantine_lines(database_url) == quarantine_lines(reference)
    with psycopg.connect(database_url) as conn:
        pieces = dict(
            conn.execute("SELECT split_part(path, '/', -1), pieces FROM file_progress").fetchall()
        )
    assert pieces["big.csv"] > 10 and pieces["more.jsonl.gz"] > 10


@pytest.mark.slow
def test_kill_9_mid_file_loses_and_repeats_nothing(
    inbox_and_reference: tuple[Path, str], database_url: str, tmp_path: Path
) -> None:
    inbox, reference = inbox_and_reference
    env = cli_env(database_url, tmp_path / "home", **SMALL_PIECES, SHOPSTREAM_MAX_BATCH_ROWS="1000")
    shopstream("db", "migrate", env=env)
    kills = kill_9_at_random(("run", "--source", str(inbox), "--until-idle"), env,
                             seed=7, low=1.0, high=2.0)  # fmt: skip
    shopstream("run", "--source", str(inbox), "--until-idle", env=env)
    assert kills >= 1
    assert outcome(database_url) == outcome(reference)
    assert quarantine_lines(database_url) == quarantine_lines(reference)


def bomb(path: Path, decompressed_gib: int) -> None:
    """Gzip members of short junk lines, concatenated: MBs on disk, GBs inflated."""
    block = b"x,\n" * (64 * 1024 * 1024 // 3)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = packer.compress(block) + packer.flush()
    with path.open("wb") as handle:
        for _ in range(decompressed_gib * 16):
            handle.write(member)


@pytest.mark.slow
def test_bombs_and_huge_lines_stay_within_memory_bounds(tmp_path: Path, database_url: str) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    bomb(inbox / "bomb.csv.gz", 2)
    with (inbox / "line.jsonl").open("wb") as handle:
        for _ in range(300):
            handle.write(b"y" * (1024 * 1024))
    big_csv(inbox / "good.csv", 2000, seed=1)
    env = cli_env(database_url, tmp_path / "home")
    started = time.monotonic()
    peak, _ = peak_rss_mb("run", "--source", str(inbox), "--until-idle", env=env)
    took = time.monotonic() - started
    assert peak <= 500, f"peak RSS {peak:.0f} MB"
    assert took < 120, f"{took:.0f} s"
    result = outcome(database_url)
    assert result.read == result.loaded + result.duplicates + result.quarantined
    rules = {(name, tuple(r)) for name, _, r in quarantine_lines(database_url)}
    assert ("bomb.csv.gz", ("file_compression_ratio",)) in rules
    assert ("line.jsonl", ("line_too_long",)) in rules
    assert result.ledger_files == 3
