"""The registry's audit log: one entry per access, hash-chained so that an edit shows.

Each entry holds who (``actor``), when (``at``), ``action``, ``purpose``, the random ids of the
people touched (``person_ids``, compact JSON) and a ``note`` — never a name or any other person
data. Its hash covers its own fields and the previous entry's hash:

    entry_hash = SHA-256( b"consentry-registry-audit-v1\\n"
                          + for each of seq, at, actor, action, purpose, person_ids, note, prev_hash:
                                u32be(len(utf8(field))) || utf8(field) )

with ``seq`` in decimal, the fields exactly as stored, and the first entry's ``prev_hash`` =
SHA-256(``"consentry-registry-audit-genesis:" + registry_id``) in hex. Sequence numbers start at
1 and have no gaps, so a deleted entry breaks the chain as surely as an altered one. Removing
the *last* entries cannot be seen from inside the log: keep the head hash somewhere else
(``registry audit --verify`` prints it) and give it back as the anchor.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

AUDIT_PREFIX = b"consentry-registry-audit-v1\n"
WITHDRAWN_NOTE = "a person record was withdrawn"


def genesis_hash(registry_id: str) -> str:
    return hashlib.sha256(b"consentry-registry-audit-genesis:" + registry_id.encode("ascii")).hexdigest()


def encode_ids(person_ids: Sequence[str]) -> str:
    return json.dumps(list(person_ids), separators=(",", ":"))


def entry_hash(seq: int, at: str, actor: str, action: str, purpose: str, person_ids: str, note: str, prev_hash: str) -> str:
    h = hashlib.sha256(AUDIT_PREFIX)
    for value in (str(seq), at, actor, action, purpose, person_ids, note, prev_hash):
        data = value.encode("utf-8")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    purpose: str
    person_ids: tuple[str, ...]
    note: str
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        try:
            ids = tuple(json.loads(row["person_ids"]))
        except ValueError:
            ids = ()
        return cls(int(row["seq"]), row["at"], row["actor"], row["action"], row["purpose"], ids, row["note"],
                   row["prev_hash"], row["entry_hash"])  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action, "purpose": self.purpose,
                "person_ids": list(self.person_ids), "note": self.note, "prev_hash": self.prev_hash,
                "entry_hash": self.entry_hash}  # fmt: skip


@dataclass(frozen=True)
class AuditCheck:
    """The outcome of :meth:`Registry.verify_audit`: ``ok``, how many entries were checked, the
    head hash (the last entry's), and for a broken chain the first bad entry and why."""

    ok: bool
    entries: int
    head: str | None
    bad_seq: int | None = None
    problem: str | None = None
    anchors_found: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": self.head, "bad_seq": self.bad_seq, "problem": self.problem}


def verify_rows(rows: Sequence[Any], registry_id: str, anchor: str | None = None) -> AuditCheck:
    """Check the chain over the raw rows (ordered by seq), field by field as stored."""
    prev = genesis_hash(registry_id)
    expected_seq = 1
    seen_anchor = anchor is None
    for n, row in enumerate(rows):
        seq = int(row["seq"])
        if seq != expected_seq:
            missing = f"entry #{expected_seq}" if seq > expected_seq else f"entry #{seq} (out of order)"
            return AuditCheck(False, n, prev, bad_seq=expected_seq, problem=f"audit log: {missing} is missing: entries were deleted or reordered")
        if row["prev_hash"] != prev:
            return AuditCheck(False, n, prev, bad_seq=seq,
                              problem=f"audit log: entry #{seq} does not follow entry #{seq - 1}: the chain was broken (an entry was altered, removed or inserted)")  # fmt: skip
        recomputed = entry_hash(seq, row["at"], row["actor"], row["action"], row["purpose"], row["person_ids"], row["note"], row["prev_hash"])
        if recomputed != row["entry_hash"]:
            return AuditCheck(False, n, prev, bad_seq=seq, problem=f"audit log: entry #{seq} was altered: its hash does not match its contents")
        prev = row["entry_hash"]
        expected_seq += 1
        if anchor is not None and prev == anchor:
            seen_anchor = True
    count = expected_seq - 1
    if not seen_anchor:
        return AuditCheck(False, count, prev if count else None, bad_seq=None,
                          problem=f"audit log: the anchored entry {anchor} is not in the chain: the log was truncated or rewritten")  # fmt: skip
    return AuditCheck(True, count, prev if count else None)
