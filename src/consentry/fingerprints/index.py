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


# Indexes opened by this process, by cache file: (max id they cover, index). A process that
# searches more than once (`scan` over many files, the HTTP service, bank matching) opens the
# index once; a one-shot CLI call pays one open.
_OPENED: dict[Path, tuple[int, object]] = {}


def index_for_store(store) -> object:
    """The store's index. Already open in this process and current: that one. Else from the
    cache file: memory-mapped read-only (``Index.view``: nothing is loaded into memory, pages are
    read as searches touch them; usearch still walks the node table once, ~0.13 s at 1M) when the
    cache is current; otherwise loaded, brought up to date with the rows added since (ids only
    grow; a replaced fingerprint leaves a stale key that lookups skip) and saved back atomically,
    so a view held by another process keeps its file."""
    # max(id) only (O(log n) on the primary key): count(*) scans the table, ~tens of ms at 1M rows
    max_id = int(store.db.query_one("SELECT max(id) AS m FROM fingerprints")["m"] or 0)
    path = cache_path(store.path)
    opened = _OPENED.get(path)
    if opened is not None and opened[0] == max_id:
        return opened[1]
    index = _open_or_update(store, path, max_id)
    _OPENED[path] = (max_id, index)
    return index


def _open_or_update(store, path: Path, max_id: int) -> object:
    sidecar = path.with_suffix(".json")
    done = -1
    if path.is_file() and sidecar.is_file():
        try:
            done = int(json.loads(sidecar.read_text())["max_id"])
        except (OSError, ValueError, KeyError, TypeError):
            done = -1
    if done == max_id:
        try:
            index = new_index()
            index.view(str(path))
            return index
        except (OSError, ValueError, RuntimeError):
            done = -1
    index = None
    if 0 <= done < max_id:
        try:
            index = new_index()
            index.load(str(path))
        except (OSError, ValueError, RuntimeError):
            index = None
    if index is None:  # no cache, a broken one, or one from a store with more rows than this (recreated)
        index, done = new_index(), 0
    for ids, vectors in store.fingerprints.iter_vectors(after_id=done):
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


def nearest(store, query, top: int, shortlist: int | None = None) -> list[dict]:
    """What ``consentry similar`` lists: a shortlist of ``shortlist`` (default 3·top) from the
    index, each re-scored from its stored sketches (the index never decides a verdict), at most
    ``top`` rows, nearest first."""
    from consentry.fingerprints.compare import compare
    from consentry.fingerprints.model import Fingerprint

    rows = []
    for key, similarity in search(index_for_store(store), query.vector(), shortlist or top * 3):
        found = store.fingerprints.get(key)
        if found is None:
            continue  # replaced since the index was built
        meta, blob = found
        result = compare(query, Fingerprint.from_bytes(blob, source=meta.path))  # compare orients checkpoint/LoRA itself
        rows.append({"path": meta.path, "similarity": round(similarity, 4), "verdict": result.verdict,
                     "identity": result.identity, "containment": result.containment,
                     "coefficient": result.coefficient, "coverage": result.coverage, "reason": result.reason})  # fmt: skip
        if len(rows) == top:
            break
    return rows
