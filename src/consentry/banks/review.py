"""Decisions on the review queue: a person confirms or dismisses each match; an appeal reopens it.

Every decision is recorded with who, when and why, in the same transaction as the status
change, so the record and the state never disagree. A dismissal can vouch for the file by
adding it to a negative (known-good) bank, so the next upload of the same file is recognised.

    open --confirm--> confirmed --appeal--> open
    open --dismiss--> dismissed --appeal--> open
"""

from __future__ import annotations

from typing import Any

from consentry.banks.matching import WEAK_BITS
from consentry.banks.signals import SignalRegistry, is_typed, signal_registry
from consentry.errors import ConsentryError, HashFormatError
from consentry.formats.tensors import Verdict
from consentry.identity.identify import IMAGE_KEYS, ModelIdentity
from consentry.store import Store
from consentry.store.banks import BankEntry
from consentry.store.records import utc_now
from consentry.store.reviews import ReviewItem

ACTIONS: tuple[str, ...] = ("confirm", "dismiss", "appeal")
STATUSES: tuple[str, ...] = ("open", "confirmed", "dismissed")
# action -> (statuses it may start from, status it leads to)
_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "confirm": (frozenset({"open"}), "confirmed"),
    "dismiss": (frozenset({"open"}), "dismissed"),
    "appeal": (frozenset({"confirmed", "dismissed"}), "open"),
}
MAX_REASON = 4000


class ReviewError(ConsentryError):
    """A decision that cannot be taken as asked (bad action, missing reason, wrong bank)."""

    exit_code = 2


class ReviewItemNotFound(ReviewError, KeyError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"no review item #{item_id}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class InvalidTransition(ReviewError):
    """The item's current status does not allow the action (e.g. confirming a confirmed item)."""


def decide(store: Store, item_id: int, action: str, *, actor: str, reason: str, negative_bank: str | None = None,
           registry: SignalRegistry | None = None) -> ReviewItem:  # fmt: skip
    """Take one decision on a review item and return the item with its full decision history."""
    if action not in ACTIONS:
        raise ReviewError(f"unknown action {action!r} (actions: {', '.join(ACTIONS)})")
    reason = (reason or "").strip()
    actor = (actor or "").strip()
    if not reason:
        raise ReviewError("a decision needs a reason: it is kept with the decision for whoever reviews it later")
    if len(reason) > MAX_REASON:
        raise ReviewError(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
    if not actor:
        raise ReviewError("a decision needs an actor: who is deciding")
    if negative_bank and action != "dismiss":
        raise ReviewError("only a dismissal can add the file to a negative bank")

    allowed, new_status = _TRANSITIONS[action]
    now = utc_now()
    with store.transaction():
        item = store.reviews.get(item_id)
        if item is None:
            raise ReviewItemNotFound(item_id)
        if item.status not in allowed:
            raise InvalidTransition(_refusal(item, action))
        if action == "appeal":
            duplicate = store.reviews.open_duplicate(item)
            if duplicate is not None:
                raise InvalidTransition(f"review item #{duplicate} is already open for the same match: decide that one")
        if not store.reviews.set_status(item.id, item.status, new_status, now):
            raise InvalidTransition(f"review item #{item.id} was decided by someone else meanwhile; reload it")
        if negative_bank:
            add_to_negative_bank(store, item, negative_bank, actor=actor, reason=reason, registry=registry)
        store.reviews.record_decision(item.id, action=action, actor=actor, reason=reason, negative_bank=negative_bank,
                                      decided_at=now)  # fmt: skip
    result = store.reviews.get(item_id)
    assert result is not None
    return result


def confirm(store: Store, item_id: int, *, actor: str, reason: str) -> ReviewItem:
    """The match is right: the file is the banked model."""
    return decide(store, item_id, "confirm", actor=actor, reason=reason)


def dismiss(store: Store, item_id: int, *, actor: str, reason: str, negative_bank: str | None = None) -> ReviewItem:
    """The match is wrong; with ``negative_bank``, also vouch for the file as known-good."""
    return decide(store, item_id, "dismiss", actor=actor, reason=reason, negative_bank=negative_bank)


def appeal(store: Store, item_id: int, *, actor: str, reason: str) -> ReviewItem:
    """Reopen a confirmed or dismissed item (an uploader's appeal, or a reviewer's second look).

    A negative-bank entry added by the dismissal stays: removing it is a bank decision."""
    return decide(store, item_id, "appeal", actor=actor, reason=reason)


def add_to_negative_bank(store: Store, item: ReviewItem, bank_name: str, *, actor: str, reason: str,
                         registry: SignalRegistry | None = None) -> int | None:  # fmt: skip
    """Add the item's file to a negative bank by the hashes stored with the item.

    Only signals of at least WEAK_BITS are kept: a 32-bit CRC or AutoV1 vouches for one file
    but collides by chance with others, so it would mark unrelated files known-good.
    Returns the new entry's id, or None if the bank already holds the file."""
    bank = store.banks.get(bank_name)
    if bank.kind != "negative":
        raise ReviewError(f"bank {bank.name!r} is a {bank.kind} bank: a dismissal can only add to a negative bank")
    signals = _strong_signals(item.file_identity, registry or signal_registry())
    if not signals:
        raise ReviewError(f"review item #{item.id} has no stored hash strong enough to bank")
    provenance: dict[str, Any] = {
        "added_from": "review dismissal", "review_item": item.id, "actor": actor, "reason": reason,
        "matched_bank": item.bank_name, "matched_signal": item.signal_type, "file_name": item.file_name,
    }  # fmt: skip
    entry = BankEntry(id=None, bank_name=bank.name, signals=signals, name=item.file_name, provenance=provenance)
    return store.banks.add_entry(bank, entry)


def _strong_signals(identity: dict[str, Any], registry: SignalRegistry) -> dict[str, str]:
    """The exact hashes of the stored identity, and the typed similarity values (an image's PDQ
    hash, when its quality allows banking it), so a dismissed image vouches for its copies too."""
    signals = {}
    for signal_type in registry:
        raw = identity.get(signal_type.name)
        if not raw:
            continue
        try:
            value = signal_type.normalise(raw)
        except HashFormatError:
            continue
        if signal_type.strength(value) >= WEAK_BITS:
            signals[signal_type.name] = value
    stored = _stored_identity(identity)
    for similarity in registry.similarity():
        if is_typed(similarity):
            for value in similarity.values_for(stored)[:1]:
                signals[similarity.name] = value
    return signals


def _stored_identity(identity: dict[str, Any]) -> ModelIdentity:
    """The identity a review item keeps (``ModelIdentity.as_json``), enough for ``values_for``."""
    return ModelIdentity(path=str(identity.get("path") or ""), size=identity.get("size"), format=str(identity.get("format") or ""),
                         verdict=Verdict.CLEAN if identity.get("verdict") == "clean" else Verdict.QUARANTINE,
                         extra={k: identity[k] for k in IMAGE_KEYS if identity.get(k) is not None})  # fmt: skip


def _refusal(item: ReviewItem, action: str) -> str:
    if action == "appeal":
        return f"review item #{item.id} is open: only a confirmed or dismissed item can be appealed"
    return f"review item #{item.id} is already {item.status}: {action} needs an open item (appeal it to reopen)"
