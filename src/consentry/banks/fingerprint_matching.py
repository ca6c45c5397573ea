"""The weight-fingerprint signal of banks: a similarity signal, not an exact one.

A model added to a bank from its file also gets its fingerprint stored (row key
``bank-entry:<id>``). At scan time, when any bank holds fingerprints, the scanned file is
fingerprinted, a nearest-neighbour shortlist is drawn from the store's index, and each banked
candidate is compared from its sketches: a `same`, `derived` or `contains` verdict whose score
reaches the bank's threshold (``thresholds["fingerprint"]``, default the calibrated verdict
thresholds) is a match, with its score and threshold shown. Negative-bank fingerprint hits
suppress positive fingerprint matches (see :mod:`consentry.banks.matching`).
"""

from __future__ import annotations

from pathlib import Path

from consentry.errors import ConsentryError
from consentry.fingerprints import CONTAINS, DEFAULT_THRESHOLDS, Fingerprint, compare
from consentry.fingerprints.stored import compute_fingerprint, save_fingerprint
from consentry.identity.identify import ModelIdentity

SIGNAL = "fingerprint"
KEY_PREFIX = "bank-entry:"
SHORTLIST = 50  # candidates drawn from the nearest-neighbour index before exact comparison


def fingerprint_entry(store, entry_id: int, path: str | Path, identity: ModelIdentity) -> str | None:
    """Store the fingerprint of a banked model file. Returns why it could not be, or None."""
    try:
        fp = compute_fingerprint(store, path)
    except ConsentryError as exc:
        return str(exc)
    save_fingerprint(store, fp, path, identity=identity, key=f"{KEY_PREFIX}{entry_id}")
    return None


def banks_hold_fingerprints(store) -> bool:
    row = store.db.query_one("SELECT 1 AS x FROM fingerprints WHERE path LIKE ? LIMIT 1", (KEY_PREFIX + "%",))
    return row is not None


def fingerprint_candidates(store, identity: ModelIdentity) -> tuple[list[tuple[int, str, float, float, str]], list[str]]:
    """Banked entries whose fingerprint relates to the scanned file.

    Returns ([(entry_id, verdict, score, threshold, reason)], notes)."""
    if identity.manifest is None or identity.problem or not banks_hold_fingerprints(store):
        return [], []
    from consentry.fingerprints.index import index_for_store, search

    try:
        query = compute_fingerprint(store, identity.path)
    except ConsentryError as exc:
        return [], [f"fingerprint not compared: {exc}"]
    found: list[tuple[int, str, float, float, str]] = []
    for key, _similarity in search(index_for_store(store), query.vector(), SHORTLIST):
        stored = store.fingerprints.get(key)
        if stored is None or not stored[0].path.startswith(KEY_PREFIX):
            continue
        meta, blob = stored
        entry_id = int(meta.path[len(KEY_PREFIX):])
        entry = store.banks.entry(entry_id)
        if entry is None:
            continue
        bank = store.banks.get(entry.bank_name)
        result = compare(Fingerprint.from_bytes(blob, source=meta.path), query)
        if not result.related:
            continue
        if result.verdict == CONTAINS:
            score, default = result.containment or 0.0, DEFAULT_THRESHOLDS.contains
        else:
            score, default = result.identity or 0.0, DEFAULT_THRESHOLDS.detect
        threshold = float(bank.thresholds.get(SIGNAL, default))
        if score >= threshold:
            found.append((entry_id, result.verdict, round(score, 4), threshold, result.reason))
    return found, []
