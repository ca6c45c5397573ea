"""The registry's own schema: a database apart from the store, with its own migrations.

Portable SQL with the store's dialect words (``{pk}``, ``{bytes}``); applied versions are
recorded in ``registry_migrations`` (not the store's ``schema_migrations``), so a registry never
passes for a store or the other way round. Append a migration to change the schema; never edit
one that has shipped.

Every column that holds person data is a sealed value (:mod:`consentry.registry.crypto`):
ciphertext in an encrypted registry, ``0x00 || value`` in clear otherwise. What stays in clear
is the random person id, timestamps, the kind of each signal, and the audit log (which holds
no person data by construction).
"""

from __future__ import annotations

REGISTRY_MIGRATIONS: list[str] = [
    # 1: the registry's settings, people, their signals and matches, and the hash-chained audit log.
    """
    CREATE TABLE registry_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE people (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        record {bytes} NOT NULL
    );
    CREATE TABLE person_signals (
        id {pk},
        person_id TEXT NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('face', 'pdq')),
        value {bytes} NOT NULL
    );
    CREATE INDEX person_signals_person ON person_signals (person_id);
    CREATE TABLE person_matches (
        id {pk},
        person_id TEXT NOT NULL REFERENCES people (id) ON DELETE CASCADE,
        recorded_at TEXT NOT NULL,
        value {bytes} NOT NULL
    );
    CREATE INDEX person_matches_person ON person_matches (person_id);
    CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        purpose TEXT NOT NULL,
        person_ids TEXT NOT NULL,
        note TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        entry_hash TEXT NOT NULL
    )
    """,
]
