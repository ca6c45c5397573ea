"""Persistence of the review queue: one item per (file, bank signal) match, and every
decision taken on it (who, when, why)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from consentry.store.database import Database
from consentry.store.records import from_json, to_json, utc_now


@dataclass
class ReviewItem:
    id: int
    status: str  # open | confirmed | dismissed
    file_name: str | None
    file_sha256: str | None
    file_size: int | None
    file_identity: dict[str, Any]
    bank_name: str
    entry_id: int | None
    signal_type: str
    signal_value: str
    score: float | None
    threshold: float | None
    source: str | None
    created_at: str
    updated_at: str
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Any) -> "ReviewItem":
        return cls(
            id=row["id"], status=row["status"], file_name=row["file_name"], file_sha256=row["file_sha256"],
            file_size=row["file_size"], file_identity=from_json(row["file_identity"], {}), bank_name=row["bank_name"],
            entry_id=row["entry_id"], signal_type=row["signal_type"], signal_value=row["signal_value"],
            score=row["score"], threshold=row["threshold"], source=row["source"],
            created_at=row["created_at"], updated_at=row["updated_at"],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


class ReviewRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def open_item(self, *, file_name: str | None, file_sha256: str | None, file_size: int | None,
                  file_identity: dict[str, Any], bank_id: int | None, bank_name: str, entry_id: int | None,
                  signal_type: str, signal_value: str, score: float | None = None, threshold: float | None = None,
                  source: str | None = None) -> int | None:  # fmt: skip
        """Queue a match for review unless the same one is already open; returns the item id."""
        now = utc_now()
        find_open = (
            "SELECT id FROM review_items WHERE status = 'open' AND file_sha256 IS ? AND bank_name = ?"
            " AND signal_type = ? AND signal_value = ?"
            if self.db.dialect == "sqlite"
            else "SELECT id FROM review_items WHERE status = 'open' AND file_sha256 IS NOT DISTINCT FROM ?"
            " AND bank_name = ? AND signal_type = ? AND signal_value = ?"
        )
        key = (file_sha256, bank_name, signal_type, signal_value)
        with self.db.transaction():
            existing = self.db.query_one(find_open, key)
            if existing:
                return int(existing["id"])
            # On PostgreSQL a concurrent scan can insert the same item between the SELECT and
            # here (SQLite's BEGIN IMMEDIATE serialises writers, PostgreSQL does not): the partial
            # unique index review_items_open_once then skips our row, and we return theirs.
            item_id = self.db.insert(
                "INSERT INTO review_items (status, file_name, file_sha256, file_size, file_identity, bank_id, bank_name,"
                " entry_id, signal_type, signal_value, score, threshold, source, created_at, updated_at)"
                " VALUES ('open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (file_name, file_sha256, file_size, to_json(file_identity), bank_id, bank_name, entry_id, signal_type,
                 signal_value, score, threshold, source, now, now),
            )  # fmt: skip
            if item_id is None:
                item_id = int(self.db.query_one(find_open, key)["id"])
            return item_id

    def get(self, item_id: int) -> ReviewItem | None:
        row = self.db.query_one("SELECT * FROM review_items WHERE id = ?", (item_id,))
        if row is None:
            return None
        item = ReviewItem.from_row(row)
        item.decisions = [
            {k: d[k] for k in ("action", "actor", "reason", "negative_bank", "decided_at")}
            for d in self.db.query("SELECT * FROM review_decisions WHERE item_id = ? ORDER BY id", (item_id,))
        ]
        return item

    def list(self, status: str | None = None, *, limit: int = 100, offset: int = 0) -> list[ReviewItem]:
        sql, args = "SELECT * FROM review_items", []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        return [ReviewItem.from_row(r) for r in self.db.query(sql, (*args, limit, offset))]

    # --- decisions (validation and the allowed transitions live in consentry.banks.review) -----

    def set_status(self, item_id: int, expected: str, status: str, now: str) -> bool:
        """Move an item from ``expected`` to ``status``; False if it was no longer ``expected``
        (a concurrent decision won), so two reviewers cannot both decide the same item."""
        cur = self.db.execute(
            "UPDATE review_items SET status = ?, updated_at = ? WHERE id = ? AND status = ?", (status, now, item_id, expected)
        )
        return cur.rowcount == 1

    def record_decision(self, item_id: int, *, action: str, actor: str, reason: str, negative_bank: str | None,
                        decided_at: str) -> int:  # fmt: skip
        return self.db.insert(
            "INSERT INTO review_decisions (item_id, action, actor, reason, negative_bank, decided_at) VALUES (?, ?, ?, ?, ?, ?)",
            (item_id, action, actor, reason, negative_bank, decided_at),
        )

    def open_duplicate(self, item: ReviewItem) -> int | None:
        """Another open item for the same (file, bank, signal), which reopening ``item`` would duplicate."""
        same_file = "file_sha256 IS ?" if self.db.dialect == "sqlite" else "file_sha256 IS NOT DISTINCT FROM ?"
        row = self.db.query_one(
            f"SELECT id FROM review_items WHERE status = 'open' AND id <> ? AND {same_file}"
            " AND bank_name = ? AND signal_type = ? AND signal_value = ?",
            (item.id, item.file_sha256, item.bank_name, item.signal_type, item.signal_value),
        )
        return int(row["id"]) if row else None

    def count(self, status: str | None = None) -> int:
        sql, args = "SELECT count(*) AS n FROM review_items", []
        if status:
            sql += " WHERE status = ?"
            args.append(status)
        return int(self.db.query_one(sql, args)["n"])
