"""The ``pdq`` signal of banks: image banks that work like StopNCII's and ThreatExchange's.

A bank entry holds a PDQ hash (64 lower-case hex, stored in ``bank_signals`` like any hash, so
hash lists import and export unchanged); an entry banked from an image file gets its PDQ there
in the same transaction as its file hashes. A scanned image matches an entry when the Hamming
distance between one of its 8 dihedral hashes (itself, rotated 90/180/270 degrees, mirrored
four ways) and the banked hash is at most the bank's threshold (``thresholds["pdq"]``, default
ThreatExchange's 31 of 256 bits). Taking the variants on the query side finds rotated and
mirrored copies of *every* banked hash, imported ones included, with one stored value per entry.
Nothing of quality below 50 is banked or compared (ThreatExchange's rule: too little detail to match on).

Search: every banked PDQ hash is held in memory as four ``uint64`` words and compared with
vectorised XOR + popcount against the 8 query hashes, the second half only for hashes already
within the threshold on the first (:func:`nearest`) -- an exact, brute-force scan like HMA's own
current PDQ index (faiss ``IndexFlat``). It was chosen over a multi-index
(pigeonhole over 16-bit chunks: distance <= 31 means one of 16 chunks differs by at most one
bit) because a one-shot ``consentry scan`` would pay the index build (16 sorts of the whole
bank) on every run, while the flat scan costs ~20 ms per image per million hashes (8 dihedral
queries; ``bench/face_speed.py``) and needs no schema. The in-memory copy is rebuilt when the
store's banks change: entries only ever gain larger ids and are only deleted with their bank,
so ``max(bank_entries.id)`` plus the banks' count, ids and timestamps is a complete stamp.
Disabled banks are filtered at query time.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

from consentry.identity.identify import ModelIdentity
from consentry.images.pdq import DIHEDRAL_NAMES

SIGNAL = "pdq"
DEFAULT_THRESHOLD = 31
MIN_QUALITY = 50
BLOCK = 1 << 20  # hashes compared per pass: bounds the scratch arrays (~10 MB)

# The scanned image relative to the banked one when query variant k matched (the inverse of
# variant k's transform; see consentry.images.pdq.DIHEDRAL_NAMES).
AS_SEEN = (
    "same orientation",
    "rotated 90 degrees clockwise",
    "rotated 180 degrees",
    "rotated 90 degrees counter-clockwise",
    "mirrored top to bottom",
    "mirrored left to right",
    "transposed",
    "mirrored along the anti-diagonal",
)


def image_pdq(identity: ModelIdentity) -> tuple[list[str], int] | str | None:
    """(8 dihedral hashes, quality) of an identified image, a reason string when it has none,
    or None when the file is not an image."""
    extra = identity.extra
    if "pdq_dihedral" in extra:
        return list(extra["pdq_dihedral"]), int(extra["pdq_quality"])
    if "pdq" in extra and "pdq_quality" in extra:  # as stored with a review item: the upright hash only
        return [extra["pdq"]], int(extra["pdq_quality"])
    return extra.get("pdq_unavailable")


def banked_value(identity: ModelIdentity) -> tuple[str | None, str | None]:
    """(the PDQ hash to bank for this image, or None; what to record in the entry's provenance)."""
    got = image_pdq(identity)
    if got is None:
        return None, None
    if isinstance(got, str):
        return None, f"not stored: {got}"
    hashes, quality = got
    if quality < MIN_QUALITY:
        return None, f"not stored: image quality {quality} below {MIN_QUALITY} (too little detail to match on)"
    return hashes[0], "stored"


@dataclass
class _Index:
    stamp: tuple
    entry_ids: Any  # int64 (N,)
    bank_ids: Any  # int64 (N,)
    columns: Any  # uint64 (4, N): word j of every hash in row j
    hexes: list[str]


_indexes: "weakref.WeakKeyDictionary[Any, _Index]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _stamp(store) -> tuple:
    entries = store.db.query_one("SELECT max(id) AS m FROM bank_entries")
    banks = store.db.query_one("SELECT count(*) AS n, max(id) AS m, max(created_at) AS c, max(updated_at) AS u FROM banks")
    return (entries["m"], banks["n"], banks["m"], banks["c"], banks["u"])


def _pack(hexes: list[str]):
    import numpy as np

    if not hexes:
        return np.zeros((0, 4), dtype=np.uint64)
    return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=">u8").reshape(-1, 4).astype(np.uint64)


def _index(store) -> _Index:
    import numpy as np

    stamp = _stamp(store)
    with _lock:
        found = _indexes.get(store.db)
        if found is not None and found.stamp == stamp:
            return found
    rows = store.db.query("SELECT entry_id, bank_id, value FROM bank_signals WHERE signal_type = ?", (SIGNAL,))
    hexes = [r["value"] for r in rows]
    index = _Index(stamp, np.fromiter((r["entry_id"] for r in rows), dtype=np.int64, count=len(rows)),
                   np.fromiter((r["bank_id"] for r in rows), dtype=np.int64, count=len(rows)),
                   np.ascontiguousarray(_pack(hexes).T), hexes)  # fmt: skip
    with _lock:
        _indexes[store.db] = index
    return index


def nearest(columns, queries, limit: int):
    """For each banked hash, the smallest Hamming distance to any of the ``queries`` and which
    query gave it, for the hashes within ``limit`` only.

    ``columns`` holds the banked hashes as 4 rows of ``uint64`` words (shape ``(4, N)``, most
    significant word first), ``queries`` the query hashes as ``(Q, 4)``. The first two words
    (128 bits) are compared for every hash; only those already within ``limit`` on them (a
    random pair differs in ~64 of 128 bits, so almost none) get the other two compared.
    Returns (indices into the N hashes, distances, query indices)."""
    import numpy as np

    n = columns.shape[1]
    best: dict[int, tuple[int, int]] = {}
    size = min(n, BLOCK)
    scratch = np.empty(size, dtype=np.uint64)
    count, other = np.empty(size, dtype=np.uint8), np.empty(size, dtype=np.uint8)
    for start in range(0, n, BLOCK):
        w = columns[:, start : start + BLOCK]
        m = w.shape[1]
        tmp, d, d2 = scratch[:m], count[:m], other[:m]
        for k, q in enumerate(queries):
            np.bitwise_xor(w[0], q[0], out=tmp)
            np.bitwise_count(tmp, out=d)
            np.bitwise_xor(w[1], q[1], out=tmp)
            np.bitwise_count(tmp, out=d2)
            d += d2  # at most 128: fits uint8
            rows = np.flatnonzero(d <= limit)
            if not rows.size:
                continue
            full = d[rows].astype(np.uint16) + np.bitwise_count(w[2][rows] ^ q[2]) + np.bitwise_count(w[3][rows] ^ q[3])
            for row, dist in zip((rows + start).tolist(), full.tolist()):
                if dist <= limit and (row not in best or (dist, k) < best[row]):
                    best[row] = (dist, k)
    rows_out = np.fromiter(best, dtype=np.int64, count=len(best))
    dists = np.fromiter((v[0] for v in best.values()), dtype=np.int64, count=len(best))
    which = np.fromiter((v[1] for v in best.values()), dtype=np.int64, count=len(best))
    return rows_out, dists, which


def pdq_candidates(store, identity: ModelIdentity) -> tuple[list[tuple[int, str, float, float, str]], list[str]]:
    """Bank entries whose PDQ hash is within their bank's threshold of the scanned image.

    Returns ([(entry_id, how the image relates to the banked one, distance, threshold, reason)], notes)."""
    got = image_pdq(identity)
    if got is None:
        return [], []
    if isinstance(got, str):  # a bad image's problem is reported by the scan already
        return [], [] if identity.problem else [f"pdq not compared: {got}"]
    hashes, quality = got
    index = _index(store)
    if not len(index.hexes):
        return [], []
    if quality < MIN_QUALITY:
        return [], [f"pdq not compared: image quality {quality} below {MIN_QUALITY} (too little detail to match on)"]
    banks = {b.id: b for b in store.banks.list(with_counts=False)}
    thresholds = {bid: float(b.thresholds.get(SIGNAL, DEFAULT_THRESHOLD)) for bid, b in banks.items() if b.enabled}
    if not thresholds:
        return [], []
    rows, dists, which = nearest(index.columns, _pack(hashes), int(max(thresholds.values())))
    best: dict[int, tuple[int, int, int]] = {}  # entry -> (distance, row, query variant)
    for row, d, k in zip(rows.tolist(), dists.tolist(), which.tolist()):
        bank_id, entry_id = int(index.bank_ids[row]), int(index.entry_ids[row])
        t = thresholds.get(bank_id)
        if t is None or d > t:
            continue
        if entry_id not in best or (d, k) < best[entry_id][::2]:
            best[entry_id] = (d, row, k)
    found = []
    for entry_id, (d, row, k) in sorted(best.items(), key=lambda kv: kv[1][0]):
        t = thresholds[int(index.bank_ids[row])]
        reason = (f"PDQ of the scanned image ({DIHEDRAL_NAMES[k]}) {hashes[k]} vs banked {index.hexes[row]}:"
                  f" {d} of 256 bits differ (threshold {t:g}); image quality {quality}")  # fmt: skip
        found.append((entry_id, AS_SEEN[k], float(d), t, reason))
    return found, []
