"""Persistence of the mirrors found for banked models: one row per (entry, URL), so a later
run can tell what it has not reported before.

A hub file's URL can change while the file stays (a Hugging Face URL is pinned to the repo's
commit, which moves with every push): a mirror with a ``file_remote_id`` is the same mirror as
an earlier row of the same entry, hub and remote id, whose URL is brought up to date."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from consentry.store.database import Database
from consentry.store.records import from_json, to_json, utc_now


@dataclass
class StoredMirror:
    entry_id: int
    hub: str
    url: str
    file_remote_id: str | None
    matched_by: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    hub_seen: str | None = None  # when the hub crawl last saw the file (None: not crawled, e.g. archive-only)
    first_seen: str = ""
    last_seen: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MirrorRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, bank_id: int, mirrors: Iterable[StoredMirror]) -> list[StoredMirror]:
        """Upsert this run's mirrors; returns them with ``first_seen`` as stored, so a mirror
        first recorded by this run has ``first_seen == last_seen``."""
        now = utc_now()
        rows = list(mirrors)
        with self.db.transaction():
            for m in rows:
                if m.file_remote_id is not None:
                    self._follow_moved_url(m)
                self.db.execute(
                    "INSERT INTO mirrors (bank_id, entry_id, hub, url, file_remote_id, matched_by, evidence, hub_seen,"
                    " first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entry_id, url) DO UPDATE SET"
                    " hub = excluded.hub, file_remote_id = excluded.file_remote_id, matched_by = excluded.matched_by,"
                    " evidence = excluded.evidence, hub_seen = excluded.hub_seen, last_seen = excluded.last_seen",
                    (bank_id, m.entry_id, m.hub, m.url, m.file_remote_id, m.matched_by, to_json(m.evidence), m.hub_seen,
                     now, now),
                )  # fmt: skip
        return self.for_bank(bank_id, urls={(m.entry_id, m.url) for m in rows}) if rows else []

    def _follow_moved_url(self, m: StoredMirror) -> None:
        """Point the row recorded for this hub file under an older URL at its current URL."""
        rows = self.db.query(
            "SELECT id, url FROM mirrors WHERE entry_id = ? AND hub = ? AND file_remote_id = ? ORDER BY first_seen",
            (m.entry_id, m.hub, m.file_remote_id),
        )  # fmt: skip
        if not rows or any(r["url"] == m.url for r in rows):
            return
        self.db.execute("UPDATE mirrors SET url = ? WHERE id = ?", (m.url, rows[0]["id"]))

    def for_bank(self, bank_id: int, *, urls: set[tuple[int, str]] | None = None) -> list[StoredMirror]:
        rows = self.db.query("SELECT * FROM mirrors WHERE bank_id = ? ORDER BY entry_id, matched_by, url", (bank_id,))
        out = [_mirror(r) for r in rows]
        return [m for m in out if (m.entry_id, m.url) in urls] if urls is not None else out

    def count(self, bank_id: int | None = None) -> int:
        sql, args = "SELECT count(*) AS n FROM mirrors", ()
        if bank_id is not None:
            sql, args = sql + " WHERE bank_id = ?", (bank_id,)
        return int(self.db.query_one(sql, args)["n"])


def _mirror(row: Any) -> StoredMirror:
    return StoredMirror(
        entry_id=row["entry_id"], hub=row["hub"], url=row["url"], file_remote_id=row["file_remote_id"],
        matched_by=row["matched_by"], evidence=from_json(row["evidence"], []), hub_seen=row["hub_seen"],
        first_seen=row["first_seen"], last_seen=row["last_seen"],
    )  # fmt: skip
