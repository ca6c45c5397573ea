"""Persistence of weight fingerprints and of the base models checkpoints are measured against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from consentry.store.database import Database, iter_vector_rows
from consentry.store.records import utc_now


@dataclass(frozen=True)
class StoredFingerprint:
    id: int
    path: str
    sha256: str | None
    content_hash: str | None
    kind: str
    family: str | None
    base_name: str | None
    module_count: int
    created_at: str


@dataclass(frozen=True)
class BaseModel:
    name: str
    path: str
    sha256: str | None
    content_hash: str | None
    family: str | None
    added_at: str


class FingerprintRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def any_under(self, prefix: str) -> bool:
        """Whether any fingerprint's key starts with ``prefix`` (e.g. any bank entry has one)."""
        return self.db.query_one("SELECT 1 AS x FROM fingerprints WHERE path LIKE ? LIMIT 1", (prefix + "%",)) is not None

    def sketches(self, keys: list[str]) -> dict[str, bytes]:
        """``{key: Fingerprint.to_bytes()}`` for the keys that have a fingerprint."""
        if not keys:
            return {}
        marks = ", ".join("?" * len(keys))
        return {r["path"]: bytes(r["sketch"]) for r in self.db.query(f"SELECT path, sketch FROM fingerprints WHERE path IN ({marks})", keys)}

    def put(self, *, path: str, sha256: str | None, content_hash: str | None, kind: str, family: str | None,
            key_format: str | None, base_name: str | None, module_count: int, version: int, sketch: bytes,
            vector: np.ndarray) -> int:  # fmt: skip
        """Insert or replace the fingerprint of ``path``; returns its id (ids grow on every write,
        so the nearest-neighbour index can tell what is new)."""
        with self.db.transaction():
            self.db.execute("DELETE FROM fingerprints WHERE path = ?", (path,))
            return self.db.insert(
                "INSERT INTO fingerprints (path, sha256, content_hash, kind, family, key_format, base_name, module_count,"
                " version, sketch, vector, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, sha256, content_hash, kind, family, key_format, base_name, module_count, version, sketch,
                 np.ascontiguousarray(vector, dtype="<f4").tobytes(), utc_now()),
            )  # fmt: skip

    def get(self, fingerprint_id: int) -> tuple[StoredFingerprint, bytes] | None:
        row = self.db.query_one("SELECT * FROM fingerprints WHERE id = ?", (fingerprint_id,))
        return (_stored(row), bytes(row["sketch"])) if row else None

    def by_key(self, path: str) -> tuple[StoredFingerprint, bytes] | None:
        """The fingerprint stored under ``path`` (a file path, ``bank-entry:<id>``, ``hub-file:…``)."""
        row = self.db.query_one("SELECT * FROM fingerprints WHERE path = ?", (path,))
        return (_stored(row), bytes(row["sketch"])) if row else None

    def existing_keys(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a stored fingerprint."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            found.update(r["path"] for r in self.db.query(f"SELECT path FROM fingerprints WHERE path IN ({marks})", chunk))
        return found

    def count(self) -> int:
        return int(self.db.query_one("SELECT count(*) AS n FROM fingerprints")["n"])

    def state(self) -> tuple[int, int]:
        """(count, max id): enough to know whether an index built earlier is still current."""
        row = self.db.query_one("SELECT count(*) AS n, max(id) AS m FROM fingerprints")
        return int(row["n"]), int(row["m"] or 0)

    def iter_vectors(self, after_id: int = 0, batch: int = 10000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) in batches, for building the nearest-neighbour index."""
        return iter_vector_rows(self.db, "fingerprints", "vector", after_id, batch)

    # --- base models --------------------------------------------------------------------------

    def add_base(self, *, name: str, path: str, sha256: str | None, content_hash: str | None, family: str | None) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM base_models WHERE name = ?", (name,))
            self.db.execute(
                "INSERT INTO base_models (name, path, sha256, content_hash, family, added_at) VALUES (?, ?, ?, ?, ?, ?)",
                (name, path, sha256, content_hash, family, utc_now()),
            )

    def get_base(self, name: str) -> BaseModel | None:
        row = self.db.query_one("SELECT * FROM base_models WHERE name = ?", (name,))
        return _base(row) if row else None

    def list_bases(self) -> list[BaseModel]:
        return [_base(r) for r in self.db.query("SELECT * FROM base_models ORDER BY name")]


def _stored(row: Any) -> StoredFingerprint:
    return StoredFingerprint(
        id=row["id"], path=row["path"], sha256=row["sha256"], content_hash=row["content_hash"], kind=row["kind"],
        family=row["family"], base_name=row["base_name"], module_count=row["module_count"], created_at=row["created_at"],
    )  # fmt: skip


def _base(row: Any) -> BaseModel:
    return BaseModel(name=row["name"], path=row["path"], sha256=row["sha256"], content_hash=row["content_hash"],
                     family=row["family"], added_at=row["added_at"])  # fmt: skip
