"""The matcher every upload goes through: a file's signals against every enabled bank.

Exact signals (hashes) match by equality, looked up in ``bank_signals``. Similarity signals
(the weight fingerprint, and any plug-in of that kind) find their related entries themselves
and report a score and the bank's threshold; an entry an exact hash already matched is shown
by the hash, the stronger evidence. Both kinds come from the signal registry: neither is
named here. A hit in a negative bank (known-good models) is reported and suppresses
similarity matches; it never hides an exact hash hit in a positive bank, which is shown
alongside it so a person decides — until a reviewer has: a match dismissed in review for the
same file (by SHA-256) and the same entry stays dismissed on later scans, and opens no new
review item, until the dismissal is appealed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from consentry.banks.signals import SignalRegistry, signal_registry
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.identity.identify import ModelIdentity, identify, identify_image
from consentry.store import Store
from consentry.store.banks import BankEntry, SignalHit

STATUS_MATCH = "match"
STATUS_NO_MATCH = "no match"
STATUS_QUARANTINE = "quarantine"


# A match resting only on a shorter hash is reported as weak: 32-bit AutoV1/CRC32 collide by
# chance about once per 4 billion comparisons, i.e. often against a 10-million-entry bank.
WEAK_BITS = 40


@dataclass
class Match:
    """One bank entry a file matched, and every signal that matched it."""

    bank: str
    bank_kind: str  # positive | negative
    entry: BankEntry | None
    signals: list[tuple[str, str, int]]  # (signal type, value, bits of evidence), strongest first
    score: float | None = None  # similarity signals only
    threshold: float | None = None
    suppressed_by: str | None = None  # name of the negative bank that suppressed it
    measure: str = "score"  # similarity: "score" (>= threshold matches) or "distance" (<= threshold, pdq)
    reason: str = ""  # similarity: what the signal compared, in its words
    dismissed_in: int | None = None  # the review item in which a reviewer dismissed this file's match to this entry
    review_item: int | None = None

    @property
    def signal_type(self) -> str:
        return self.signals[0][0]

    @property
    def value(self) -> str:
        return self.signals[0][1]

    @property
    def strength(self) -> int:
        return self.signals[0][2]

    @property
    def weak(self) -> bool:
        return self.score is None and self.strength < WEAK_BITS

    def as_dict(self) -> dict[str, Any]:
        entry = self.entry
        return {
            "bank": self.bank,
            "bank_kind": self.bank_kind,
            "signal": self.signal_type,
            "value": self.value,
            "signals": [{"type": t, "value": v, "bits": b} for t, v, b in self.signals],
            "strength_bits": self.strength,
            "weak": self.weak,
            "score": self.score,
            "threshold": self.threshold,
            "measure": self.measure if self.score is not None else None,
            "reason": self.reason or None,
            "suppressed_by": self.suppressed_by,
            "dismissed_in": self.dismissed_in,
            "review_item": self.review_item,
            "entry": None if entry is None else {
                "id": entry.id, "name": entry.name, "url": entry.url, "labels": entry.labels,
                "note": entry.note, "provenance": entry.provenance, "added_at": entry.added_at,
            },
        }  # fmt: skip


@dataclass
class ScanResult:
    path: str
    identity: ModelIdentity
    status: str
    matches: list[Match] = field(default_factory=list)  # positive-bank matches
    negative: list[Match] = field(default_factory=list)  # known-good hits
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        ident = self.identity.as_json()
        return {
            "path": self.path,
            "status": self.status,
            "verdict": ident["verdict"],
            "problem": ident["problem"],
            "format": ident["format"],
            "size": ident["size"],
            "hashes": {k: v for k, v in ident.items() if k not in ("path", "size", "format", "verdict", "problem", "width", "height")},
            **({"image": {"width": ident["width"], "height": ident["height"]}} if "width" in ident else {}),
            "matches": [m.as_dict() for m in self.matches],
            "negative": [m.as_dict() for m in self.negative],
            "notes": list(self.notes),
        }


def match_identity(store: Store, identity: ModelIdentity, registry: SignalRegistry | None = None) -> ScanResult:
    """Compare one identified file against every enabled bank."""
    registry = registry or signal_registry()
    grouped: dict[int, list[SignalHit]] = {}
    for hit in store.banks.lookup(registry.lookups_for(identity)):
        grouped.setdefault(hit.entry_id, []).append(hit)
    matches = []
    for entry_id, entry_hits in grouped.items():
        signals = sorted(
            ((h.signal_type, h.value, registry.get(h.signal_type).strength(h.value)) for h in entry_hits),
            key=lambda s: -s[2],
        )
        first = entry_hits[0]
        matches.append(Match(bank=first.bank, bank_kind=first.bank_kind, entry=store.banks.entry(entry_id), signals=signals))
    notes: list[str] = []
    matched = set(grouped)
    for similarity in registry.similarity():
        found, signal_notes = similarity.find(store, identity)
        notes += signal_notes
        for hit in found:
            if hit.entry_id in matched:
                continue  # already matched by an exact hash (the stronger evidence) or another similarity signal
            entry = store.banks.entry(hit.entry_id)
            if entry is None:
                continue
            bank = store.banks.get(entry.bank_name)
            if not bank.enabled:
                continue
            matched.add(hit.entry_id)
            matches.append(Match(bank=bank.name, bank_kind=bank.kind, entry=entry, signals=[(similarity.name, hit.verdict, 0)],
                                 score=hit.score, threshold=hit.threshold, measure=getattr(hit, "measure", "score"),
                                 reason=hit.reason))  # fmt: skip
    positive = [m for m in matches if m.bank_kind == "positive"]
    negative = [m for m in matches if m.bank_kind == "negative"]
    result = ScanResult(path=identity.path, identity=identity, status=STATUS_NO_MATCH, matches=positive, negative=negative,
                        notes=notes)
    if negative:
        banks = sorted({m.bank for m in negative})
        result.notes.append(f"known-good in negative bank(s) {', '.join(banks)}: similarity matches are suppressed")
        for m in positive:
            if m.score is not None:  # similarity signal
                m.suppressed_by = banks[0]
    dismissed = dismissed_matches(store, identity, [m.entry.id for m in positive if m.suppressed_by is None and m.entry])
    for m in positive:
        item = dismissed.get(m.entry.id) if m.entry is not None and m.suppressed_by is None else None
        if item is not None:
            m.dismissed_in = m.review_item = item
            result.notes.append(f"bank {m.bank}: this file's match to entry #{m.entry.id} was dismissed in review item"
                                f" #{item}; not flagged again (appeal the item to reopen it)")  # fmt: skip
    if negative and any(m.score is None and m.dismissed_in is None for m in positive):
        result.notes.append("an exact hash also matches a positive bank: the two banks disagree, review it")
    live = [m for m in positive if m.suppressed_by is None and m.dismissed_in is None]
    for m in live:
        if m.weak:
            result.notes.append(f"weak match in bank {m.bank}: only a {m.strength}-bit hash ({m.signal_type}) agrees; confirm with a full hash")
    if live:
        result.status = STATUS_MATCH
    elif identity.problem:
        result.status = STATUS_QUARANTINE
        result.notes.append(f"{identity.verdict}: {identity.problem}")
    return result


def dismissed_matches(store: Store, identity: ModelIdentity, entry_ids: list[int]) -> dict[int, int]:
    """``{entry id: review item}`` for the entries whose match to this file (same SHA-256) a
    reviewer dismissed, where that dismissal is the latest word: no open item for the pair, and
    no confirmation after it. An appeal reopens the dismissed item itself, which ends this.

    Both queries are narrowed by status (the ``review_items_status`` index), and the second
    runs only for a file that has a dismissal."""
    sha256 = identity.hashes.sha256 if identity.hashes else None
    if not sha256 or not entry_ids:
        return {}
    marks = ", ".join("?" * len(entry_ids))
    found: dict[int, tuple[str, int]] = {}
    for r in store.db.query(
        f"SELECT id, entry_id, updated_at FROM review_items WHERE status = 'dismissed' AND file_sha256 = ? AND entry_id IN ({marks})",
        (sha256, *entry_ids),
    ):
        key = (r["updated_at"], r["id"])
        if r["entry_id"] not in found or key > found[r["entry_id"]]:
            found[r["entry_id"]] = key
    if not found:
        return {}
    marks = ", ".join("?" * len(found))
    for r in store.db.query(
        f"SELECT id, entry_id, status, updated_at FROM review_items WHERE status IN ('open', 'confirmed')"
        f" AND file_sha256 = ? AND entry_id IN ({marks})",
        (sha256, *found),
    ):
        if r["status"] == "open" or (r["updated_at"], r["id"]) > found.get(r["entry_id"], ("", 0)):
            found.pop(r["entry_id"], None)
    return {entry_id: item for entry_id, (_when, item) in found.items()}


def queue_matches(store: Store, result: ScanResult, *, source: str) -> None:
    """Turn each live match into a review item (an already-open identical item is reused).
    A match dismissed in review for this file (``dismissed_in``) opens none."""
    hashes = result.identity.hashes
    for m in result.matches:
        if m.suppressed_by or m.dismissed_in:
            continue
        bank = store.banks.get(m.bank)
        m.review_item = store.reviews.open_item(
            file_name=os.path.basename(result.path), file_sha256=hashes.sha256 if hashes else None,
            file_size=result.identity.size, file_identity=result.identity.as_json(), bank_id=bank.id,
            bank_name=m.bank, entry_id=m.entry.id if m.entry else None, signal_type=m.signal_type,
            signal_value=m.value, score=m.score, threshold=m.threshold, source=source,
        )  # fmt: skip


def scan_paths(store: Store, paths: Iterable[str | os.PathLike[str]], *, queue: bool = True, source: str = "cli",
               limits: ReadLimits = DEFAULT_LIMITS, workers: int | None = None) -> Iterator[ScanResult]:  # fmt: skip
    """Identify and match each file (folders are walked for model files and images, both found
    by magic bytes)."""
    from consentry.images.sniff import image_format_of
    from consentry.indexing import is_model_candidate, walk_candidates

    registry = signal_registry()
    for target in paths:
        root = Path(target)
        if root.is_dir() and not is_model_candidate(root)[0]:
            files = [c.path for c in walk_candidates(root) if is_model_candidate(c.path)[0] or image_format_of(c.path)]
        else:
            files = [root]
        for path in files:
            identity = identify_image(path, workers=workers) or identify(path, limits=limits, workers=workers)
            result = match_identity(store, identity, registry)
            if queue:
                queue_matches(store, result, source=source)
            yield result
