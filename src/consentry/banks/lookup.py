"""Look hash values up in the banks, in whatever form people paste them.

An untyped value is tried as every signal type that accepts it — the same inference as
``consentry find``: 64 hex is SHA256, AutoV3, BLAKE3 or content_hash; 12 is the short AutoV3;
10 AutoV2; 8 AutoV1 or CRC32 (in either byte order). Plug-in signal types take part by their
own ``normalise``, so a new hash type is looked up without changing this code.

The hubs' short forms are prefixes of full ones (AutoV2 = SHA256[:10], AutoV3's 12-hex form
= AutoV3[:12]), and a bank may hold either form: a full value is also looked up by its short
forms, and a short one by prefix among the full ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from consentry.banks.signals import SignalRegistry, signal_registry
from consentry.errors import HashFormatError
from consentry.store import Store
from consentry.store.banks import SignalHit

# full-length type -> (short type, short length): the short forms derived from a full value
SHORT_FORMS: dict[str, tuple[tuple[str, int], ...]] = {"sha256": (("autov2", 10),), "autov3": (("autov3", 12),)}
# (short type, short length) -> full-length type a short value is a prefix of
PREFIX_OF: dict[tuple[str, int], str] = {short: full for full, shorts in SHORT_FORMS.items() for short in shorts}


@dataclass
class LookupResult:
    """What one looked-up value matched; ``error`` says why a value could not be looked up."""

    query: str
    signal: str | None  # the type the caller named, or None when inferred
    tried: list[str] = field(default_factory=list)  # signal types the value was looked up as
    matches: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"query": self.query, "signal": self.signal, "tried": self.tried, "matches": self.matches, "error": self.error}


def candidates(text: str, signal: str | None = None, registry: SignalRegistry | None = None) -> list[tuple[str, str]]:
    """The (signal type, normalised value) pairs ``text`` may be. Raises HashFormatError if none."""
    registry = registry or signal_registry()
    if signal:
        signal_type = registry.get(signal)
        pairs = [(signal_type.name, signal_type.normalise(text))]
    else:
        pairs = []
        for signal_type in registry:
            try:
                pairs.append((signal_type.name, signal_type.normalise(text)))
            except HashFormatError:
                continue
        if not pairs:
            raise HashFormatError(f"{str(text).strip()[:80]!r} is no hash form consentry knows "
                                  "(hex of 8, 10, 12 or 64 digits, or name the signal type)")  # fmt: skip
    return pairs + [("crc32", _swap_bytes(v)) for t, v in pairs if t == "crc32" and _swap_bytes(v) != v]


def lookup(store: Store, queries: Iterable[str | tuple[str | None, str]], registry: SignalRegistry | None = None) -> list[LookupResult]:
    """Look each query up in every enabled bank. A query is a value, or ``(signal type, value)``.

    A bad value gets its own ``error`` instead of failing the batch."""
    registry = registry or signal_registry()
    results = []
    entries: dict[int, Any] = {}  # an entry matched by several queries is read once
    for query in queries:
        signal, text = query if isinstance(query, tuple) else (None, query)
        result = LookupResult(query=text, signal=signal)
        results.append(result)
        try:
            pairs = candidates(text, signal, registry)
        except HashFormatError as exc:
            result.error = str(exc)
            continue
        result.tried = list(dict.fromkeys(t for t, _ in pairs))
        for hit in _hits(store, pairs):
            if hit.entry_id not in entries:
                entries[hit.entry_id] = store.banks.entry(hit.entry_id)
            entry = entries[hit.entry_id]
            result.matches.append({
                "bank": hit.bank, "bank_kind": hit.bank_kind, "signal": hit.signal_type, "value": hit.value,
                "entry": None if entry is None else {
                    "id": entry.id, "name": entry.name, "url": entry.url, "labels": entry.labels,
                    "note": entry.note, "provenance": entry.provenance, "added_at": entry.added_at,
                },
            })  # fmt: skip
    return results


def _hits(store: Store, pairs: list[tuple[str, str]]) -> list[SignalHit]:
    """Bank signals equal to a pair or to its short forms, or (for a short value) starting with it."""
    exact = list(pairs)
    prefixes = []
    for signal_type, value in pairs:
        exact += [(short, value[:n]) for short, n in SHORT_FORMS.get(signal_type, ()) if len(value) > n]
        full = PREFIX_OF.get((signal_type, len(value)))
        if full:
            prefixes.append((full, value))
    hits = store.banks.lookup(exact)
    for full, prefix in prefixes:
        hits += _prefix_hits(store, full, prefix)
    return list(dict.fromkeys(hits))


def _prefix_hits(store: Store, signal_type: str, prefix: str) -> list[SignalHit]:
    # A range scan on the (signal_type, value) index: 'G' sorts after every hex digit.
    # (Belongs in BankRepository next to ``lookup``; kept here while that file is being changed.)
    rows = store.db.query(
        "SELECT s.entry_id, s.signal_type, s.value, b.name, b.kind, b.enabled FROM bank_signals s"
        " JOIN banks b ON b.id = s.bank_id WHERE s.signal_type = ? AND s.value >= ? AND s.value < ? AND b.enabled = 1",
        (signal_type, prefix, prefix + "G"),
    )
    return [SignalHit(bank=r["name"], bank_kind=r["kind"], bank_enabled=bool(r["enabled"]), entry_id=r["entry_id"],
                      signal_type=r["signal_type"], value=r["value"]) for r in rows]  # fmt: skip


def _swap_bytes(hex8: str) -> str:
    """CRC32 is shown in Civitai's byte order and in the conventional one; banks hold Civitai's."""
    return bytes.fromhex(hex8)[::-1].hex().upper()
