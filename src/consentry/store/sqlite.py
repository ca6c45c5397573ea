"""The embedded store: one SQLite file, WAL mode, a transaction per recorded file.

A record is written whole or not at all, so a killed `index` loses at most the file it was
hashing and a rerun carries on (unchanged files are skipped). Hashes are stored upper-case.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from consentry.errors import StoreError
from consentry.store.schema import MIGRATIONS

FILE_COLUMNS = (
    "path", "size", "mtime_ns", "inode", "device", "format", "verdict", "problem",
    "sha256", "autov1", "autov3", "crc32", "crc32_conventional", "blake3", "content_hash",
    "architecture", "tensor_count", "parameter_count", "metadata_json", "inspect_json", "indexed_at",
)  # fmt: skip

# Columns `find` searches, with the hash form each holds; prefix search on full-length ones.
PREFIX_COLUMNS = ("sha256", "autov3", "blake3", "content_hash")
EXACT8_COLUMNS = ("autov1", "crc32", "crc32_conventional")


def default_db_path() -> Path:
    """``$CONSENTRY_DB``, else ``$XDG_DATA_HOME/consentry/consentry.db`` (~/.local/share)."""
    if os.environ.get("CONSENTRY_DB"):
        return Path(os.environ["CONSENTRY_DB"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "consentry" / "consentry.db"


@dataclass(frozen=True)
class StoredFile:
    id: int
    path: str
    size: int | None
    mtime_ns: int | None
    inode: int | None
    format: str
    verdict: str
    problem: str | None
    hashes: dict[str, str | None]
    architecture: str | None
    indexed_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "StoredFile":
        hashes = {k: row[k] for k in ("sha256", "autov1", "autov3", "crc32", "crc32_conventional", "blake3", "content_hash")}
        hashes["autov2"] = row["sha256"][:10] if row["sha256"] else None
        hashes["autov3_short"] = row["autov3"][:12] if row["autov3"] else None
        return cls(
            id=row["id"], path=row["path"], size=row["size"], mtime_ns=row["mtime_ns"], inode=row["inode"],
            format=row["format"], verdict=row["verdict"], problem=row["problem"], hashes=hashes,
            architecture=row["architecture"], indexed_at=row["indexed_at"],
        )  # fmt: skip


class Store:
    """The embedded SQLite store. Open with :meth:`open`; use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> "Store":
        db_path = Path(path) if path is not None else default_db_path()
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            store = cls(conn, db_path)
            store._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db_path}: cannot open database: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{db_path}: cannot open database: {exc.strerror or exc}") from None
        return store

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: database schema v{version} is newer than this consentry (v{len(MIGRATIONS)})")
        for number in range(version, len(MIGRATIONS)):
            with self.transaction():
                for statement in _statements(MIGRATIONS[number]):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number + 1}")

    def transaction(self) -> "_Transaction":
        return _Transaction(self.conn)

    # --- files -----------------------------------------------------------------------------

    def get_file(self, path: str) -> StoredFile | None:
        row = self.conn.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return StoredFile.from_row(row) if row else None

    def file_stat(self, path: str) -> tuple[int | None, int | None, int | None] | None:
        """(size, mtime_ns, inode) recorded for ``path``, for the incremental skip."""
        row = self.conn.execute("SELECT size, mtime_ns, inode FROM files WHERE path = ?", (path,)).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def upsert_file(self, record: dict[str, Any]) -> None:
        """Insert or replace one file's record atomically."""
        values = {column: record.get(column) for column in FILE_COLUMNS}
        values["indexed_at"] = values["indexed_at"] or utc_now()
        for key in ("metadata_json", "inspect_json"):
            if values[key] is not None and not isinstance(values[key], str):
                values[key] = json.dumps(values[key], sort_keys=True, default=str)
        columns = ", ".join(FILE_COLUMNS)
        placeholders = ", ".join("?" for _ in FILE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in FILE_COLUMNS if c != "path")
        with self.transaction():
            self.conn.execute(
                f"INSERT INTO files ({columns}) VALUES ({placeholders}) ON CONFLICT(path) DO UPDATE SET {updates}",
                [values[c] for c in FILE_COLUMNS],
            )

    def iter_files(self, verdict: str | None = None) -> Iterator[StoredFile]:
        sql, args = "SELECT * FROM files", ()
        if verdict:
            sql, args = sql + " WHERE verdict = ?", (verdict,)
        for row in self.conn.execute(sql + " ORDER BY path", args):
            yield StoredFile.from_row(row)

    def count_files(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self.conn.execute("SELECT verdict, count(*) FROM files GROUP BY verdict")}

    def find_hash(self, hex_upper: str) -> list[tuple[StoredFile, list[str]]]:
        """Files whose hashes equal or (for full-length hashes) start with ``hex_upper``.

        Returns each file with the hash kinds that matched (e.g. ``["sha256"]``)."""
        matches: dict[int, tuple[StoredFile, list[str]]] = {}
        upper_bound = hex_upper + "G"  # 'G' sorts after every hex digit: a prefix range scan
        for column in PREFIX_COLUMNS:
            rows = self.conn.execute(
                f"SELECT * FROM files WHERE {column} >= ? AND {column} < ?", (hex_upper, upper_bound)
            )
            for row in rows:
                kind = column
                if column == "sha256" and len(hex_upper) == 10:
                    kind = "autov2"
                elif column == "autov3" and len(hex_upper) == 12:
                    kind = "autov3_short"
                matches.setdefault(row["id"], (StoredFile.from_row(row), []))[1].append(kind)
        if len(hex_upper) == 8:
            for column in EXACT8_COLUMNS:
                for row in self.conn.execute(f"SELECT * FROM files WHERE {column} = ?", (hex_upper,)):
                    matches.setdefault(row["id"], (StoredFile.from_row(row), []))[1].append(column)
        return sorted(matches.values(), key=lambda m: m[0].path)

    # --- index runs ------------------------------------------------------------------------

    def start_run(self, root: str) -> int:
        with self.transaction():
            cur = self.conn.execute("INSERT INTO index_runs (root, started_at) VALUES (?, ?)", (root, utc_now()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, counts: dict[str, int]) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE index_runs SET finished_at = ?, files_seen = ?, files_indexed = ?, files_unchanged = ?,"
                " files_flagged = ?, bytes_hashed = ? WHERE id = ?",
                (utc_now(), counts.get("seen", 0), counts.get("indexed", 0), counts.get("unchanged", 0),
                 counts.get("flagged", 0), counts.get("bytes", 0), run_id),
            )  # fmt: skip


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (autocommit connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def utc_now() -> str:
    return _dt.datetime.now(tz=_dt.timezone.utc).isoformat(timespec="seconds")
