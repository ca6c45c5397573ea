"""Benchmark: exact lookups among 10,000,000 banked hashes in SQLite, in-process (goal p99 < 2 ms).

Builds (once, cached in /tmp) a store whose bank holds N SHA256 values, then times
``store.banks.lookup`` — what the matcher calls — for hits and misses, one value at a time and
as a scanned file's full set of signals (8 lookups). Prints, in the same run, a raw sqlite3
query on the same index and a Python dict lookup as baselines.

    python bench/bank_lookup.py [--values 10000000] [--queries 20000] [--db /tmp/consentry-bench-lookup-10M.db]

Building: values are generated in sorted order (256 runs, one per first byte) so every index
is appended to rather than split at random; random inserts of 10M values take many minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import time
from pathlib import Path

from consentry.store import Store

GOAL_P99_MS = 2.0
SAMPLE_PER_RUN = 100  # known values kept per run, to look up as hits


def build(path: Path, n: int) -> list[str]:
    """A store with bank 'big' holding n random sha256 values; returns a sample of them."""
    sample: list[str] = []
    tmp = path.with_suffix(".building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    with Store.open(tmp) as store:
        bank = store.banks.create("big", labels=["bench"])
        db = store.db
        db.execute("PRAGMA cache_size = -262144")
        next_id = 1
        with db.transaction():
            for first in range(256):
                k = n // 256 + (1 if first < n % 256 else 0)
                blob = os.urandom(31 * k).hex().upper()
                values = sorted(f"{first:02X}{blob[j * 62:(j + 1) * 62]}" for j in range(k))
                ids = range(next_id, next_id + k)
                db.executemany("INSERT INTO bank_entries (id, bank_id, added_at) VALUES (?, ?, '2025-01-01T00:00:00+00:00')",
                               [(i, bank.id) for i in ids])  # fmt: skip
                db.executemany("INSERT INTO bank_signals (bank_id, entry_id, signal_type, value) VALUES (?, ?, 'sha256', ?)",
                               [(bank.id, i, v) for i, v in zip(ids, values)])  # fmt: skip
                sample += random.sample(values, min(SAMPLE_PER_RUN, k))
                next_id += k
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(tmp, path)
    Path(f"{path}.sample").write_text("\n".join(sample))
    return sample


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples_s, n=100, method="inclusive")
    return q[49] * 1e3, q[98] * 1e3


def timed(fn, args: list) -> list[float]:
    out = []
    for a in args:
        start = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    path = args.db or Path(f"/tmp/consentry-bench-lookup-{args.values}.db")
    if path.exists() and Path(f"{path}.sample").exists():
        sample = Path(f"{path}.sample").read_text().split()
        print(f"using the cached store {path} ({path.stat().st_size / 1e9:.1f} GB)")
    else:
        start = time.perf_counter()
        sample = build(path, args.values)
        print(f"built {args.values:,} banked values in {time.perf_counter() - start:.0f} s ({path.stat().st_size / 1e9:.1f} GB): {path}")
    rng = random.Random(3)
    hits = [rng.choice(sample) for _ in range(args.queries)]
    misses = [os.urandom(32).hex().upper() for _ in range(args.queries)]
    files = [[("sha256", h), ("autov1", h[:8]), ("autov2", h[:10]), ("autov3", m), ("autov3", m[:12]), ("crc32", m[:8]),
              ("blake3", m), ("content_hash", m[::-1])] for h, m in zip(hits, misses)]  # fmt: skip

    rows: list[tuple[str, list[float]]] = []
    with Store.open(path) as store:
        n = store.db.query_one("SELECT count(*) AS n FROM bank_signals")["n"]
        lookup = store.banks.lookup
        timed(lambda v: lookup([("sha256", v)]), hits[:2000])  # warm the page cache as a running service would be
        assert all(lookup([("sha256", v)]) for v in hits[:100]) and not any(lookup([("sha256", v)]) for v in misses[:100])
        rows.append(("store.banks.lookup, hit", timed(lambda v: lookup([("sha256", v)]), hits)))
        rows.append(("store.banks.lookup, miss", timed(lambda v: lookup([("sha256", v)]), misses)))
        rows.append(("store.banks.lookup, a file's 8 signals", timed(lookup, files)))
    con = sqlite3.connect(path)
    raw = "SELECT entry_id FROM bank_signals WHERE signal_type = 'sha256' AND value = ?"
    rows.append(("baseline: raw sqlite3 query, hit", timed(lambda v: con.execute(raw, (v,)).fetchall(), hits)))
    rows.append(("baseline: raw sqlite3 query, miss", timed(lambda v: con.execute(raw, (v,)).fetchall(), misses)))
    con.close()
    table = dict.fromkeys(sample, 1)
    rows.append(("baseline: Python dict lookup (sample only)", timed(table.get, hits)))

    print(f"banked values: {n:,}; {args.queries:,} queries each; goal: p99 < {GOAL_P99_MS} ms")
    print(f"{'lookup':<46}{'p50 ms':>10}{'p99 ms':>10}{'per s':>10}")
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"{label:<46}{p50:>10.4f}{p99:>10.4f}{len(samples) / sum(samples):>10,.0f}")
    worst = max(percentiles(s)[1] for label, s in rows if label in ("store.banks.lookup, hit", "store.banks.lookup, miss"))
    print(f"{'OK' if worst < GOAL_P99_MS else 'MISSED'}: worst single-lookup p99 {worst:.3f} ms vs goal {GOAL_P99_MS} ms")


if __name__ == "__main__":
    main()
