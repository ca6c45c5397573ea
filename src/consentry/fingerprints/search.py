"""Find stored fingerprints related to one fingerprint: a nearest-neighbour shortlist from the
store's index, then an exact comparison of each candidate's sketches. Banks use it to match a
scanned file against banked models, mirror finding to match a banked model against hub files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from consentry.fingerprints.compare import CONTAINS, DEFAULT_THRESHOLDS, Comparison, compare
from consentry.fingerprints.model import Fingerprint
from consentry.store.fingerprints import StoredFingerprint

SHORTLIST = 50  # candidates drawn from the nearest-neighbour index before exact comparison


@dataclass
class Related:
    stored: StoredFingerprint
    comparison: Comparison  # A = the known model, B = the suspected copy
    score: float  # containment for `contains`, identity otherwise
    default_threshold: float  # the calibrated threshold for that score


def score_of(result: Comparison) -> tuple[float, float]:
    """The score a verdict rests on and its calibrated threshold."""
    if result.verdict == CONTAINS:
        return result.containment or 0.0, DEFAULT_THRESHOLDS.contains
    return result.identity or 0.0, DEFAULT_THRESHOLDS.detect


def related_fingerprints(store, query: Fingerprint, *, prefix: str, query_is_known: bool,
                         exclude: Collection[str] = (), shortlist: int = SHORTLIST) -> list[Related]:  # fmt: skip
    """Stored fingerprints whose key starts with ``prefix`` and relate to ``query``.

    ``query_is_known``: the query is the known model (A) and the stored ones the suspects (B),
    as when looking for copies of a banked model; otherwise the other way round."""
    from consentry.fingerprints.index import index_for_store, search

    found: list[Related] = []
    for key, _similarity in search(index_for_store(store), query.vector(), shortlist):
        got = store.fingerprints.get(key)
        if got is None or not got[0].path.startswith(prefix) or got[0].path in exclude:
            continue
        meta, blob = got
        other = Fingerprint.from_bytes(blob, source=meta.path)
        result = compare(query, other) if query_is_known else compare(other, query)
        if result.related:
            score, default = score_of(result)
            found.append(Related(meta, result, round(score, 4), default))
    return found
