"""Benchmark: `bank import` of 1,000,000 CSV rows into SQLite (goal: under 60 s).

The CSV looks like the reporters' lists: model name, old Civitai URL, SHA256 in mixed case, a
label. Prints, in the same run, the floor (plain `csv` parsing of the same file) and the naive
baseline (one INSERT per row after a SELECT for duplicates, via BankRepository.add_entry) timed
on every row, or on ``--naive-sample N`` rows extrapolated (a sample into an empty bank flatters
it: its indexes still fit in the page cache). Both start from the same bank.

    python bench/bank_import.py [--rows 1000000] [--naive-sample 0] [--into STORE]

``--into STORE`` imports into a copy of STORE's bank ``big`` instead of an empty bank: with the
store bench/bank_lookup.py builds, that is a bank already holding 10,000,000 values.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from consentry.banks.entries import normalise_signals
from consentry.banks.importing import import_rows
from consentry.store import Store
from consentry.store.banks import BankEntry

GOAL_S = 60.0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=0)
    parser.add_argument("--into", type=Path, default=None, help="a store whose bank 'big' receives the import (copied first)")
    args = parser.parse_args()
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

        target = Path(tmp) / "bench.db"
        if args.into:
            shutil.copyfile(args.into, target)
        with Store.open(target) as store:
            bank = "big" if args.into else store.banks.create("deleted").name
            before = store.db.query_one("SELECT count(*) AS n FROM bank_signals")["n"]
            print(f"importing into bank {bank!r}, which holds {before:,} values")
            start = time.perf_counter()
            report = import_rows(store, bank, src, actor="bench")
            took = time.perf_counter() - start
            assert report.added == args.rows and not report.rejected, report.as_dict()

        naive_target = Path(tmp) / "naive.db"  # the same starting point: empty, or a copy of --into
        if args.into:
            target.unlink()
            shutil.copyfile(args.into, naive_target)
        with Store.open(naive_target) as store:
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


if __name__ == "__main__":
    main()
