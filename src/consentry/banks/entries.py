"""Adding models to banks: from a model file (all its signals) or from typed hash values."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from consentry.banks.signals import SignalRegistry, is_typed, signal_registry
from consentry.errors import ConsentryError, HashFormatError, ModelFileUnreadable
from consentry.identity.identify import ModelIdentity, identify, identify_image
from consentry.store import Store
from consentry.store.banks import BankEntry


def entry_from_identity(identity: ModelIdentity, bank_name: str, registry: SignalRegistry | None = None, **fields: Any) -> BankEntry:
    """A bank entry carrying every signal the file has (the first value of each type)."""
    registry = registry or signal_registry()
    signals = {}
    for signal_type in registry:
        values = signal_type.values_for(identity)
        if values:
            signals[signal_type.name] = values[0]
    for similarity in registry.similarity():  # typed similarity values (an image's PDQ) go in with the hashes
        values_for = getattr(similarity, "values_for", None)
        values = values_for(identity) if is_typed(similarity) and callable(values_for) else []
        if values:
            signals[similarity.name] = values[0]
    return BankEntry(id=None, bank_name=bank_name, signals=signals, **fields)


def add_model_file(store: Store, bank_name: str, path: str | os.PathLike[str], *, name: str | None = None,
                   url: str | None = None, note: str | None = None, labels: list[str] | None = None,
                   actor: str | None = None, registry: SignalRegistry | None = None) -> tuple[int | None, BankEntry]:  # fmt: skip
    """Identify ``path`` and add it to the bank. Returns (entry id or None if already there, entry).

    Every exact signal the file has goes into the entry; every similarity signal (the weight
    fingerprint) keeps what it needs, and says so in the returned entry's provenance.
    An image file (sniffed by its bytes) is banked by its file hashes and its PDQ hash.
    A file that is malformed or could not be proven safe can still be banked by its bytes:
    its byte hashes are exactly what re-uploads of it will carry."""
    registry = registry or signal_registry()
    bank = store.banks.get(bank_name)
    identity = identify_image(Path(path)) or identify(Path(path))
    if isinstance(identity.error, ModelFileUnreadable) or identity.hashes is None:
        raise ConsentryError(f"{path}: {identity.problem or 'cannot read'}")
    added_from = "image file" if identity.extra else "model file"
    provenance = {"added_from": added_from, "file_name": Path(path).name, "actor": actor,
                  "verdict": str(identity.verdict), "format": identity.format}  # fmt: skip
    entry = entry_from_identity(identity, bank.name, registry, name=name or Path(path).name, url=url, note=note,
                                labels=list(labels or []), provenance=provenance)  # fmt: skip
    entry_id = store.banks.add_entry(bank, entry)
    if entry_id is not None:
        for similarity in registry.similarity():
            kept = similarity.remember(store, entry_id, Path(path), identity)
            if kept is not None:
                entry.provenance[similarity.name] = kept
    return entry_id, entry


def normalise_signals(raw: Mapping[str, str], registry: SignalRegistry | None = None) -> dict[str, str]:
    """Validate typed values (``{"sha256": "abc..."}``) into canonical form; raises on any bad one."""
    registry = registry or signal_registry()
    out: dict[str, str] = {}
    for given, value in raw.items():
        if value in (None, ""):
            continue
        signal = registry.get(given)
        canonical = signal.normalise(value)
        if out.get(signal.name, canonical) != canonical:  # "SHA256" and "sha256" are one signal
            raise HashFormatError(f"two different {signal.name} values in one entry")
        out[signal.name] = canonical
    return out
