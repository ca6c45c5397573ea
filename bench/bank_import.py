"""Benchmark: `bank import` of 1,000,000 CSV rows into SQLite or PostgreSQL (goal: under 60 s).

The CSV looks like the reporters' lists: model name, old Civitai URL, SHA256 in mixed case, a
label. Prints, in the same run, the floor (plain `csv` parsing of the same file) and the naive
baseline (one INSERT per row after a SELECT for duplicates, via BankRepository.add_entry) timed
on every row, or on ``--naive-sample N`` rows extrapolated (a sample into an empty bank flatters
it: its indexes still fit in the page cache). Both start from the same bank.

    python bench/bank_import.py [--rows 1000000] [--naive-sample 0] [--into STORE] [--db URL]

``--into STORE`` imports into a copy of STORE's bank ``big`` instead of an empty bank: with the
store bench/bank_lookup.py builds, that is a bank already holding 10,000,000 values.

``--db postgresql://...`` runs both imports on that PostgreSQL server instead, each in a fresh
schema of its own (dropped afterwards), and prints the server settings that matter. There the
naive baseline defaults to a 20,000-row sample (one round trip per statement, per row, would
take a quarter of an hour for 1M).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from consentry.banks.entries import normalise_signals
from consentry.banks.importing import import_rows
from consentry.store import Store
from consentry.store.banks import BankEntry

GOAL_S = 60.0
POSTGRES_NAIVE_SAMPLE = 20_000


def write_csv(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Model Name", "Old Civitai URL", "SHA256", "Category"])
        for i in range(rows):
            sha = rng.randbytes(32).hex()
            sha = sha.upper() if i % 3 else sha  # mixed case, as the lists have it
            w.writerow([f"person_{i} LoRA v{i % 7}", f"https://civitai.com/models/{100000 + i}?modelVersionId={900000 + i}",
                        sha, "real-person-likeness"])


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh schema on the server at ``url``; yields a URL whose sessions use it. Dropped on exit."""
    import psycopg
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    schema = f"consentry_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query), options=f"-csearch_path={schema}")
    try:
        yield urlunsplit(parts._replace(query=urlencode(query)))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def server_settings(store: Store) -> str:
    version = store.db.query_one("SHOW server_version")["server_version"]
    names = ("shared_buffers", "fsync", "synchronous_commit", "full_page_writes", "max_wal_size")
    shown = ", ".join(f"{n}={store.db.query_one(f'SHOW {n}')[n]}" for n in names)
    return f"PostgreSQL {version}: {shown}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=0)
    parser.add_argument("--into", type=Path, default=None, help="a store whose bank 'big' receives the import (copied first)")
    parser.add_argument("--db", default=None, metavar="URL", help="a postgresql:// URL to run on instead of SQLite")
    args = parser.parse_args()
    if args.db is not None and not args.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db takes a postgresql:// URL (SQLite runs in a temporary file by default)")
    if args.db is not None and args.into is not None:
        parser.error("--into copies a SQLite store; it cannot be combined with --db")
    if args.db is not None and not args.naive_sample:
        args.naive_sample = min(POSTGRES_NAIVE_SAMPLE, args.rows)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = Path(tmp) / "deleted_models.csv"
        start = time.perf_counter()
        write_csv(src, args.rows)
        print(f"wrote {args.rows:,} rows ({src.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        with open(src, newline="", encoding="utf-8") as f:
            parsed = sum(1 for _ in csv.reader(f)) - 1
        floor = time.perf_counter() - start
        assert parsed == args.rows

        with postgres_schema(args.db) if args.db else _sqlite_copy(Path(tmp) / "bench.db", args.into) as target:
            with Store.open(target) as store:
                if args.db:
                    print(server_settings(store))
                bank = "big" if args.into else store.banks.create("deleted").name
                before = store.db.query_one("SELECT count(*) AS n FROM bank_signals")["n"]
                print(f"importing into bank {bank!r} ({store.db.dialect}), which holds {before:,} values")
                start = time.perf_counter()
                report = import_rows(store, bank, src, actor="bench")
                took = time.perf_counter() - start
                assert report.added == args.rows and not report.rejected, report.as_dict()

        # the same starting point: empty, or a copy of --into
        with postgres_schema(args.db) if args.db else _sqlite_copy(Path(tmp) / "naive.db", args.into) as naive_target, \
                Store.open(naive_target) as store:
            bank = store.banks.get("big") if args.into else store.banks.create("deleted")
            with open(src, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                next(reader)
                sample = [row for _, row in zip(range(args.naive_sample or args.rows), reader)]
            start = time.perf_counter()
            with store.transaction():
                for name, url, sha, label in sample:
                    store.banks.add_entry(bank, BankEntry(None, bank.name, normalise_signals({"sha256": sha}),
                                                          name=name, url=url, labels=[label]))
            naive = (time.perf_counter() - start) / len(sample) * args.rows

    print(f"goal: {args.rows:,} rows in under {GOAL_S:.0f} s")
    print(f"{'run':<52}{'seconds':>10}{'rows/s':>12}")
    print(f"{'consentry bank import (one transaction, batched)':<52}{took:>10.1f}{args.rows / took:>12,.0f}")
    print(f"{'floor: csv.reader over the same file':<52}{floor:>10.1f}{args.rows / floor:>12,.0f}")
    print(f"{f'naive add_entry per row ({len(sample):,} sample, extrapolated)':<52}{naive:>10.1f}{args.rows / naive:>12,.0f}")
    print(f"{'OK' if took < GOAL_S else 'MISSED'}: {took:.1f} s vs goal {GOAL_S:.0f} s; the naive way takes {naive / took:.1f}x as long")


@contextmanager
def _sqlite_copy(target: Path, into: Path | None) -> Iterator[Path]:
    """A SQLite store at ``target``: empty, or a copy of ``into``; deleted on exit."""
    if into:
        shutil.copyfile(into, target)
    try:
        yield target
    finally:
        for path in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
