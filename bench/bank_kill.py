"""Reliability bench: SIGKILL a `consentry bank import` of 1,000,000 rows, then rerun it.

The issue's case at full size (tests/test_bank_import.py kills a 100,000-row import, to stay a
few seconds). For each kill point a fresh store gets an empty bank; the CLI import is started
with --progress and killed with SIGKILL once it has read that many rows (``end``: after the
last progress line plus a random delay of up to --end-delay seconds, i.e. during the last
batch, the bookkeeping, the COMMIT or just after it). Then, from a new connection: the bank must hold none of the import or all of it,
every entry with its signals and no signal without its entry, no value twice, and an import
record only if the import is there; a rerun of the same file must add exactly the rest (and
record itself).

    python bench/bank_kill.py [--rows 1000000] [--points 0.05,0.5,0.95,end,end] [--end-delay 2] [--db postgresql://...]

``--db URL`` runs on PostgreSQL (a fresh schema per kill point, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bank_import import postgres_schema, write_csv

from consentry.banks.importing import PROGRESS_EVERY
from consentry.store import Store


def bank_state(target: str, bank: str) -> tuple[int, int, int, int]:
    """(entries, signals, distinct values, import records); asserts no partial row."""
    with Store.open(target) as s:
        db = s.db
        if db.dialect == "sqlite":
            assert db.query_one("PRAGMA integrity_check")[0] == "ok", "SQLite integrity check failed"
        bank_id = db.query_one("SELECT id FROM banks WHERE name = ?", (bank,))["id"]
        entries = db.query_one("SELECT count(*) AS n FROM bank_entries WHERE bank_id = ?", (bank_id,))["n"]
        row = db.query_one("SELECT count(*) AS n, count(DISTINCT signal_type || value) AS d FROM bank_signals WHERE bank_id = ?",
                           (bank_id,))  # fmt: skip
        orphans = db.query_one("SELECT count(*) AS n FROM bank_signals s LEFT JOIN bank_entries e ON e.id = s.entry_id"
                               " WHERE e.id IS NULL")["n"]  # fmt: skip
        bare = db.query_one("SELECT count(*) AS n FROM bank_entries e WHERE NOT EXISTS"
                            " (SELECT 1 FROM bank_signals s WHERE s.entry_id = e.id)")["n"]  # fmt: skip
        imports = db.query_one("SELECT count(*) AS n FROM bank_imports WHERE bank_id = ?", (bank_id,))["n"]
        assert (orphans, bare) == (0, 0), f"a partial row: {orphans} signals without entry, {bare} entries without signals"
        return int(entries), int(row["n"]), int(row["d"]), int(imports)


def cli(target: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "consentry", "--db", target, *args], env=env, **kw)


@contextmanager
def fresh_store(db_url: str | None, tmp: Path, n: int) -> Iterator[str]:
    if db_url:
        with postgres_schema(db_url) as url:
            yield url
        return
    path = tmp / f"kill-{n}.db"
    try:
        yield str(path)
    finally:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def kill_and_rerun(target: str, src: Path, rows: int, point: str, rng: random.Random, end_delay: float) -> dict:
    with Store.open(target) as s:
        s.banks.create("big")
    wanted = rows if point == "end" else max(PROGRESS_EVERY, int(float(point) * rows) // PROGRESS_EVERY * PROGRESS_EVERY)
    start = time.perf_counter()
    proc = cli(target, "bank", "import", "big", str(src), "--progress", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    read = 0
    for line in proc.stderr:
        if b"rows read" in line:
            read = int(line.split(b":")[-1].split()[0].replace(b",", b""))
            if read >= wanted:
                break
    if point == "end":
        time.sleep(rng.uniform(0.0, end_delay))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    killed_after = time.perf_counter() - start
    finished = proc.returncode == 0
    entries, signals, distinct, imports = bank_state(target, "big")
    all_or_nothing = entries in (0, rows) and signals == distinct == entries and imports == (1 if entries else 0)
    rerun = cli(target, "bank", "import", "big", str(src), "--json", stdout=subprocess.PIPE)
    out, _ = rerun.communicate(timeout=3600)
    report = json.loads(out)
    final = bank_state(target, "big")
    exact = rerun.returncode == 0 and report["added"] == rows - entries and report["duplicates"] == entries
    return {"point": point, "read": read, "killed_after_s": killed_after, "finished_first": finished,
            "after_kill": entries, "rerun_added": report["added"], "final": final,
            "ok": all_or_nothing and exact and final == (rows, rows, rows, 2 if entries else 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--points", default="0.05,0.5,0.95,end,end", help="fractions of the rows read before the kill, or 'end'")
    parser.add_argument("--end-delay", type=float, default=2.0, help="the most seconds an 'end' kill waits after the last progress line")
    parser.add_argument("--db", default=None, metavar="URL", help="a postgresql:// URL to run on instead of SQLite")
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = Path(tmp) / "deleted_models.csv"
        write_csv(src, args.rows)
        for n, point in enumerate(args.points.split(",")):
            with fresh_store(args.db, Path(tmp), n) as target:
                result = kill_and_rerun(target, src, args.rows, point.strip(), rng, args.end_delay)
            results.append(result)
            print(f"kill at {result['point']:>5}: {result['read']:>9,} rows read, killed after {result['killed_after_s']:5.1f} s"
                  f"{' (it had finished)' if result['finished_first'] else ''}; bank held {result['after_kill']:,};"
                  f" rerun added {result['rerun_added']:,}; final {result['final'][0]:,} entries,"
                  f" {result['final'][3]} import record(s): {'OK' if result['ok'] else 'FAILED'}", flush=True)  # fmt: skip
    backend = "PostgreSQL" if args.db else "SQLite"
    good = all(r["ok"] for r in results)
    print(f"{'OK' if good else 'FAILED'}: {backend}, {args.rows:,}-row import killed at {len(results)} points:"
          f" all or nothing each time, and the rerun added exactly the rest")  # fmt: skip
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
