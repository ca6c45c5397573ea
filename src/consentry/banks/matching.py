"""The matcher every upload goes through: a file's signals against every enabled bank.

Exact signals (hashes) match by equality. A hit in a negative bank (known-good models) is
reported and suppresses similarity matches (weight fingerprints, when they land); it never
hides an exact hash hit in a positive bank, which is shown alongside it so a person decides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from consentry.banks.fingerprint_matching import SIGNAL, fingerprint_candidates
from consentry.banks.signals import SignalRegistry, signal_registry
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.identity.identify import ModelIdentity, identify
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
            "suppressed_by": self.suppressed_by,
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
            "hashes": {k: v for k, v in ident.items() if k not in ("path", "size", "format", "verdict", "problem")},
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
    fp_hits, fp_notes = fingerprint_candidates(store, identity)
    for entry_id, verdict, score, threshold, reason in fp_hits:
        if entry_id in grouped:
            continue  # already matched by an exact hash: the stronger evidence is shown
        entry = store.banks.entry(entry_id)
        bank = store.banks.get(entry.bank_name)
        if not bank.enabled:
            continue
        matches.append(Match(bank=bank.name, bank_kind=bank.kind, entry=entry, signals=[(SIGNAL, verdict, 0)],
                             score=score, threshold=threshold))  # fmt: skip
    positive = [m for m in matches if m.bank_kind == "positive"]
    negative = [m for m in matches if m.bank_kind == "negative"]
    result = ScanResult(path=identity.path, identity=identity, status=STATUS_NO_MATCH, matches=positive, negative=negative,
                        notes=list(fp_notes))  # fmt: skip
    if negative:
        banks = sorted({m.bank for m in negative})
        result.notes.append(f"known-good in negative bank(s) {', '.join(banks)}: similarity matches are suppressed")
        for m in positive:
            if m.score is not None:  # similarity signal
                m.suppressed_by = banks[0]
        if any(m.score is None for m in positive):
            result.notes.append("an exact hash also matches a positive bank: the two banks disagree, review it")
    live = [m for m in positive if m.suppressed_by is None]
    for m in live:
        if m.weak:
            result.notes.append(f"weak match in bank {m.bank}: only a {m.strength}-bit hash ({m.signal_type}) agrees; confirm with a full hash")
    if live:
        result.status = STATUS_MATCH
    elif identity.problem:
        result.status = STATUS_QUARANTINE
        result.notes.append(f"{identity.verdict}: {identity.problem}")
    return result


def queue_matches(store: Store, result: ScanResult, *, source: str) -> None:
    """Turn each live match into a review item (an already-open identical item is reused)."""
    hashes = result.identity.hashes
    for m in result.matches:
        if m.suppressed_by:
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
    """Identify and match each file (folders are walked for model files, found by magic bytes)."""
    from consentry.indexing import is_model_candidate, walk_candidates

    registry = signal_registry()
    for target in paths:
        root = Path(target)
        if root.is_dir() and not is_model_candidate(root)[0]:
            files = [c.path for c in walk_candidates(root) if is_model_candidate(c.path)[0]]
        else:
            files = [root]
        for path in files:
            result = match_identity(store, identify(path, limits=limits, workers=workers), registry)
            if queue:
                queue_matches(store, result, source=source)
            yield result
