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
from consentry.fingerprints.search import related_fingerprints
from consentry.fingerprints.stored import compute_fingerprint, put_fingerprint, save_fingerprint
from consentry.identity.identify import ModelIdentity
from consentry.store.banks import ENTRY_FINGERPRINT_KEY

SIGNAL = "fingerprint"
KEY_PREFIX = ENTRY_FINGERPRINT_KEY


def fingerprint_entry(store, entry_id: int, path: str | Path, identity: ModelIdentity) -> str | None:
    """Store the fingerprint of a banked model file. Returns why it could not be, or None."""
    try:
        fp = compute_fingerprint(store, path)
    except ConsentryError as exc:
        return str(exc)
    save_fingerprint(store, fp, path, identity=identity, key=f"{KEY_PREFIX}{entry_id}")
    return None


def put_entry_fingerprint(store, entry_id: int, blob: bytes, *, sha256: str | None, content_hash: str | None = None) -> int:
    """Store a banked entry's fingerprint as an exchange file carries it (``Fingerprint.to_bytes``)."""
    from consentry.fingerprints.model import Fingerprint

    return put_fingerprint(store, Fingerprint.from_bytes(blob), f"{KEY_PREFIX}{entry_id}", sha256=sha256, content_hash=content_hash)


def banks_hold_fingerprints(store) -> bool:
    return store.fingerprints.any_under(KEY_PREFIX)


def fingerprint_candidates(store, identity: ModelIdentity) -> tuple[list[tuple[int, str, float, float, str]], list[str]]:
    """Banked entries whose fingerprint relates to the scanned file.

    Returns ([(entry_id, verdict, score, threshold, reason)], notes)."""
    if identity.manifest is None or identity.problem or not banks_hold_fingerprints(store):
        return [], []
    try:
        query = compute_fingerprint(store, identity.path)
    except ConsentryError as exc:
        return [], [f"fingerprint not compared: {exc}"]
    found: list[tuple[int, str, float, float, str]] = []
    for hit in related_fingerprints(store, query, prefix=KEY_PREFIX, query_is_known=False):
        entry = store.banks.entry(int(hit.stored.path[len(KEY_PREFIX):]))
        if entry is None:
            continue
        bank = store.banks.get(entry.bank_name)
        threshold = float(bank.thresholds.get(SIGNAL, hit.default_threshold))
        if hit.score >= threshold:
            found.append((entry.id, hit.comparison.verdict, hit.score, threshold, hit.comparison.reason))
    return found, []
