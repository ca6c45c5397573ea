"""The consented protected-person registry: a database of its own, apart from the store.

A person is registered by an advocate with their consent: display name, aliases, handles, the
consent record, and reference photos reduced on intake to face embeddings and PDQ hashes (the
photos are never stored). Every read is written to a hash-chained audit log that holds random
person ids, never names. ``withdraw`` erases a person for real and leaves one audit entry that
does not say who. See :mod:`consentry.registry.crypto` for encryption at rest and
:mod:`consentry.registry.audit` for the chain.

Erasure: on SQLite every connection runs with ``PRAGMA secure_delete=ON`` (deleted content is
overwritten with zeros, in the table and index b-trees and overflow pages) and ``temp_store=MEMORY``
(VACUUM's scratch copy never touches the temp directory); after the rows are deleted the file is
rebuilt with ``VACUUM`` (no free page keeps old bytes) and ``PRAGMA wal_checkpoint(TRUNCATE)``
empties the write-ahead log, whose frames would otherwise hold earlier versions of the pages. On
PostgreSQL the rows are deleted and the tables rewritten with ``VACUUM FULL`` (a plain VACUUM
leaves dead tuples' bytes in the pages); the server's own WAL segments, archives and backups are
outside consentry's reach and keep the inserted rows until they are recycled: encrypt the registry.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import unicodedata
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from consentry.registry.audit import (
    WITHDRAWN_NOTE,
    AuditCheck,
    AuditEntry,
    encode_ids,
    entry_hash,
    genesis_hash,
    verify_rows,
)
from consentry.registry.crypto import (
    CIPHER,
    OperatorKey,
    Sealer,
    new_encryption,
    parse_key,
    unlock,
)
from consentry.registry.errors import (
    AuditTampered,
    PersonInputError,
    PersonNotFound,
    RegistryError,
    RegistryKeyError,
    is_person_id,
)
from consentry.registry.intake import EMBEDDING_DIM, Photo, reduce_photos
from consentry.registry.records import (
    Consent,
    MatchRecord,
    PersonRecord,
    RegistryStatus,
    Withdrawal,
)
from consentry.registry.schema import REGISTRY_MIGRATIONS
from consentry.errors import StoreError
from consentry.store.database import Database, is_postgres_url
from consentry.store.records import utc_now

REGISTRY_ENV = "CONSENTRY_REGISTRY"
KEY_ENV = "CONSENTRY_REGISTRY_KEY"
FORMAT_VERSION = "1"
_MIGRATION_LOCK = 7723012  # PostgreSQL advisory locks: the store uses 7723011
_AUDIT_LOCK = 7723013
_MAX_TEXT = 500
_MAX_LABEL = 200
_MAX_ITEMS = 200
_CLOCK_SKEW = _dt.timedelta(days=1)


def default_registry_target() -> Path | str:
    """``$CONSENTRY_REGISTRY`` (a path or a postgresql:// URL), else
    ``$XDG_DATA_HOME/consentry/registry.db`` (~/.local/share), beside the store."""
    value = os.environ.get(REGISTRY_ENV)
    if value:
        return value if is_postgres_url(value) else Path(value)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "consentry" / "registry.db"


# --- input checks: the messages name the field, never the value -------------------------------


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _clean_text(value: Any, what: str, *, max_len: int = _MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise PersonInputError(f"{what} must be text")
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise PersonInputError(f"{what} is empty")
    if len(text) > max_len:
        raise PersonInputError(f"{what} is longer than {max_len} characters")
    if _has_control(text):
        raise PersonInputError(f"{what} contains a control character")
    return text


def _clean_list(values: Iterable[str], what: str, *, exclude: str | None = None) -> tuple[str, ...]:
    if isinstance(values, str):
        raise PersonInputError(f"{what} values must be given as a list of texts, not as one text")
    out: list[str] = []
    for n, value in enumerate(values, 1):
        text = _clean_text(value, f"{what} {n}")
        if text not in out and text != exclude:
            out.append(text)
    if len(out) > _MAX_ITEMS:
        raise PersonInputError(f"more than {_MAX_ITEMS} {what}s")
    return tuple(out)


def _label(value: Any, what: str) -> str:
    """An actor or a purpose: short text, no control characters."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PersonInputError(f"{what} is required")
    return _clean_text(value, what, max_len=_MAX_LABEL)


def _timestamp(value: Any) -> str:
    now = _dt.datetime.now(tz=_dt.UTC)
    if value is None:
        moment = now
    elif isinstance(value, _dt.datetime):
        moment = value
    elif isinstance(value, _dt.date):
        moment = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise PersonInputError("consent time is not an ISO 8601 date or date and time (e.g. 2026-03-01 or 2026-03-01T14:00Z)") from None
    else:
        raise PersonInputError("consent time must be a datetime or an ISO 8601 text")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    moment = moment.astimezone(_dt.UTC)
    if moment > now + _CLOCK_SKEW:
        raise PersonInputError("consent time is in the future")
    return moment.isoformat(timespec="seconds")


def _check_embedding(value: Any, n: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise PersonInputError(f"embedding {n} is not an array of numbers") from None
    if array.shape != (EMBEDDING_DIM,):
        raise PersonInputError(f"embedding {n} has shape {array.shape}, not ({EMBEDDING_DIM},)")
    if not np.all(np.isfinite(array)):
        raise PersonInputError(f"embedding {n} has a non-finite value")
    return array.copy()


def _check_pdq(value: Any, n: int) -> str:
    if not isinstance(value, str) or len(value.strip()) != 64 or any(c not in "0123456789abcdef" for c in value.strip().lower()):
        raise PersonInputError(f"PDQ hash {n} is not 64 hex digits")
    return value.strip().lower()


def _fold(text: str) -> str:
    """For name search: compatibility-normalised, case-folded, blanks collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _fold_handle(text: str) -> str:
    return _fold(text).lstrip("@")


# --- the registry -----------------------------------------------------------------------------


class Registry:
    """The registry. Open with :meth:`open`; use as a context manager. One per thread.

    Reads take the acting person (``actor``: who, e.g. a user name) and a ``purpose`` (why, a
    short code such as ``"person find"``); both go to the audit log, so neither may hold a name.
    """

    def __init__(self, db: Database, *, registry_id: str, meta: dict[str, str], sealer: Sealer | None, created: bool) -> None:
        self.db = db
        self.registry_id = registry_id
        self._meta = meta
        self._sealer = sealer
        self.created = created  # True when this open() created the registry

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, target: str | os.PathLike[str] | None = None, key: str | bytes | None = None, *, create: bool = True) -> Registry:
        """Open (and with ``create``, create) the registry at ``target``.

        ``target``: an SQLite path or a postgresql:// URL; default :func:`default_registry_target`.
        ``key``: the operator's key (base64 of 32 bytes, 32 raw bytes, or a passphrase); default
        ``$CONSENTRY_REGISTRY_KEY``. A new registry is encrypted exactly when a key is given. An
        encrypted registry opened without a key is *locked*: status, the audit log and withdrawal
        by id work, reading or adding person data raises :class:`RegistryKeyError`.
        """
        if target is None:
            target = default_registry_target()
        if key is None:
            key = os.environ.get(KEY_ENV) or None
        operator_key = parse_key(key) if key is not None else None
        postgres = is_postgres_url(target)
        if not postgres:
            path = Path(target)
            if not path.exists():
                if not create:
                    raise RegistryError(f"{path}: no registry here (`consentry person add` creates one)")
                _create_private_file(path)
        db = Database.connect(target)
        try:
            if db.dialect == "sqlite":
                db.execute("PRAGMA secure_delete=ON")
                db.execute("PRAGMA temp_store=MEMORY")
            meta, created, sealer = _prepare(db, operator_key, create)
            if sealer is None:
                sealer = _sealer_for(meta, operator_key, db.label)
        except BaseException:
            db.close()
            raise
        return cls(db, registry_id=meta["registry_id"], meta=meta, sealer=sealer, created=created)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @property
    def location(self) -> str:
        """The file path, or the URL with its password masked."""
        return self.db.label

    @property
    def encrypted(self) -> bool:
        return self._meta.get("encryption") == CIPHER

    @property
    def unlocked(self) -> bool:
        return self._sealer is not None

    def _unlocked(self) -> Sealer:
        if self._sealer is None:
            raise RegistryKeyError(f"{self.location}: the registry is encrypted: set CONSENTRY_REGISTRY_KEY to the operator's key")
        return self._sealer

    # --- sealing -------------------------------------------------------------------------------

    def _aad(self, column: str, person_id: str) -> bytes:
        return f"consentry-registry:v1:{self.registry_id}:{column}:{person_id}".encode("ascii")

    def _seal(self, column: str, person_id: str, value: bytes) -> bytes:
        return self._unlocked().seal(value, self._aad(column, person_id))

    def _unseal(self, column: str, person_id: str, blob: bytes) -> bytes:
        try:
            return self._unlocked().open(blob, self._aad(column, person_id))
        except ValueError as exc:
            what = {"record": "record", "face": "face embedding", "pdq": "PDQ hash", "match": "match"}[column]
            raise RegistryError(f"person {person_id}: a stored {what} cannot be read: {exc}") from None

    # --- the audit log -------------------------------------------------------------------------

    def _audit(self, actor: str, action: str, purpose: str, person_ids: Sequence[str], note: str = "") -> tuple[int, str]:
        """Append one entry (joins the caller's transaction)."""
        with self.db.transaction():
            if self.db.dialect == "postgresql":
                self.db.execute("SELECT pg_advisory_xact_lock(?)", (_AUDIT_LOCK,))
            last = self.db.query_one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = int(last["seq"]) + 1 if last else 1
            prev = last["entry_hash"] if last else genesis_hash(self.registry_id)
            at, ids = utc_now(), encode_ids(person_ids)
            digest = entry_hash(seq, at, actor, action, purpose, ids, note, prev)
            self.db.execute(
                "INSERT INTO audit_log (seq, at, actor, action, purpose, person_ids, note, prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action, purpose, ids, note, prev, digest),
            )
        return seq, digest

    def audit_entries(self, *, limit: int | None = None) -> list[AuditEntry]:
        """The audit log in order (the last ``limit`` entries when given). Holds no person data."""
        if limit is not None:
            rows = self.db.query("SELECT * FROM audit_log ORDER BY seq DESC LIMIT ?", (int(limit),))[::-1]
        else:
            rows = self.db.query("SELECT * FROM audit_log ORDER BY seq")
        return [AuditEntry.from_row(r) for r in rows]

    def verify_audit(self, anchor: str | None = None) -> AuditCheck:
        """Check the hash chain; with ``anchor`` (a head hash kept elsewhere), also that the entry
        with that hash is still in the chain (nothing was cut off the end since)."""
        rows = self.db.query("SELECT * FROM audit_log ORDER BY seq")
        return verify_rows(rows, self.registry_id, anchor.strip().lower() if anchor else None)

    def require_intact_audit(self, anchor: str | None = None) -> AuditCheck:
        """:meth:`verify_audit`, raising :class:`AuditTampered` (naming the entry) when it fails."""
        check = self.verify_audit(anchor)
        if not check.ok:
            raise AuditTampered(f"{self.location}: {check.problem}")
        return check

    # --- writing -------------------------------------------------------------------------------

    def add_person(
        self,
        display_name: str,
        *,
        aliases: Iterable[str] = (),
        handles: Iterable[str] = (),
        photos: Sequence[Photo] = (),
        embeddings: Iterable[Any] = (),
        pdq: Iterable[str] = (),
        consent_by: str,
        consent_scope: str,
        entered_by: str,
        consent_at: Any = None,
    ) -> PersonRecord:
        """Register a person. ``photos`` (paths or bytes) are reduced to one face embedding and
        one PDQ hash each and dropped; ``embeddings`` (128 floats each) and ``pdq`` (64-hex
        hashes) are stored as given. Everything is checked, and every photo reduced, before
        anything is written: an error stores nothing."""
        self._unlocked()
        name = _clean_text(display_name, "display name")
        alias_list = _clean_list(aliases, "alias", exclude=name)
        handle_list = _clean_list(handles, "handle")
        consent = Consent(
            by=_clean_text(consent_by, "consent given by"),
            at=_timestamp(consent_at),
            scope=_clean_text(consent_scope, "consent scope"),
            entered_by=_label(entered_by, "entered by"),
        )
        vectors = [_check_embedding(e, n) for n, e in enumerate(embeddings, 1)]
        hashes = [_check_pdq(h, n) for n, h in enumerate(pdq, 1)]
        photo_vectors, photo_hashes = reduce_photos(list(photos))
        vectors += photo_vectors
        hashes = list(dict.fromkeys(hashes + photo_hashes))
        person_id = uuid.uuid4().hex
        created_at = utc_now()
        record = {"display_name": name, "aliases": list(alias_list), "handles": list(handle_list), "consent": consent.as_dict()}
        with self.db.transaction():
            self.db.execute("INSERT INTO people (id, created_at, record) VALUES (?, ?, ?)",
                            (person_id, created_at, self._seal("record", person_id, _json_bytes(record))))  # fmt: skip
            rows = [(person_id, "face", self._seal("face", person_id, v.astype("<f4").tobytes())) for v in vectors]
            rows += [(person_id, "pdq", self._seal("pdq", person_id, h.encode("ascii"))) for h in hashes]
            if rows:
                self.db.executemany("INSERT INTO person_signals (person_id, kind, value) VALUES (?, ?, ?)", rows)
            self._audit(consent.entered_by, "add", "intake", [person_id])
        return PersonRecord(person_id, name, alias_list, handle_list, consent, vectors, hashes, created_at)

    def record_match(self, person_id: str, *, kind: str, target: str, evidence: dict[str, Any], actor: str) -> MatchRecord:
        """Record that ``target`` (a model, file or image reference) matched the person, with the
        evidence. A second match of the same kind and target replaces the first's evidence."""
        actor = _label(actor, "actor")
        kind = _label(kind, "match kind")
        target = _clean_text(target, "match target", max_len=4000)
        if not isinstance(evidence, dict):
            raise PersonInputError("match evidence must be a dict")
        try:
            evidence_json = json.loads(json.dumps(evidence, allow_nan=False))
        except (TypeError, ValueError):
            raise PersonInputError("match evidence must be plain JSON (texts, numbers, lists, dicts)") from None
        if not is_person_id(person_id):
            raise PersonNotFound(None)
        self._unlocked()
        recorded_at = utc_now()
        value = _json_bytes({"kind": kind, "target": target, "evidence": evidence_json, "actor": actor})
        with self.db.transaction():
            if self.db.query_one("SELECT 1 AS x FROM people WHERE id = ?", (person_id,)) is None:
                raise PersonNotFound(person_id)
            existing = None
            for row in self.db.query("SELECT id, value FROM person_matches WHERE person_id = ?", (person_id,)):
                old = json.loads(self._unseal("match", person_id, row["value"]))
                if old["kind"] == kind and old["target"] == target:
                    existing = int(row["id"])
                    break
            sealed = self._seal("match", person_id, value)
            if existing is None:
                match_id = self.db.insert("INSERT INTO person_matches (person_id, recorded_at, value) VALUES (?, ?, ?)",
                                          (person_id, recorded_at, sealed))  # fmt: skip
            else:
                match_id = existing
                self.db.execute("UPDATE person_matches SET recorded_at = ?, value = ? WHERE id = ?", (recorded_at, sealed, existing))
            self._audit(actor, "record_match", "record match", [person_id], f"kind={kind}")
        return MatchRecord(int(match_id or 0), person_id, kind, target, evidence_json, actor, recorded_at)

    # --- reading (every read is audited) ---------------------------------------------------------

    def _signals(self, person_ids: Sequence[str] | None) -> list[tuple[str, str, bytes]]:
        if person_ids is None:
            rows = self.db.query("SELECT person_id, kind, value FROM person_signals ORDER BY id")
        elif not person_ids:
            rows = []
        else:
            marks = ", ".join("?" * len(person_ids))
            rows = self.db.query(f"SELECT person_id, kind, value FROM person_signals WHERE person_id IN ({marks}) ORDER BY id", list(person_ids))
        return [(r["person_id"], r["kind"], bytes(r["value"])) for r in rows]

    def _decode(self, people_rows: Sequence[Any], signal_rows: Sequence[tuple[str, str, bytes]]) -> list[PersonRecord]:
        signals: dict[str, tuple[list[np.ndarray], list[str]]] = {}
        for person_id, kind, blob in signal_rows:
            faces, hashes = signals.setdefault(person_id, ([], []))
            data = self._unseal(kind, person_id, blob)
            if kind == "face":
                faces.append(np.frombuffer(data, dtype="<f4").astype(np.float32))
            else:
                hashes.append(data.decode("ascii"))
        out = []
        for row in people_rows:
            out.append(self._person(row, *signals.get(row["id"], ([], []))))
        return out

    def _person(self, row: Any, faces: list[np.ndarray], hashes: list[str]) -> PersonRecord:
        person_id = row["id"]
        try:
            data = json.loads(self._unseal("record", person_id, row["record"]))
            consent = Consent(**data["consent"])
            return PersonRecord(person_id, data["display_name"], tuple(data["aliases"]), tuple(data["handles"]), consent,
                                faces, hashes, row["created_at"])  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, RegistryError):
                raise
            raise RegistryError(f"person {person_id}: the stored record is malformed") from None

    def _all_rows(self) -> list[Any]:
        return self.db.query("SELECT id, created_at, record FROM people ORDER BY created_at, id")

    def people(self, actor: str, purpose: str) -> list[PersonRecord]:
        """Every registered person, oldest first (one audit entry naming all their ids)."""
        return self._everyone(actor, purpose, "list")

    def people_for_matching(self, actor: str, purpose: str) -> list[PersonRecord]:
        """Every person with names, aliases, handles, embeddings and PDQ hashes, for likeness
        matching: one audit entry (``read_for_matching``) for the whole batch."""
        return self._everyone(actor, purpose, "read_for_matching")

    def _everyone(self, actor: str, purpose: str, action: str) -> list[PersonRecord]:
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        self._unlocked()
        with self.db.transaction():
            rows = self._all_rows()
            signals = self._signals(None)
            self._audit(actor, action, purpose, [r["id"] for r in rows])
        return self._decode(rows, signals)

    def get(self, person_id: str, actor: str, purpose: str) -> PersonRecord:
        """One person by id (audited, also when there is no such person)."""
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        if not isinstance(person_id, str) or not is_person_id(person_id):
            raise PersonNotFound(None)
        self._unlocked()
        with self.db.transaction():
            row = self.db.query_one("SELECT id, created_at, record FROM people WHERE id = ?", (person_id,))
            signals = self._signals([person_id]) if row else []
            self._audit(actor, "get", purpose, [person_id], "" if row else "not found")
        if row is None:
            raise PersonNotFound(person_id)
        return self._decode([row], signals)[0]

    def find_by_name(self, text: str, actor: str, purpose: str) -> list[PersonRecord]:
        """People whose display name, an alias or a handle contains ``text``, compared after
        Unicode compatibility normalisation and case folding (``@`` before a handle ignored).
        The search text is not logged; the audit entry names the ids found."""
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        query = _clean_text(text, "search text")
        self._unlocked()
        folded, folded_handle = _fold(query), _fold_handle(query)
        with self.db.transaction():
            rows = self._all_rows()
            found = []
            for row in rows:
                person = self._person(row, [], [])
                if any(folded in _fold(n) for n in person.names()) or any(folded_handle in _fold_handle(h) for h in person.handles):
                    found.append(row)
            ids = [r["id"] for r in found]
            signals = self._signals(ids)
            self._audit(actor, "find_by_name", purpose, ids, f"{len(ids)} found")
        return self._decode(found, signals)

    def resolve(self, person: str, actor: str, purpose: str) -> PersonRecord:
        """``person`` as an id, else as an exact display name (after Unicode NFC normalisation and
        trimming). Several people with that name: an error listing their ids."""
        if isinstance(person, str) and is_person_id(person.strip()):
            return self.get(person.strip(), actor, purpose)
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        name = _clean_text(person, "person")
        self._unlocked()
        with self.db.transaction():
            rows = [r for r in self._all_rows() if self._person(r, [], []).display_name == name]
            ids = [r["id"] for r in rows]
            signals = self._signals(ids) if len(rows) == 1 else []
            self._audit(actor, "resolve", purpose, ids, f"{len(ids)} found")
        if not rows:
            raise PersonNotFound(None)
        if len(rows) > 1:
            raise RegistryError(f"{len(rows)} people have that display name ({', '.join(ids)}): give the id")
        return self._decode(rows, signals)[0]

    def reference_embeddings(self, actor: str, purpose: str) -> list[tuple[str, np.ndarray]]:
        """Every stored face embedding with its person's id (one audit entry for the batch)."""
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        self._unlocked()
        with self.db.transaction():
            rows = self.db.query("SELECT person_id, value FROM person_signals WHERE kind = 'face' ORDER BY id")
            self._audit(actor, "reference_embeddings", purpose, list(dict.fromkeys(r["person_id"] for r in rows)))
        return [(r["person_id"], np.frombuffer(self._unseal("face", r["person_id"], r["value"]), dtype="<f4").astype(np.float32))
                for r in rows]  # fmt: skip

    def matches(self, person_id: str, actor: str, purpose: str) -> list[MatchRecord]:
        """The matches recorded for a person, oldest first (audited)."""
        actor, purpose = _label(actor, "actor"), _label(purpose, "purpose")
        if not isinstance(person_id, str) or not is_person_id(person_id):
            raise PersonNotFound(None)
        self._unlocked()
        with self.db.transaction():
            exists = self.db.query_one("SELECT 1 AS x FROM people WHERE id = ?", (person_id,)) is not None
            rows = self.db.query("SELECT id, recorded_at, value FROM person_matches WHERE person_id = ? ORDER BY recorded_at, id", (person_id,))
            self._audit(actor, "matches", purpose, [person_id], "" if exists else "not found")
        if not exists:
            raise PersonNotFound(person_id)
        out = []
        for row in rows:
            data = json.loads(self._unseal("match", person_id, row["value"]))
            out.append(MatchRecord(int(row["id"]), person_id, data["kind"], data["target"], data["evidence"], data["actor"], row["recorded_at"]))
        return out

    # --- withdrawal ----------------------------------------------------------------------------

    def withdraw(self, person_id: str, actor: str) -> Withdrawal:
        """Erase the person: names, aliases, handles, consent record, embeddings, PDQ hashes and
        matches, then rebuild the database so no free page or log frame keeps their bytes.
        Leaves one audit entry, "a person record was withdrawn", with the actor and time and no
        person id. Works on a locked (encrypted, no key) registry: erasure never waits for a key."""
        actor = _label(actor, "actor")
        if not isinstance(person_id, str) or not is_person_id(person_id):
            raise PersonNotFound(None)
        if getattr(self.db, "_depth", 0):
            raise RegistryError("withdraw cannot run inside a transaction: the erasure (VACUUM) must follow its commit")
        with self.db.transaction():
            exists = self.db.query_one("SELECT 1 AS x FROM people WHERE id = ?", (person_id,)) is not None
            if exists:
                for table in ("person_matches", "person_signals"):
                    self.db.execute(f"DELETE FROM {table} WHERE person_id = ?", (person_id,))
                self.db.execute("DELETE FROM people WHERE id = ?", (person_id,))
                seq, digest = self._audit(actor, "withdraw", "consent withdrawn", [], WITHDRAWN_NOTE)
        if not exists:
            raise PersonNotFound(person_id)
        at = self.db.query_one("SELECT at FROM audit_log WHERE seq = ?", (seq,))["at"]
        self.compact()
        return Withdrawal(at=at, audit_seq=seq, audit_hash=digest)

    # --- key rotation --------------------------------------------------------------------------

    _SEALED = (  # table, primary key, person id column, the AAD's column name (or the column holding it)
        ("people", "id", "id", "record", "record"),
        ("person_signals", "id", "person_id", "value", None),  # the AAD names the signal's kind
        ("person_matches", "id", "person_id", "value", "match"),
    )
    _ENCRYPTION_META = ("encryption", "kdf", "kdf_salt", "kdf_n", "kdf_r", "kdf_p", "wrapped_key")

    def rekey(self, new_key: str | bytes, actor: str) -> int:
        """Re-encrypt every person value under a fresh data key wrapped by ``new_key`` (a clear
        registry becomes an encrypted one), in one transaction, then rebuild the files so no page
        keeps the old ciphertext or the old wrapped key: afterwards the old key opens nothing.
        Needs the current key. Returns how many values were re-sealed; one audit entry, with
        the count and no person id, records it."""
        actor = _label(actor, "actor")
        old = self._unlocked()
        if getattr(self.db, "_depth", 0):
            raise RegistryError("rekey cannot run inside a transaction: the rebuild (VACUUM) must follow its commit")
        encryption, new = new_encryption(parse_key(new_key), self.registry_id)
        resealed = 0
        with self.db.transaction():
            for table, key, person, value, aad_column in self._SEALED:
                kind = ", kind" if aad_column is None else ""
                for row in self.db.query(f"SELECT {key} AS k, {person} AS person{kind}, {value} AS v FROM {table}"):
                    aad = self._aad(aad_column or row["kind"], row["person"])
                    try:
                        clear = old.open(bytes(row["v"]), aad)
                    except ValueError as exc:
                        raise RegistryError(f"person {row['person']}: a stored value cannot be read, nothing was re-encrypted: {exc}") from None
                    self.db.execute(f"UPDATE {table} SET {value} = ? WHERE {key} = ?", (new.seal(clear, aad), row["k"]))
                    resealed += 1
            marks = ", ".join("?" for _ in self._ENCRYPTION_META)
            self.db.execute(f"DELETE FROM registry_meta WHERE name IN ({marks})", self._ENCRYPTION_META)
            self.db.executemany("INSERT INTO registry_meta (name, value) VALUES (?, ?)", sorted(encryption.items()))
            self._audit(actor, "rekey", "key rotation", [], f"{resealed} values re-encrypted under a new key")
        self._meta = {**{k: v for k, v in self._meta.items() if k not in self._ENCRYPTION_META}, **encryption}
        self._sealer = new
        self.compact()
        return resealed

    def compact(self) -> None:
        """Rebuild the database so deleted data survives nowhere in its files (run by withdraw;
        run again if withdraw reported another connection was in the way)."""
        if self.db.dialect == "sqlite":
            self.db.execute("VACUUM")
            busy = self.db.query_one("PRAGMA wal_checkpoint(TRUNCATE)")
            if busy is None or busy[0] != 0:
                raise RegistryError(
                    f"{self.location}: deleted data may survive in the write-ahead log: another connection is reading "
                    "the registry; close it, then run `consentry registry compact`"
                )
        else:
            for table in ("person_matches", "person_signals", "people", "registry_meta"):
                self.db.execute(f"VACUUM FULL {table}")

    # --- status --------------------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        """Where the registry is, whether it is encrypted and unlocked, and what it holds (counts
        only: no key needed, nothing audited)."""
        counts = {r["kind"]: int(r["n"]) for r in self.db.query("SELECT kind, count(*) AS n FROM person_signals GROUP BY kind")}
        one = lambda sql: int(self.db.query_one(sql)["n"])
        version = self.db.query_one("SELECT max(version) AS v FROM registry_migrations")["v"]
        return RegistryStatus(
            location=self.location,
            backend=self.db.dialect,
            encrypted=self.encrypted,
            kdf=self._meta.get("kdf") if self.encrypted else None,
            unlocked=self.unlocked,
            people=one("SELECT count(*) AS n FROM people"),
            face_embeddings=counts.get("face", 0),
            pdq_hashes=counts.get("pdq", 0),
            matches=one("SELECT count(*) AS n FROM person_matches"),
            audit_entries=one("SELECT count(*) AS n FROM audit_log"),
            schema_version=int(version or 0),
            created_at=self._meta["created_at"],
            registry_id=self.registry_id,
        )


# --- opening helpers ----------------------------------------------------------------------------


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _create_private_file(path: Path) -> None:
    """Create the registry file readable by its owner only (its -wal and -shm take its mode)."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise RegistryError(f"{path}: cannot create the registry: {exc.strerror or exc}") from None


def _prepare(db: Database, key: OperatorKey | None, create: bool) -> tuple[dict[str, str], bool, Sealer | None]:
    """Migrate and read (or, for a new registry, write) the settings, in one transaction."""
    with db.transaction():
        if db.dialect == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        if db.has_table("schema_migrations"):
            raise RegistryError(
                f"{db.label}: this is consentry's store, not a registry: the registry lives in a database of its own "
                "(--registry / CONSENTRY_REGISTRY)"
            )
        if not create and not db.has_table("registry_migrations"):
            raise RegistryError(f"{db.label}: no registry here (`consentry person add` creates one)")
        try:
            db.migrate(REGISTRY_MIGRATIONS, table="registry_migrations", what="registry", lock=_MIGRATION_LOCK)
        except StoreError as exc:
            raise RegistryError(str(exc)) from None
        meta = {r["name"]: r["value"] for r in db.query("SELECT name, value FROM registry_meta")}
        if meta:
            return meta, False, None
        if not create:
            raise RegistryError(f"{db.label}: no registry here (`consentry person add` creates one)")
        registry_id = uuid.uuid4().hex
        meta = {"format": FORMAT_VERSION, "registry_id": registry_id, "created_at": utc_now(), "encryption": "none"}
        sealer: Sealer = Sealer()
        if key is not None:
            encryption, sealer = new_encryption(key, registry_id)
            meta.update(encryption)
        db.executemany("INSERT INTO registry_meta (name, value) VALUES (?, ?)", sorted(meta.items()))
    return meta, True, sealer


def _sealer_for(meta: dict[str, str], key: OperatorKey | None, label: str) -> Sealer | None:
    if meta.get("format") != FORMAT_VERSION:
        raise RegistryError(f"{label}: unknown registry format {meta.get('format')!r}")
    if meta.get("encryption") == "none":
        if key is not None:
            raise RegistryKeyError(
                f"{label}: this registry is not encrypted, but a key was given (CONSENTRY_REGISTRY_KEY): "
                "unset it, or register people in a new, encrypted registry"
            )
        return Sealer()
    if key is None:
        return None  # locked: person data cannot be read or added until the key is given
    return unlock(meta, key, meta["registry_id"], label)
