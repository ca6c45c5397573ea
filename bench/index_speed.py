"""Benchmark: `consentry index` over a folder of 1,000 small model files (files/s).

Writes N small safetensors LoRAs (a few KiB to ~100 KiB each) into a temp folder, then times a
first full index, and a second incremental run (everything unchanged) for comparison.

    python bench/index_speed.py [--files 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from consentry.indexing import index_tree
from consentry.store import Store


def make_tree(root: Path, files: int) -> int:
    rng = np.random.default_rng(0)
    total = 0
    for i in range(files):
        width = int(rng.integers(64, 3000))
        path = root / f"d{i % 20:02}" / f"lora_{i:05}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {f"m{j}.lora_down.weight": rng.standard_normal((4, width)).astype(np.float16) for j in range(2)},
            str(path),
            metadata={"ss_output_name": f"lora_{i}"},
        )
        total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "models"
        total = make_tree(root, args.files)
        with Store.open(Path(tmp) / "bench.db") as store:
            start = time.perf_counter()
            first = index_tree(store, root)
            full = time.perf_counter() - start
            start = time.perf_counter()
            second = index_tree(store, root)
            incremental = time.perf_counter() - start
    print(f"files: {args.files}, {total / 1e6:.1f} MB in total")
    print(f"{'run':<24}{'seconds':>10}{'files/s':>12}{'MB/s':>10}")
    print(f"{'first index':<24}{full:>10.2f}{first.indexed / full:>12.0f}{total / 1e6 / full:>10.1f}")
    print(f"{'incremental (unchanged)':<24}{incremental:>10.2f}{second.unchanged / incremental:>12.0f}{'':>10}")
    print(f"ratio first/incremental: {full / incremental:.1f}x")


if __name__ == "__main__":
    main()
