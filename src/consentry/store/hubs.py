"""Persistence of crawled hub catalogues (models, versions, files, images) and crawl checkpoints.

Every upsert is keyed by (hub, remote_id) and keeps ``first_seen`` while moving ``last_seen``,
so re-crawling is idempotent: a resumed crawl that sees a record twice stores it once.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

from consentry.store.database import Database
from consentry.store.records import from_json, to_json, utc_now
from consentry.textfold import fold_values

_JSON_COLUMNS = {"tags", "trained_words", "stats", "raw", "meta", "metadata_json", "header_json", "nsfw_labels"}

MODEL_COLUMNS = ("name", "type", "creator", "url", "description", "tags", "nsfw", "nsfw_level", "poi", "minor",
                 "base_model", "stats", "raw", "created_at", "updated_at", "nsfw_labels")  # fmt: skip
VERSION_COLUMNS = ("model_remote_id", "name", "base_model", "trained_words", "nsfw_level", "raw", "created_at", "published_at",
                   "nsfw_labels")  # fmt: skip
FILE_COLUMNS = ("model_remote_id", "version_remote_id", "name", "url", "size", "format", "sha256", "autov1", "autov2",
                "autov3", "crc32", "blake3", "content_hash", "metadata_json", "header_json", "bytes_fetched", "raw",
                "autov3_claimed")  # fmt: skip
IMAGE_COLUMNS = ("model_remote_id", "version_remote_id", "url", "width", "height", "nsfw_level", "meta", "raw", "created_at",
                 "nsfw_labels")  # fmt: skip

# Columns an upsert never blanks: an image seen in a model's previews (no generation metadata)
# keeps the meta and the model link an earlier /images crawl gave it, and the other way round.
_KEEP_IF_NULL = {"hub_images": {"model_remote_id", "version_remote_id", "meta"}}

_TABLES = {
    "hub_models": MODEL_COLUMNS,
    "hub_versions": VERSION_COLUMNS,
    "hub_files": FILE_COLUMNS,
    "hub_images": IMAGE_COLUMNS,
}


def _json_value(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else to_json(value)


def _list_value(value: Any) -> str:
    return to_json(value if value is not None else [])


def _int_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


_BOOL_COLUMNS = {"nsfw", "poi", "minor"}


def _converters(table: str) -> list[tuple[int, Any]]:
    """(column position, how its value is stored) for the columns that need converting: JSON
    columns are serialised, booleans become 0/1 (PostgreSQL's INTEGER refuses a boolean), tags
    and trained words are never NULL. Every other value is stored as given."""
    out = []
    for i, column in enumerate(_TABLES[table]):
        if column in ("tags", "trained_words"):
            out.append((i, _list_value))
        elif column in _JSON_COLUMNS:
            out.append((i, _json_value))
        elif column in _BOOL_COLUMNS:
            out.append((i, _int_value))
    return out


# The record fields folded into each table's search_text (consentry.textfold), for `person find`.
_SEARCH_SOURCES = {
    "hub_models": ("name", "description", "tags"),
    "hub_versions": ("name", "trained_words"),
    "hub_files": ("name", "metadata_json", "header_json"),
    "hub_images": ("meta",),  # only what image_text_fields reads of it: the prompt, the resources used
}


def image_text_fields(meta: Any) -> list[tuple[str, str]]:
    """The text a crawled image's generation data holds: its prompt and the names of the
    resources (checkpoints, LoRAs) it was made with. The negative prompt is left out (a name
    there says the image is *not* that person), and so are seeds, samplers and sizes: folding
    only these keeps each image's search text short on its way into the store."""
    if not isinstance(meta, dict):
        return []
    out = []
    if isinstance(meta.get("prompt"), str) and meta["prompt"]:
        out.append(("image prompt", meta["prompt"]))
    names = [str(r["name"]) for key in ("resources", "civitaiResources") for r in meta.get(key) or []
             if isinstance(r, dict) and r.get("name")]  # fmt: skip
    if names:
        out.append(("image resources", ", ".join(dict.fromkeys(names))))
    return out


def _search_values(table: str, values: list[Any]) -> list[Any]:
    if table == "hub_images":
        return [text for _field, text in image_text_fields(values[0])]
    return values


class HubRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(self, table: str, hub: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert or update records of one table (keyed by ``remote_id``); returns how many.

        Values for JSON columns may be Python objects; hashes should already be upper-case."""
        columns = _TABLES[table]
        now = utc_now()
        convert = _converters(table)
        searched = _SEARCH_SOURCES.get(table)
        # a record without its text (an image listed again without meta) keeps the stored one
        may_keep = bool(searched) and set(searched) <= _KEEP_IF_NULL.get(table, set())
        images = table == "hub_images"
        rows = []
        for record in records:
            row = [hub, str(record["remote_id"]), *map(record.get, columns), now, now]
            for i, to in convert:
                row[i + 2] = to(row[i + 2])
            if searched:
                given = [record.get(c) for c in searched]
                if may_keep and all(v is None for v in given):
                    row.append(None)
                elif images:
                    row.append(fold_values(*(text for _field, text in image_text_fields(given[0]))))
                else:
                    row.append(fold_values(*given))
            rows.append(row)
        if not rows:
            return 0
        derived = ("search_text",) if searched else ()
        names = ("hub", "remote_id", *columns, "first_seen", "last_seen", *derived)
        keep = _KEEP_IF_NULL.get(table, set())
        keep = keep | {"search_text"} if keep else keep
        updates = ", ".join(f"{c} = COALESCE(excluded.{c}, {table}.{c})" if c in keep else f"{c} = excluded.{c}"
                            for c in (*columns, *derived, "last_seen"))  # fmt: skip
        sql = (
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
            f" ON CONFLICT (hub, remote_id) DO UPDATE SET {updates}"
        )
        with self.db.transaction():
            self.db.executemany(sql, rows)
        return len(rows)

    def fill_search_text(self, batch: int = 2000) -> int:
        """Fold the text of rows stored before search_text existed (once; returns how many)."""
        filled = 0
        for table, sources in _SEARCH_SOURCES.items():
            while True:
                rows = self.db.query(f"SELECT hub, remote_id, {', '.join(sources)} FROM {table} WHERE search_text IS NULL LIMIT ?",
                                     (batch,))  # fmt: skip
                if not rows:
                    break
                values = [(fold_values(*_search_values(table, [from_json(r[c], r[c]) if c in _JSON_COLUMNS else r[c]
                                                               for c in sources])), r["hub"], r["remote_id"])
                          for r in rows]  # fmt: skip
                with self.db.transaction():
                    self.db.executemany(f"UPDATE {table} SET search_text = ? WHERE hub = ? AND remote_id = ?", values)
                filled += len(values)
        return filled

    def get(self, table: str, hub: str, remote_id: str) -> dict[str, Any] | None:
        if table not in _TABLES:
            raise ValueError(table)
        row = self.db.query_one(f"SELECT * FROM {table} WHERE hub = ? AND remote_id = ?", (hub, str(remote_id)))
        if row is None:
            return None
        return {k: (from_json(row[k], None) if k in _JSON_COLUMNS else row[k]) for k in row.keys()}

    def count(self, table: str, hub: str | None = None) -> int:
        if table not in _TABLES:
            raise ValueError(table)
        sql, args = f"SELECT count(*) AS n FROM {table}", ()
        if hub:
            sql, args = sql + " WHERE hub = ?", (hub,)
        return int(self.db.query_one(sql, args)["n"])

    def models_of_versions(self, hub: str, version_ids: Iterable[str]) -> dict[str, str]:
        """version remote id → model remote id, for the versions already stored."""
        ids = list(version_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self.db.query(f"SELECT remote_id, model_remote_id FROM hub_versions WHERE hub = ? AND remote_id IN ({marks})",
                                     (hub, *chunk)):  # fmt: skip
                found[row["remote_id"]] = row["model_remote_id"]
        return found

    def iter_file_identities(self, hub: str | None = None, batch: int = 20000) -> Iterator[list[Any]]:
        """Every hub file's identity columns (of one hub, or all), in batches by row id: one
        linear pass, which beats an index probe per value once the values are many."""
        last = 0
        where = "id > ?" + (" AND hub = ?" if hub else "")
        while True:
            rows = self.db.query(
                "SELECT id, hub, remote_id, name, model_remote_id, version_remote_id, url, sha256, autov3, autov3_claimed,"
                f" content_hash, last_seen FROM hub_files WHERE {where} ORDER BY id LIMIT ?",
                (last, hub, batch) if hub else (last, batch))  # fmt: skip
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    # --- crawl checkpoints ---------------------------------------------------------------------

    def checkpoint(self, hub: str, query_key: str) -> dict[str, Any] | None:
        row = self.db.query_one("SELECT * FROM crawl_state WHERE hub = ? AND query_key = ?", (hub, query_key))
        return dict(row) if row else None

    def save_checkpoint(self, hub: str, query_key: str, cursor: str | None, records_added: int, *, finished: bool = False) -> None:
        """Move the checkpoint; call inside the same transaction as the page's upserts so the
        page and its cursor are committed together (that is what makes a resume exact)."""
        now = utc_now()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO crawl_state (hub, query_key, cursor, records, started_at, updated_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hub, query_key) DO UPDATE SET cursor = excluded.cursor,"
                " records = crawl_state.records + excluded.records, updated_at = excluded.updated_at,"
                " finished_at = excluded.finished_at",
                (hub, query_key, cursor, records_added, now, now, now if finished else None),
            )

    def reset_checkpoint(self, hub: str, query_key: str) -> None:
        with self.db.transaction():
            self.db.execute("DELETE FROM crawl_state WHERE hub = ? AND query_key = ?", (hub, query_key))
