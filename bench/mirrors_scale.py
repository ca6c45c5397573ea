"""Benchmark: `consentry mirrors` for a bank of 50,000 entries against 200,000 crawled hub files.

The store is synthetic but built through the real paths: the bank by `bank import` of a CSV
(name, old Civitai URL, SHA256), the hub files by the hub repository's upsert. 2% of the entries
have a copy with the same SHA256 on Hugging Face and 2% one with the same AutoV3 (the Civitai
crawl knew their AutoV3). The finder must not be quadratic: it is timed at 1/4 of the size too,
and the ratio of the two times is printed next to the ratio of the sizes (4.0 = linear).

    python bench/mirrors_scale.py [--entries 50000 --files 200000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from consentry.banks.importing import import_rows
from consentry.mirrors import find_mirrors
from consentry.store import Store


def hexes(rng: random.Random, n: int, width: int = 64) -> list[str]:
    return [f"{rng.getrandbits(width * 4):0{width}X}" for _ in range(n)]


def build(db: Path, entries: int, files: int, seed: int = 0) -> tuple[int, float]:
    rng = random.Random(seed)
    shas, autov3s = hexes(rng, entries), hexes(rng, entries)
    csv_path = db.with_suffix(".csv")
    with open(csv_path, "w") as fh:
        fh.write("Model Name,Old URL,SHA256\n")
        for i, sha in enumerate(shas):
            fh.write(f"model {i},https://civitai.com/models/{1_000_000 + i}/model-{i},{sha}\n")
    started = time.perf_counter()
    with Store.open(db) as store:
        store.banks.create("deleted", labels=["real-person-likeness"])
        import_rows(store, "deleted", csv_path)
        # what the Civitai crawl recorded of those models before they were deleted (their AutoV3)
        store.hubs.upsert("hub_files", "civitai", [
            {"remote_id": 5_000_000 + i, "model_remote_id": 1_000_000 + i, "sha256": sha, "autov3": autov3s[i][:12]}
            for i, sha in enumerate(shas)
        ])  # fmt: skip
        planted = 0
        rows = []
        for j in range(files - entries):
            sha, autov3 = hexes(rng, 1)[0], None
            if j % 50 == 0 and j // 50 < entries:
                sha, planted = shas[j // 50], planted + 1  # an exact copy
            elif j % 50 == 25 and j // 50 < entries:
                autov3, planted = autov3s[j // 50], planted + 1  # metadata rewritten
            rows.append({"remote_id": f"user{j}/LORA/LORA.safetensors", "model_remote_id": f"user{j}/LORA",
                         "url": f"https://huggingface.co/user{j}/LORA/resolve/main/LORA.safetensors",
                         "sha256": sha, "autov3": autov3})  # fmt: skip
            if len(rows) == 20_000:
                store.hubs.upsert("hub_files", "huggingface", rows)
                rows = []
        store.hubs.upsert("hub_files", "huggingface", rows)
    return planted, time.perf_counter() - started


def timed_find(db: Path) -> tuple[float, float, int]:
    with Store.open(db) as store:
        started = time.perf_counter()
        report = find_mirrors(store, "deleted", fingerprints=False, record=False)
        search = time.perf_counter() - started
        started = time.perf_counter()
        recorded = find_mirrors(store, "deleted", fingerprints=False)
        total = time.perf_counter() - started
    assert report.mirror_count == recorded.mirror_count
    return search, total, report.mirror_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=200_000, help="hub files in all (the Civitai ones included)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (4, 1):
            entries, files = args.entries // scale, args.files // scale
            db = Path(tmp) / f"m{scale}.db"
            planted, build_s = build(db, entries, files)
            search, total, found = timed_find(db)
            assert found == planted, (found, planted)
            results[scale] = search
            print(f"{entries:>7,} entries x {files:>8,} hub files: search {search:6.2f} s, search + record {total:6.2f} s, "
                  f"{found:,} mirrors (all {planted:,} planted found); store built in {build_s:.1f} s")  # fmt: skip
    print(f"time ratio for 4x the data: {results[1] / results[4]:.2f} (linear: 4.0; quadratic: 16.0)")


if __name__ == "__main__":
    main()
