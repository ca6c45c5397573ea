"""What the registry hands out. Their ``repr`` shows the random id only, so a record that ends up
in a log line, a traceback or a test report does not carry the person's names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, repr=False)
class Consent:
    """Who gave consent, when (ISO 8601 UTC), for what scope, and who entered it."""

    by: str
    at: str
    scope: str
    entered_by: str

    def __repr__(self) -> str:
        return "Consent(<hidden>)"

    def as_dict(self) -> dict[str, str]:
        return {"by": self.by, "at": self.at, "scope": self.scope, "entered_by": self.entered_by}


@dataclass(frozen=True, repr=False)
class PersonRecord:
    """A protected person: ``id`` is random (uuid4 hex), never derived from the name."""

    id: str
    display_name: str
    aliases: tuple[str, ...]
    handles: tuple[str, ...]
    consent: Consent
    embeddings: list[np.ndarray] = field(default_factory=list)
    pdq: list[str] = field(default_factory=list)
    created_at: str = ""

    def __repr__(self) -> str:
        return f"PersonRecord(id={self.id!r}, <person data hidden>)"

    def names(self) -> tuple[str, ...]:
        """The display name and every alias."""
        return (self.display_name, *self.aliases)

    def as_dict(self, *, embeddings: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "display_name": self.display_name,
            "aliases": list(self.aliases),
            "handles": list(self.handles),
            "consent": self.consent.as_dict(),
            "face_embeddings": len(self.embeddings),
            "pdq": list(self.pdq),
            "created_at": self.created_at,
        }
        if embeddings:
            out["embeddings"] = [[float(x) for x in e] for e in self.embeddings]
        return out


@dataclass(frozen=True, repr=False)
class MatchRecord:
    """A person-to-model (or image) match found by likeness search, with its evidence."""

    id: int
    person_id: str
    kind: str
    target: str
    evidence: dict[str, Any]
    actor: str
    recorded_at: str

    def __repr__(self) -> str:
        return f"MatchRecord(id={self.id}, person_id={self.person_id!r}, <details hidden>)"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "person_id": self.person_id, "kind": self.kind, "target": self.target,
                "evidence": self.evidence, "actor": self.actor, "recorded_at": self.recorded_at}  # fmt: skip


@dataclass(frozen=True)
class Withdrawal:
    """The receipt of a withdrawal: when, and the audit entry that records it (no person id)."""

    at: str
    audit_seq: int
    audit_hash: str


@dataclass(frozen=True)
class RegistryStatus:
    location: str
    backend: str
    encrypted: bool
    kdf: str | None
    unlocked: bool
    people: int
    face_embeddings: int
    pdq_hashes: int
    matches: int
    audit_entries: int
    schema_version: int
    created_at: str
    registry_id: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
