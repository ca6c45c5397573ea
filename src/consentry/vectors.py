"""Nearest-neighbour indexes over vectors kept in the store (weight fingerprints, face embeddings).

usearch (HNSW) is used because it is one small wheel with no dependencies beyond numpy,
supports 64-bit keys, incremental adds, save/load and memory-mapped views, and is actively
released; faiss-cpu is much larger and its HNSW cannot remove entries, hnswlib has had no
release since 2023. An index is a cache: the store is the truth and every candidate is re-scored
from what the store holds, so the approximate shortlist only decides what is looked at.

Each index lives in a cache file named after the store and the vectors' version; it is opened
once per process, memory-mapped read-only (``Index.view``) when current, otherwise loaded,
brought up to date with the rows added since (row ids only grow) and saved back atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class VectorTable:
    """Where a kind of vector lives in the store and how its index is built."""

    name: str  # the cache file's prefix
    version: str  # changes when the vectors' meaning does: old caches are then ignored
    ndim: int
    metric: str  # usearch metric: "cos", "l2sq"
    dtype: str  # usearch storage: "i8", "f16", "f32"
    max_id: Callable[[Any], int]  # store -> the largest row id
    iter_vectors: Callable[[Any, int], Iterator[tuple[np.ndarray, np.ndarray]]]  # store, after id -> (ids, vectors)
    connectivity: int = 16
    expansion_add: int = 48
    expansion_search: int = 64

    def new_index(self) -> Any:
        from usearch.index import Index

        return Index(ndim=self.ndim, metric=self.metric, dtype=self.dtype, connectivity=self.connectivity,
                     expansion_add=self.expansion_add, expansion_search=self.expansion_search)  # fmt: skip


def search(index: Any, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(key, distance in the index's metric) of the k nearest, nearest first."""
    if len(index) == 0 or k <= 0:
        return []
    matches = index.search(np.asarray(vector, dtype=np.float32), min(k, len(index)))
    return [(int(key), float(dist)) for key, dist in zip(matches.keys, matches.distances)]


def cache_path(table: VectorTable, db_label: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "consentry"
    tag = hashlib.blake2b(f"{db_label}|{table.version}|{table.ndim}".encode(), digest_size=8).hexdigest()
    return base / f"{table.name}-{tag}.usearch"


# Indexes opened by this process, by cache file: (max id they cover, index). A process that
# searches more than once (`scan` over many files, the HTTP service, `person find`) opens each
# index once; a one-shot CLI call pays one open.
_OPENED: dict[Path, tuple[int, Any]] = {}


def forget_opened() -> None:
    """Drop the indexes this process holds open, as if it were a new process (tests, benchmarks)."""
    _OPENED.clear()


def index_for(store: Any, table: VectorTable) -> Any:
    """The store's index of ``table``, current with the store (see the module docstring)."""
    max_id = table.max_id(store)
    path = cache_path(table, store.path)
    opened = _OPENED.get(path)
    if opened is not None and opened[0] == max_id:
        return opened[1]
    index = _open_or_update(store, table, path, max_id)
    _OPENED[path] = (max_id, index)
    return index


def _open_or_update(store: Any, table: VectorTable, path: Path, max_id: int) -> Any:
    sidecar = path.with_suffix(".json")
    done = -1
    if path.is_file() and sidecar.is_file():
        try:
            done = int(json.loads(sidecar.read_text())["max_id"])
        except (OSError, ValueError, KeyError, TypeError):
            done = -1
    if done == max_id:
        try:
            index = table.new_index()
            index.view(str(path))
            return index
        except (OSError, ValueError, RuntimeError):
            done = -1
    index = None
    if 0 <= done < max_id:
        try:
            index = table.new_index()
            index.load(str(path))
        except (OSError, ValueError, RuntimeError):
            index = None
    if index is None:  # no cache, a broken one, or one from a store with more rows than this (recreated)
        index, done = table.new_index(), 0
    for ids, vectors in table.iter_vectors(store, done):
        index.add(ids, vectors)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        index.save(str(tmp))
        os.replace(tmp, path)
        sidecar.write_text(json.dumps({"max_id": max_id, "count": len(index)}))
    except OSError:
        pass  # a read-only cache only costs a rebuild next time
    return index
