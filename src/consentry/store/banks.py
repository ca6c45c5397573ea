"""Persistence of banks, their entries and signals. Values are validated in :mod:`consentry.banks`
(which normalises every signal before it gets here); the bank's own settings — its name and
thresholds — are checked here, the one place every way of making a bank passes through."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from consentry.errors import ConsentryError
from consentry.store.database import Database, integrity_errors
from consentry.store.records import from_json, to_json, utc_now


class BankNotFound(ConsentryError, KeyError):
    exit_code = 2

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no bank named {name!r}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


ENTRY_FINGERPRINT_KEY = "bank-entry:"  # a bank entry's fingerprint lives in the fingerprints table under "bank-entry:<id>"
BANK_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # path-safe: every bank is reachable as /v1/banks/<name>
_BANK_NAME = re.compile(BANK_NAME)


class InvalidBankName(ConsentryError, ValueError):
    exit_code = 2


class BankExists(ConsentryError):
    exit_code = 2


@dataclass
class Bank:
    id: int
    name: str
    kind: str  # positive | negative
    labels: list[str] = field(default_factory=list)
    description: str | None = None
    source: str | None = None
    enabled: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""
    entry_count: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> "Bank":
        return cls(
            id=row["id"], name=row["name"], kind=row["kind"], labels=from_json(row["labels"], []),
            description=row["description"], source=row["source"], enabled=bool(row["enabled"]),
            thresholds=from_json(row["thresholds"], {}), created_at=row["created_at"], updated_at=row["updated_at"],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name, "kind": self.kind, "labels": self.labels, "description": self.description,
            "source": self.source, "enabled": self.enabled, "thresholds": self.thresholds,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip
        if self.entry_count is not None:
            out["entry_count"] = self.entry_count
        return out


@dataclass
class BankEntry:
    """One known model in a bank: what it is called, where it was, and its signals."""

    id: int | None
    bank_name: str
    signals: dict[str, str]  # signal type -> normalised value
    name: str | None = None
    url: str | None = None
    labels: list[str] = field(default_factory=list)
    note: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # who/where/when it came from
    added_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "url": self.url, "labels": self.labels, "note": self.note,
            "provenance": self.provenance, "added_at": self.added_at, "signals": dict(self.signals),
        }  # fmt: skip


@dataclass(frozen=True)
class SignalHit:
    """A bank signal equal to a value looked up."""

    bank: str
    bank_kind: str
    bank_enabled: bool
    entry_id: int
    signal_type: str
    value: str


_BANK_FIELDS = ("labels", "description", "source", "enabled", "thresholds", "kind")


def _checked_thresholds(thresholds: Mapping[str, Any] | None) -> dict[str, float]:
    """Every way a bank is made or changed passes here (the similarity signals are plug-ins,
    so they are asked, on first use, which thresholds exist and what range each takes)."""
    if not thresholds:
        return {}
    from consentry.banks.signals import check_thresholds

    return check_thresholds(thresholds)


class BankRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- banks ---------------------------------------------------------------------------------

    def create(self, name: str, *, kind: str = "positive", labels: Sequence[str] = (), description: str | None = None,
               source: str | None = None, enabled: bool = True, thresholds: dict[str, float] | None = None) -> Bank:  # fmt: skip
        if not isinstance(name, str) or not _BANK_NAME.match(name):
            raise InvalidBankName(f"bank name {str(name)[:120]!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a "
                                  "letter or digit (it is part of the bank's URL)")  # fmt: skip
        now = utc_now()
        thresholds = _checked_thresholds(thresholds)
        try:
            with self.db.transaction():
                self.db.insert(
                    "INSERT INTO banks (name, kind, labels, description, source, enabled, thresholds, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, kind, to_json(list(labels)), description, source, int(enabled), to_json(thresholds or {}), now, now),
                )
        except integrity_errors():
            raise BankExists(f"a bank named {name!r} already exists") from None
        return self.get(name)

    def get(self, name: str) -> Bank:
        row = self.db.query_one("SELECT * FROM banks WHERE name = ?", (name,))
        if row is None:
            raise BankNotFound(name)
        return Bank.from_row(row)

    def list(self, *, with_counts: bool = True) -> list[Bank]:
        banks = [Bank.from_row(r) for r in self.db.query("SELECT * FROM banks ORDER BY name")]
        if with_counts:
            counts = {r["bank_id"]: r["n"] for r in self.db.query("SELECT bank_id, count(*) AS n FROM bank_entries GROUP BY bank_id")}
            for bank in banks:
                bank.entry_count = counts.get(bank.id, 0)
        return banks

    def update(self, name: str, **changes: Any) -> Bank:
        unknown = set(changes) - set(_BANK_FIELDS)
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)} of a bank")
        bank = self.get(name)
        sets, args = [], []
        for key, value in changes.items():
            if value is None and key not in ("description", "source"):
                continue
            if key in ("labels", "thresholds"):
                value = to_json(list(value) if key == "labels" else _checked_thresholds(value))
            elif key == "enabled":
                value = int(bool(value))
            sets.append(f"{key} = ?")
            args.append(value)
        if sets:
            with self.db.transaction():
                self.db.execute(f"UPDATE banks SET {', '.join(sets)}, updated_at = ? WHERE id = ?", (*args, utc_now(), bank.id))
        return self.get(name)

    def delete(self, name: str) -> None:
        bank = self.get(name)
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM fingerprints WHERE path IN (SELECT ? || CAST(id AS TEXT) FROM bank_entries WHERE bank_id = ?)",
                (ENTRY_FINGERPRINT_KEY, bank.id),
            )
            # review items stay (the decisions are history) but let go of the entry: its id may be reused
            self.db.execute("UPDATE review_items SET entry_id = NULL, bank_id = NULL WHERE bank_id = ?", (bank.id,))
            self.db.execute("DELETE FROM mirrors WHERE bank_id = ?", (bank.id,))
            self.db.execute("DELETE FROM bank_signals WHERE bank_id = ?", (bank.id,))
            self.db.execute("DELETE FROM bank_entries WHERE bank_id = ?", (bank.id,))
            self.db.execute("DELETE FROM banks WHERE id = ?", (bank.id,))

    # --- entries -------------------------------------------------------------------------------

    def add_entry(self, bank: Bank, entry: BankEntry, *, import_id: int | None = None) -> int | None:
        """Add an entry unless one of its signals is already in the bank (returns None then)."""
        if not entry.signals:
            raise ValueError("an entry needs at least one signal")
        with self.db.transaction():
            if self.db.dialect == "postgresql":
                # Serialise adders to this bank, as SQLite's BEGIN IMMEDIATE does, so two clients
                # adding the same model cannot both pass the check below and one then fail on the
                # unique signal. NO KEY UPDATE leaves the foreign-key checks of other writers alone.
                self.db.execute("SELECT id FROM banks WHERE id = ? FOR NO KEY UPDATE", (bank.id,))
            if self.existing_signals(bank, entry.signals.items()):
                return None
            entry_id = self.db.insert(
                "INSERT INTO bank_entries (bank_id, name, url, labels, note, provenance, added_at, import_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (bank.id, entry.name, entry.url, to_json(entry.labels), entry.note, to_json(entry.provenance),
                 entry.added_at or utc_now(), import_id),
            )  # fmt: skip
            self.db.executemany(
                "INSERT INTO bank_signals (bank_id, entry_id, signal_type, value) VALUES (?, ?, ?, ?)",
                [(bank.id, entry_id, t, v) for t, v in entry.signals.items()],
            )
        return entry_id

    def existing_signals(self, bank: Bank, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        found = []
        for signal_type, value in pairs:
            if self.db.query_one(
                "SELECT 1 AS x FROM bank_signals WHERE bank_id = ? AND signal_type = ? AND value = ?", (bank.id, signal_type, value)
            ):
                found.append((signal_type, value))
        return found

    def entries(self, bank: Bank, *, limit: int | None = None, offset: int = 0) -> list[BankEntry]:
        sql = "SELECT * FROM bank_entries WHERE bank_id = ? ORDER BY id"
        args: list[Any] = [bank.id]
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        rows = self.db.query(sql, args)
        return self._with_signals(bank.name, rows)

    def entry(self, entry_id: int) -> BankEntry | None:
        row = self.db.query_one(
            "SELECT e.*, b.name AS bank_name FROM bank_entries e JOIN banks b ON b.id = e.bank_id WHERE e.id = ?", (entry_id,)
        )
        return self._with_signals(row["bank_name"], [row])[0] if row else None

    def _with_signals(self, bank_name: str, rows: Sequence[Any]) -> list[BankEntry]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        signals: dict[int, dict[str, str]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for s in self.db.query(f"SELECT entry_id, signal_type, value FROM bank_signals WHERE entry_id IN ({marks})", chunk):
                signals[s["entry_id"]][s["signal_type"]] = s["value"]
        return [
            BankEntry(
                id=r["id"], bank_name=bank_name, signals=signals[r["id"]], name=r["name"], url=r["url"],
                labels=from_json(r["labels"], []), note=r["note"], provenance=from_json(r["provenance"], {}),
                added_at=r["added_at"],
            )  # fmt: skip
            for r in rows
        ]

    # --- lookup --------------------------------------------------------------------------------

    def lookup(self, pairs: Sequence[tuple[str, str]], *, enabled_only: bool = True) -> list[SignalHit]:
        """Every bank signal equal to one of the ``(signal_type, value)`` pairs."""
        hits: list[SignalHit] = []
        sql = (
            "SELECT s.entry_id, s.signal_type, s.value, b.name, b.kind, b.enabled FROM bank_signals s"
            " JOIN banks b ON b.id = s.bank_id WHERE s.signal_type = ? AND s.value = ?"
        )
        if enabled_only:
            sql += " AND b.enabled = 1"
        for signal_type, value in dict.fromkeys(pairs):
            for r in self.db.query(sql, (signal_type, value)):
                hits.append(SignalHit(bank=r["name"], bank_kind=r["kind"], bank_enabled=bool(r["enabled"]),
                                      entry_id=r["entry_id"], signal_type=r["signal_type"], value=r["value"]))  # fmt: skip
        return hits
