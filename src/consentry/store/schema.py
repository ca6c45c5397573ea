"""The store's schema, as an ordered list of migrations shared by SQLite and PostgreSQL.

Write portable SQL; ``{pk}``, ``{bytes}`` and ``{real}`` become each dialect's words
(:mod:`consentry.store.database`). Append a migration to change the schema; never edit one
that has shipped. Applied versions are recorded in ``schema_migrations``.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: files seen by `consentry index`, their identity and what inspect found.
    """
    CREATE TABLE files (
        id {pk},
        path TEXT NOT NULL UNIQUE,
        size BIGINT,
        mtime_ns BIGINT,
        inode BIGINT,
        device BIGINT,
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
        tensor_count BIGINT,
        parameter_count BIGINT,
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
        id {pk},
        root TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        files_seen BIGINT NOT NULL DEFAULT 0,
        files_indexed BIGINT NOT NULL DEFAULT 0,
        files_unchanged BIGINT NOT NULL DEFAULT 0,
        files_flagged BIGINT NOT NULL DEFAULT 0,
        bytes_hashed BIGINT NOT NULL DEFAULT 0
    )
    """,
    # 2: banks of known models (positive: must be flagged; negative: must never be), their
    #    entries and the signals (hash values) each entry carries; the review queue; API keys.
    """
    CREATE TABLE banks (
        id {pk},
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL DEFAULT 'positive' CHECK (kind IN ('positive', 'negative')),
        labels TEXT NOT NULL DEFAULT '[]',
        description TEXT,
        source TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        thresholds TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE bank_entries (
        id {pk},
        bank_id BIGINT NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
        name TEXT,
        url TEXT,
        labels TEXT NOT NULL DEFAULT '[]',
        note TEXT,
        provenance TEXT NOT NULL DEFAULT '{}',
        added_at TEXT NOT NULL,
        import_id BIGINT
    );
    CREATE INDEX bank_entries_bank ON bank_entries (bank_id);
    CREATE TABLE bank_signals (
        bank_id BIGINT NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
        entry_id BIGINT NOT NULL REFERENCES bank_entries (id) ON DELETE CASCADE,
        signal_type TEXT NOT NULL,
        value TEXT NOT NULL,
        -- (type, value) first: the same index serves the matcher's lookups across banks and the
        -- per-bank duplicate check, so a 10M-value bank maintains one large index, not two.
        UNIQUE (signal_type, value, bank_id)
    );
    CREATE INDEX bank_signals_entry ON bank_signals (entry_id);
    CREATE TABLE bank_imports (
        id {pk},
        bank_id BIGINT NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
        source_name TEXT,
        actor TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        rows_total BIGINT NOT NULL DEFAULT 0,
        added BIGINT NOT NULL DEFAULT 0,
        duplicates BIGINT NOT NULL DEFAULT 0,
        rejected BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE review_items (
        id {pk},
        status TEXT NOT NULL CHECK (status IN ('open', 'confirmed', 'dismissed')),
        file_name TEXT,
        file_sha256 TEXT,
        file_size BIGINT,
        file_identity TEXT NOT NULL DEFAULT '{}',
        bank_id BIGINT REFERENCES banks (id) ON DELETE SET NULL,
        bank_name TEXT NOT NULL,
        entry_id BIGINT,
        signal_type TEXT NOT NULL,
        signal_value TEXT NOT NULL,
        score {real},
        threshold {real},
        source TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX review_items_status ON review_items (status);
    CREATE UNIQUE INDEX review_items_open_once ON review_items (file_sha256, bank_name, signal_type, signal_value)
        WHERE status = 'open';
    CREATE TABLE review_decisions (
        id {pk},
        item_id BIGINT NOT NULL REFERENCES review_items (id) ON DELETE CASCADE,
        action TEXT NOT NULL CHECK (action IN ('confirm', 'dismiss', 'appeal')),
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        negative_bank TEXT,
        decided_at TEXT NOT NULL
    );
    CREATE INDEX review_decisions_item ON review_decisions (item_id);
    CREATE TABLE api_keys (
        id {pk},
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'reviewer', 'scanner')),
        created_at TEXT NOT NULL,
        revoked_at TEXT
    )
    """,
    # 3: weight fingerprints (issue 3): one per fingerprinted file, with its per-module sketches
    #    (``sketch``) and the whole-model unit vector the nearest-neighbour index is built from;
    #    and the base models checkpoints are fingerprinted against.
    """
    CREATE TABLE fingerprints (
        id {pk},
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT,
        content_hash TEXT,
        kind TEXT NOT NULL,
        family TEXT,
        key_format TEXT,
        base_name TEXT,
        module_count BIGINT NOT NULL,
        version INTEGER NOT NULL,
        sketch {bytes} NOT NULL,
        vector {bytes} NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX fingerprints_content_hash ON fingerprints (content_hash);
    CREATE INDEX fingerprints_family ON fingerprints (family);
    CREATE TABLE base_models (
        id {pk},
        name TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        sha256 TEXT,
        content_hash TEXT,
        family TEXT,
        added_at TEXT NOT NULL
    )
    """,
    # 4: the hubs' catalogues as crawled (issue 5), hub-agnostic: a model (Civitai model, Hugging
    #    Face repo), its versions (Civitai versions, HF revisions), files with every hash the hub
    #    lists or that was computed remotely, preview images with generation metadata, and the
    #    crawl checkpoints that make a killed crawl resume. ``raw`` keeps the hub's JSON as
    #    received; ``first_seen``/``last_seen``/``gone_at`` track presence across crawls.
    """
    CREATE TABLE hub_models (
        id {pk},
        hub TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        name TEXT,
        type TEXT,
        creator TEXT,
        url TEXT,
        description TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        nsfw INTEGER,
        nsfw_level BIGINT,
        poi INTEGER,
        minor INTEGER,
        base_model TEXT,
        stats TEXT,
        raw TEXT,
        created_at TEXT,
        updated_at TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        gone_at TEXT,
        UNIQUE (hub, remote_id)
    );
    CREATE TABLE hub_versions (
        id {pk},
        hub TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        model_remote_id TEXT NOT NULL,
        name TEXT,
        base_model TEXT,
        trained_words TEXT NOT NULL DEFAULT '[]',
        nsfw_level BIGINT,
        raw TEXT,
        created_at TEXT,
        published_at TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        UNIQUE (hub, remote_id)
    );
    CREATE INDEX hub_versions_model ON hub_versions (hub, model_remote_id);
    CREATE TABLE hub_files (
        id {pk},
        hub TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        model_remote_id TEXT,
        version_remote_id TEXT,
        name TEXT,
        url TEXT,
        size BIGINT,
        format TEXT,
        sha256 TEXT,
        autov1 TEXT,
        autov2 TEXT,
        autov3 TEXT,
        crc32 TEXT,
        blake3 TEXT,
        content_hash TEXT,
        metadata_json TEXT,
        header_json TEXT,
        bytes_fetched BIGINT,
        raw TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        UNIQUE (hub, remote_id)
    );
    CREATE INDEX hub_files_sha256 ON hub_files (sha256);
    CREATE INDEX hub_files_autov2 ON hub_files (autov2);
    CREATE INDEX hub_files_autov3 ON hub_files (autov3);
    CREATE INDEX hub_files_blake3 ON hub_files (blake3);
    CREATE INDEX hub_files_model ON hub_files (hub, model_remote_id);
    CREATE TABLE hub_images (
        id {pk},
        hub TEXT NOT NULL,
        remote_id TEXT NOT NULL,
        model_remote_id TEXT,
        version_remote_id TEXT,
        url TEXT,
        width BIGINT,
        height BIGINT,
        nsfw_level BIGINT,
        meta TEXT,
        raw TEXT,
        created_at TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        UNIQUE (hub, remote_id)
    );
    CREATE INDEX hub_images_model ON hub_images (hub, model_remote_id);
    CREATE TABLE crawl_state (
        hub TEXT NOT NULL,
        query_key TEXT NOT NULL,
        cursor TEXT,
        records BIGINT NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        PRIMARY KEY (hub, query_key)
    )
    """,
    # 5: mirrors of banked models found on the hubs (issue 5), one row per (entry, URL) with the
    #    strongest signal that matched and the evidence of every signal; first_seen tells a
    #    later run what is new. And the AutoV3 a file's header claims (kohya's sshs_model_hash),
    #    kept apart from the computed one because nobody checked it. And the review queue's
    #    lookup of earlier decisions on the same file (a dismissal sticks) by its SHA-256. And
    #    Civitai's nsfwLevel decoded (["PG", "PG-13", "R"] for 7) beside the bitmask.
    """
    CREATE INDEX review_items_file ON review_items (file_sha256);
    ALTER TABLE hub_models ADD COLUMN nsfw_labels TEXT;
    ALTER TABLE hub_versions ADD COLUMN nsfw_labels TEXT;
    ALTER TABLE hub_images ADD COLUMN nsfw_labels TEXT;
    ALTER TABLE hub_files ADD COLUMN autov3_claimed TEXT;
    CREATE INDEX hub_files_autov3_claimed ON hub_files (autov3_claimed);
    CREATE TABLE mirrors (
        id {pk},
        bank_id BIGINT NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
        entry_id BIGINT NOT NULL REFERENCES bank_entries (id) ON DELETE CASCADE,
        hub TEXT NOT NULL,
        url TEXT NOT NULL,
        file_remote_id TEXT,
        matched_by TEXT NOT NULL,
        evidence TEXT NOT NULL DEFAULT '[]',
        hub_seen TEXT,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        UNIQUE (entry_id, url)
    );
    CREATE INDEX mirrors_bank ON mirrors (bank_id)
    """,
    # 6: what was seen in images (issue 6): one row per analysed image (a hub preview or a local
    #    file), its faces with their 128-d embeddings (the vector index behind `person find` is
    #    built from them), its NSFW score and PDQ hash. This is hub content; the embeddings of
    #    registered people live in the registry, a database of its own.
    """
    CREATE TABLE image_analyses (
        id {pk},
        ref TEXT NOT NULL UNIQUE,
        hub TEXT,
        model_remote_id TEXT,
        url TEXT,
        sha256 TEXT,
        width BIGINT,
        height BIGINT,
        faces_total BIGINT NOT NULL DEFAULT 0,
        nsfw {real},
        pdq TEXT,
        pdq_quality BIGINT,
        problem TEXT,
        analysed_at TEXT NOT NULL
    );
    CREATE INDEX image_analyses_model ON image_analyses (hub, model_remote_id);
    CREATE TABLE image_faces (
        id {pk},
        analysis_id BIGINT NOT NULL REFERENCES image_analyses (id) ON DELETE CASCADE,
        face_index BIGINT NOT NULL,
        box TEXT NOT NULL,
        score {real},
        embedding {bytes} NOT NULL
    );
    CREATE INDEX image_faces_analysis ON image_faces (analysis_id)
    """,
    # 7: each crawled record's text folded for search (ASCII, lower case: consentry.textfold), so
    # `person find` finds a name in any script with one LIKE; filled on upsert, and for older
    # rows on first search. Review items of deleted banks let go of their entry ids, which
    # SQLite hands out again: a dismissal must never carry over to a new bank's entry.
    """
    ALTER TABLE hub_models ADD COLUMN search_text TEXT;
    ALTER TABLE hub_versions ADD COLUMN search_text TEXT;
    ALTER TABLE hub_files ADD COLUMN search_text TEXT;
    UPDATE review_items SET entry_id = NULL WHERE bank_id IS NULL
    """,
    # 8: the folded search text (consentry.textfold) of indexed local files (their name and the
    # training metadata inside them) and of crawled images (their generation prompts), so
    # `person find` searches them with the same prefilter as the crawled models. And an analysed
    # image's 8 dihedral PDQ hashes (space-separated), to match registered people's photos turned
    # or mirrored.
    """
    ALTER TABLE files ADD COLUMN search_text TEXT;
    ALTER TABLE hub_images ADD COLUMN search_text TEXT;
    ALTER TABLE image_analyses ADD COLUMN pdq_dihedral TEXT
    """,
]
