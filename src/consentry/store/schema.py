"""The embedded store's schema, as an ordered list of migrations (``PRAGMA user_version``).

Append a migration to change the schema; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: files seen by `consentry index`, their identity and what inspect found.
    """
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        size INTEGER,
        mtime_ns INTEGER,
        inode INTEGER,
        device INTEGER,
        format TEXT NOT NULL,
        verdict TEXT NOT NULL CHECK (verdict IN ('clean', 'quarantine', 'rejected')),
        problem TEXT,
        sha256 TEXT,
        autov1 TEXT,
        autov3 TEXT,
        crc32 TEXT,
        crc32_conventional TEXT,
        blake3 TEXT,
        content_hash TEXT,
        architecture TEXT,
        tensor_count INTEGER,
        parameter_count INTEGER,
        metadata_json TEXT,
        inspect_json TEXT,
        indexed_at TEXT NOT NULL
    );
    CREATE INDEX files_sha256 ON files (sha256);
    CREATE INDEX files_autov1 ON files (autov1);
    CREATE INDEX files_autov3 ON files (autov3);
    CREATE INDEX files_crc32 ON files (crc32);
    CREATE INDEX files_crc32_conventional ON files (crc32_conventional);
    CREATE INDEX files_blake3 ON files (blake3);
    CREATE INDEX files_content_hash ON files (content_hash);
    CREATE INDEX files_verdict ON files (verdict);
    CREATE TABLE index_runs (
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        files_seen INTEGER NOT NULL DEFAULT 0,
        files_indexed INTEGER NOT NULL DEFAULT 0,
        files_unchanged INTEGER NOT NULL DEFAULT 0,
        files_flagged INTEGER NOT NULL DEFAULT 0,
        bytes_hashed INTEGER NOT NULL DEFAULT 0
    );
    """,
]
