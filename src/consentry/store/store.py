"""The store: files, index runs, banks, the review queue and API keys, over one Database.

SQLite (one file, WAL mode) is the embedded default; a ``postgresql://`` URL gives the
multi-user store. A record is written whole or not at all (one transaction per file), so a
killed `index` loses at most the file in flight and a rerun carries on. Hashes are stored
upper-case.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from consentry.errors import StoreError
from consentry.store.database import Database, is_postgres_url
from consentry.store.records import signed64, to_json, utc_now
from consentry.store.schema import MIGRATIONS

FILE_COLUMNS = (
    "path", "size", "mtime_ns", "inode", "device", "format", "verdict", "problem",
    "sha256", "autov1", "autov3", "crc32", "crc32_conventional", "blake3", "content_hash",
    "architecture", "tensor_count", "parameter_count", "metadata_json", "inspect_json", "indexed_at",
)  # fmt: skip

# Columns `find` searches, with the hash form each holds; prefix search on full-length ones.
PREFIX_COLUMNS = ("sha256", "autov3", "blake3", "content_hash")
EXACT8_COLUMNS = ("autov1", "crc32", "crc32_conventional")


def default_db_path() -> Path | str:
    """``$CONSENTRY_DB`` (a path or a postgresql:// URL), else
    ``$XDG_DATA_HOME/consentry/consentry.db`` (~/.local/share)."""
    if os.environ.get("CONSENTRY_DB"):
        value = os.environ["CONSENTRY_DB"]
        return value if is_postgres_url(value) else Path(value)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "consentry" / "consentry.db"


def file_search_text(path: str, metadata_json: str | None) -> str:
    """What `person find` searches of a local file: its name and the metadata inside it, folded
    (consentry.textfold; JSON inside metadata values, e.g. kohya's ss_tag_frequency, included)."""
    from consentry.textfold import fold_values

    return fold_values(Path(path).name, metadata_json)


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
    def from_row(cls, row: Any) -> "StoredFile":
        hashes = {k: row[k] for k in ("sha256", "autov1", "autov3", "crc32", "crc32_conventional", "blake3", "content_hash")}
        hashes["autov2"] = row["sha256"][:10] if row["sha256"] else None
        hashes["autov3_short"] = row["autov3"][:12] if row["autov3"] else None
        return cls(
            id=row["id"], path=row["path"], size=row["size"], mtime_ns=row["mtime_ns"], inode=row["inode"],
            format=row["format"], verdict=row["verdict"], problem=row["problem"], hashes=hashes,
            architecture=row["architecture"], indexed_at=row["indexed_at"],
        )  # fmt: skip


class Store:
    """The library's door to persistence. Open with :meth:`open`; use as a context manager.

    A Store (and its connection) belongs to one thread; the HTTP service opens one per worker.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        from consentry.store.banks import BankRepository
        from consentry.store.reviews import ReviewRepository
        from consentry.store.api_keys import ApiKeyRepository
        from consentry.store.fingerprints import FingerprintRepository
        from consentry.store.hubs import HubRepository
        from consentry.store.images import ImageRepository
        from consentry.store.mirrors import MirrorRepository

        self.banks = BankRepository(db)
        self.reviews = ReviewRepository(db)
        self.api_keys = ApiKeyRepository(db)
        self.fingerprints = FingerprintRepository(db)
        self.hubs = HubRepository(db)
        self.mirrors = MirrorRepository(db)
        self.images = ImageRepository(db)

    @classmethod
    def open(cls, target: str | os.PathLike[str] | None = None) -> "Store":
        db = Database.connect(target if target is not None else default_db_path())
        try:
            if db.has_table("registry_migrations"):
                raise StoreError(f"{db.label}: this is a protected-person registry, not consentry's store: the store "
                                 "lives in a database of its own (--db / CONSENTRY_DB)")  # fmt: skip
            db.migrate(MIGRATIONS)
        except BaseException:
            db.close()
            raise
        return cls(db)

    @property
    def path(self) -> str:
        """Where the data lives (a file path, or a URL with the password masked)."""
        return self.db.label

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def transaction(self):
        return self.db.transaction()

    # --- files -----------------------------------------------------------------------------

    def get_file(self, path: str) -> StoredFile | None:
        row = self.db.query_one("SELECT * FROM files WHERE path = ?", (path,))
        return StoredFile.from_row(row) if row else None

    def file_stat(self, path: str) -> tuple[int | None, int | None, int | None] | None:
        """(size, mtime_ns, inode) recorded for ``path``, for the incremental skip."""
        row = self.db.query_one("SELECT size, mtime_ns, inode FROM files WHERE path = ?", (path,))
        return (row["size"], row["mtime_ns"], row["inode"]) if row else None

    def upsert_file(self, record: dict[str, Any]) -> None:
        """Insert or replace one file's record atomically."""
        values = {column: record.get(column) for column in FILE_COLUMNS}
        values["indexed_at"] = values["indexed_at"] or utc_now()
        values["inode"] = signed64(values["inode"])
        values["device"] = signed64(values["device"])
        for key in ("metadata_json", "inspect_json"):
            if values[key] is not None and not isinstance(values[key], str):
                values[key] = to_json(values[key])
        names = (*FILE_COLUMNS, "search_text")
        values["search_text"] = file_search_text(values["path"], values["metadata_json"])
        columns = ", ".join(names)
        placeholders = ", ".join("?" for _ in names)
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c != "path")
        with self.db.transaction():
            self.db.execute(
                f"INSERT INTO files ({columns}) VALUES ({placeholders}) ON CONFLICT (path) DO UPDATE SET {updates}",
                [values[c] for c in names],
            )

    def fill_file_search_text(self, batch: int = 500) -> int:
        """Fold the text of files indexed before search_text existed (once; returns how many)."""
        filled = 0
        while True:
            rows = self.db.query("SELECT id, path, metadata_json FROM files WHERE search_text IS NULL LIMIT ?", (batch,))
            if not rows:
                return filled
            with self.db.transaction():
                self.db.executemany("UPDATE files SET search_text = ? WHERE id = ?",
                                    [(file_search_text(r["path"], r["metadata_json"]), r["id"]) for r in rows])  # fmt: skip
            filled += len(rows)

    def iter_files(self, verdict: str | None = None) -> Iterator[StoredFile]:
        sql, args = "SELECT * FROM files", ()
        if verdict:
            sql, args = sql + " WHERE verdict = ?", (verdict,)
        for row in self.db.query(sql + " ORDER BY path", args):
            yield StoredFile.from_row(row)

    def count_files(self) -> dict[str, int]:
        return {r["verdict"]: r["n"] for r in self.db.query("SELECT verdict, count(*) AS n FROM files GROUP BY verdict")}

    def find_hash(self, hex_upper: str) -> list[tuple[StoredFile, list[str]]]:
        """Files whose hashes equal or (for full-length hashes) start with ``hex_upper``.

        Returns each file with the hash kinds that matched (e.g. ``["sha256"]``)."""
        matches: dict[int, tuple[StoredFile, list[str]]] = {}
        upper_bound = hex_upper + "G"  # 'G' sorts after every hex digit: a prefix range scan
        for column in PREFIX_COLUMNS:
            rows = self.db.query(f"SELECT * FROM files WHERE {column} >= ? AND {column} < ?", (hex_upper, upper_bound))
            for row in rows:
                kind = column
                if column == "sha256" and len(hex_upper) == 10:
                    kind = "autov2"
                elif column == "autov3" and len(hex_upper) == 12:
                    kind = "autov3_short"
                matches.setdefault(row["id"], (StoredFile.from_row(row), []))[1].append(kind)
        if len(hex_upper) == 8:
            for column in EXACT8_COLUMNS:
                for row in self.db.query(f"SELECT * FROM files WHERE {column} = ?", (hex_upper,)):
                    matches.setdefault(row["id"], (StoredFile.from_row(row), []))[1].append(column)
        return sorted(matches.values(), key=lambda m: m[0].path)

    # --- index runs ------------------------------------------------------------------------

    def start_run(self, root: str) -> int:
        with self.db.transaction():
            return self.db.insert("INSERT INTO index_runs (root, started_at) VALUES (?, ?)", (root, utc_now()))

    def finish_run(self, run_id: int, counts: dict[str, int]) -> None:
        with self.db.transaction():
            self.db.execute(
                "UPDATE index_runs SET finished_at = ?, files_seen = ?, files_indexed = ?, files_unchanged = ?,"
                " files_flagged = ?, bytes_hashed = ? WHERE id = ?",
                (utc_now(), counts.get("seen", 0), counts.get("indexed", 0), counts.get("unchanged", 0),
                 counts.get("flagged", 0), counts.get("bytes", 0), run_id),
            )  # fmt: skip

