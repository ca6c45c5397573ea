"""Nearest-neighbour index over whole-model fingerprint vectors, for ``consentry similar``.

usearch (HNSW, cosine, vectors quantised to int8: 4x smaller, ~10x faster to build than float16 here) is used because it is one small wheel with no
dependencies beyond numpy, supports 64-bit keys, incremental adds, save/load and memory-mapped
views, and is actively released; faiss-cpu is much larger and its HNSW cannot remove entries,
hnswlib has had no release since 2023. The index is a cache: the store is the truth, and
``similar`` re-scores every candidate from its stored sketches, so an approximate shortlist only
decides what is looked at, never a verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from consentry.fingerprints.sketch import SKETCH_VERSION, VECTOR_DIM


def new_index():
    from usearch.index import Index

    return Index(ndim=VECTOR_DIM, metric="cos", dtype="i8", connectivity=16, expansion_add=48, expansion_search=64)


def search(index, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(key, cosine similarity) of the k nearest, best first."""
    if len(index) == 0:
        return []
    matches = index.search(np.asarray(vector, dtype=np.float32), min(k, len(index)))
    return [(int(key), 1.0 - float(dist)) for key, dist in zip(matches.keys, matches.distances)]


def cache_path(db_label: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "consentry"
    tag = hashlib.blake2b(f"{db_label}|v{SKETCH_VERSION}|{VECTOR_DIM}".encode(), digest_size=8).hexdigest()
    return base / f"fingerprints-{tag}.usearch"


def index_for_store(store) -> object:
    """The store's index, loaded from the cache and brought up to date with rows added since
    (ids only grow; a replaced fingerprint leaves a stale key that lookups skip)."""
    path = cache_path(store.path)
    sidecar = path.with_suffix(".json")
    index, done = None, 0
    if path.is_file() and sidecar.is_file():
        try:
            done = int(json.loads(sidecar.read_text())["max_id"])
            index = new_index()
            index.load(str(path))
        except (OSError, ValueError, KeyError, RuntimeError):
            index, done = None, 0
    count, max_id = store.fingerprints.state()
    if index is None:
        index, done = new_index(), 0
    if max_id > done:
        for ids, vectors in store.fingerprints.iter_vectors(after_id=done):
            index.add(ids, vectors)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            index.save(str(path))
            sidecar.write_text(json.dumps({"max_id": max_id, "count": count}))
        except OSError:
            pass  # a read-only cache only costs a rebuild next time
    return index
