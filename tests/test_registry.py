"""The consented protected-person registry: encryption at rest, audited reads, the hash-chained
audit log, real erasure on withdrawal, no person data in errors, and its CLI.

The people here are fictional ("Subject Quill Varrow"); the photo tests use the package-shipped
photos only as "subject A" (scikit-image's astronaut) and "subject B" (matplotlib's Hopper photo).
Expected values come from outside the code under test: hashes recomputed with hashlib from the
documented formula, ciphertext opened with cryptography's AESGCM and a key derived with the
standard library's scrypt, erasure checked on the raw bytes of the database files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from consentry.errors import ConsentryError
from consentry.registry import (
    PersonInputError,
    PersonNotFound,
    Registry,
    RegistryError,
    RegistryKeyError,
)
from consentry.store.database import is_postgres_url

NAME = "Quill Varrow"
ALIASES = ("Quillie V.", "Квилл Варроу")
HANDLES = ("@quill_varrow_art",)
CONSENT_BY = "Quill Varrow via advocate Ren Osei"
OTHER = "Marisol Tendai"
RAW_KEY = base64.b64encode(bytes(range(32))).decode()
PASSPHRASE = "a long passphrase for tests only"


def embedding(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, 128).astype(np.float32)


def secrets_of(person_embedding: np.ndarray) -> list[bytes]:
    """Byte strings that must not survive: names, aliases, handle, consent giver, and every
    32-byte slice of the embedding as stored (float32 little-endian)."""
    raw = person_embedding.astype("<f4").tobytes()
    texts = [NAME, *ALIASES, HANDLES[0].lstrip("@"), CONSENT_BY]
    return [t.encode("utf-8") for t in texts] + [raw[i : i + 32] for i in range(0, len(raw), 32)]


def file_bytes(path: Path) -> dict[str, bytes]:
    out = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            out[candidate.name] = candidate.read_bytes()
    return out


def leaks(path: Path, needles: list[bytes]) -> list[tuple[str, int]]:
    """(file name, needle index) for every needle found in the registry's files."""
    return [(name, i) for name, data in file_bytes(path).items() for i, needle in enumerate(needles) if needle in data]


@pytest.fixture(autouse=True)
def _no_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSENTRY_REGISTRY", raising=False)
    monkeypatch.delenv("CONSENTRY_REGISTRY_KEY", raising=False)
    monkeypatch.setenv("USER", "advocate-ren")


@pytest.fixture
def registry_target(store_target: str, tmp_path: Path) -> str:
    """A fresh registry on SQLite (in a folder of its own) and on PostgreSQL (a schema of its own)."""
    if is_postgres_url(store_target):
        return store_target
    return str(tmp_path / "registry" / "registry.db")


def add_quill(registry: Registry, **extra):
    return registry.add_person(NAME, aliases=ALIASES, handles=HANDLES, embeddings=[embedding(1)], pdq=["f" * 16 + "0" * 48],
                               consent_by=CONSENT_BY, consent_scope="search hubs and request takedowns", entered_by="advocate-ren",
                               consent_at="2026-03-01T14:00+02:00", **extra)  # fmt: skip


# --- records -------------------------------------------------------------------------------------


def test_add_and_read_back(registry_target: str):
    with Registry.open(registry_target) as registry:
        person = add_quill(registry)
        twin = registry.add_person(NAME, consent_by="x", consent_scope="y", entered_by="z")
        got = registry.get(person.id, "advocate-ren", "test")
    assert len(person.id) == 32 and int(person.id, 16) >= 0 and person.id != twin.id  # random, not from the name
    assert person.id != hashlib.md5(NAME.encode()).hexdigest()
    assert got.display_name == NAME and got.aliases == ALIASES and got.handles == HANDLES
    assert got.consent.by == CONSENT_BY and got.consent.scope == "search hubs and request takedowns"
    assert got.consent.at == "2026-03-01T12:00:00+00:00"  # 14:00 at UTC+2
    assert got.consent.entered_by == "advocate-ren"
    assert len(got.embeddings) == 1 and got.embeddings[0].dtype == np.float32
    assert np.array_equal(got.embeddings[0], embedding(1))
    assert got.pdq == ["f" * 16 + "0" * 48]
    assert NAME not in repr(got) and NAME not in repr(got.consent)


def test_find_resolve_and_matching_reads(registry_target: str):
    with Registry.open(registry_target) as registry:
        quill = add_quill(registry)
        other = registry.add_person(OTHER, embeddings=[embedding(2), embedding(3)], consent_by=OTHER, consent_scope="search",
                                    entered_by="advocate-ren")  # fmt: skip
        assert [p.id for p in registry.find_by_name("quillie", "advocate-ren", "t")] == [quill.id]
        assert [p.id for p in registry.find_by_name("КВИЛЛ", "advocate-ren", "t")] == [quill.id]  # case-folded Cyrillic
        assert [p.id for p in registry.find_by_name("@quill_varrow", "advocate-ren", "t")] == [quill.id]
        assert registry.find_by_name("nobody at all", "advocate-ren", "t") == []
        assert registry.resolve(OTHER, "advocate-ren", "t").id == other.id
        assert registry.resolve(quill.id, "advocate-ren", "t").id == quill.id
        pairs = registry.reference_embeddings("advocate-ren", "likeness")
        assert [pid for pid, _ in pairs] == [quill.id, other.id, other.id]
        assert np.array_equal(pairs[2][1], embedding(3))
        everyone = registry.people_for_matching("lead-code", "likeness")
        assert {p.id: p.names() for p in everyone} == {quill.id: (NAME, *ALIASES), other.id: (OTHER,)}
        with pytest.raises(PersonNotFound) as err:
            registry.resolve("Nobody Known", "advocate-ren", "t")
        assert "Nobody" not in str(err.value)


def test_every_read_is_audited_without_person_data(registry_target: str):
    with Registry.open(registry_target) as registry:
        quill = add_quill(registry)
        registry.get(quill.id, "alice", "casework")
        registry.people("bob", "review")
        registry.find_by_name(NAME, "carol", "search")
        registry.reference_embeddings("dan", "likeness")
        registry.people_for_matching("erin", "likeness")
        registry.record_match(quill.id, kind="model", target="civitai:101", evidence={"title": f"{NAME} LoRA"}, actor="fay")
        registry.matches(quill.id, "gus", "casework")
        with pytest.raises(PersonNotFound):
            registry.get("0" * 32, "hal", "casework")
        entries = registry.audit_entries()
    assert [(e.actor, e.action, e.purpose, e.person_ids) for e in entries] == [
        ("advocate-ren", "add", "intake", (quill.id,)),
        ("alice", "get", "casework", (quill.id,)),
        ("bob", "list", "review", (quill.id,)),
        ("carol", "find_by_name", "search", (quill.id,)),
        ("dan", "reference_embeddings", "likeness", (quill.id,)),
        ("erin", "read_for_matching", "likeness", (quill.id,)),
        ("fay", "record_match", "record match", (quill.id,)),
        ("gus", "matches", "casework", (quill.id,)),
        ("hal", "get", "casework", ("0" * 32,)),
    ]
    assert entries[-1].note == "not found"
    dumped = json.dumps([e.as_dict() for e in entries], ensure_ascii=False).casefold()
    for text in (NAME, *ALIASES, HANDLES[0], "quill", "varrow"):
        assert text.casefold() not in dumped


# --- the audit chain -----------------------------------------------------------------------------


def recompute(rows: list[dict], registry_id: str) -> list[str]:
    """The chain from the documented formula, written here independently."""
    prev = hashlib.sha256(b"consentry-registry-audit-genesis:" + registry_id.encode()).hexdigest()
    out = []
    for row in rows:
        h = hashlib.sha256(b"consentry-registry-audit-v1\n")
        for field in (str(row["seq"]), row["at"], row["actor"], row["action"], row["purpose"], row["person_ids"], row["note"], prev):
            data = field.encode()
            h.update(len(data).to_bytes(4, "big") + data)
        prev = h.hexdigest()
        out.append(prev)
    return out


def test_audit_chain_matches_the_documented_formula(registry_target: str):
    with Registry.open(registry_target) as registry:
        quill = add_quill(registry)
        registry.get(quill.id, "alice", "casework")
        registry.withdraw(quill.id, "alice")
        rows = [dict(r) for r in registry.db.query("SELECT * FROM audit_log ORDER BY seq")]
        check = registry.verify_audit()
        registry_id = registry.registry_id
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert [r["entry_hash"] for r in rows] == recompute(rows, registry_id)
    assert check.ok and check.entries == 3 and check.head == rows[-1]["entry_hash"]


def test_audit_tampering_is_detected_and_named(registry_target: str):
    with Registry.open(registry_target) as registry:
        quill = add_quill(registry)
        for purpose in ("casework", "review", "takedown"):
            registry.get(quill.id, "alice", purpose)
        head = registry.verify_audit().head
        registry.db.execute("UPDATE audit_log SET purpose = 'reviex' WHERE seq = 3")  # one byte changed
        check = registry.verify_audit()
        assert not check.ok and check.bad_seq == 3 and "entry #3" in check.problem
        with pytest.raises(RegistryError, match="entry #3"):
            registry.require_intact_audit()
        registry.db.execute("UPDATE audit_log SET purpose = 'review' WHERE seq = 3")
        assert registry.verify_audit().ok
        registry.db.execute("DELETE FROM audit_log WHERE seq = 2")
        check = registry.verify_audit()
        assert not check.ok and check.bad_seq == 2 and "entry #2 is missing" in check.problem
    with Registry.open(registry_target) as registry:  # truncation shows only against a kept head
        registry.db.execute("DELETE FROM audit_log WHERE seq >= 2")
        assert registry.verify_audit().ok
        check = registry.verify_audit(anchor=head)
        assert not check.ok and "truncated" in check.problem


def test_audit_byte_flipped_in_the_sqlite_file(tmp_path: Path):
    path = tmp_path / "registry.db"
    with Registry.open(path) as registry:
        quill = add_quill(registry)
        registry.get(quill.id, "alice", "purpose-under-test")
        registry.get(quill.id, "alice", "casework")
    data = bytearray(path.read_bytes())  # closing checkpointed the WAL into the file
    at = data.index(b"purpose-under-test")
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with Registry.open(path) as registry:
        check = registry.verify_audit()
    assert not check.ok and check.bad_seq == 2 and check.problem == "audit log: entry #2 was altered: its hash does not match its contents"


# --- withdrawal ----------------------------------------------------------------------------------


def test_withdraw_erases_from_the_sqlite_files(tmp_path: Path):
    path = tmp_path / "registry" / "registry.db"
    with Registry.open(path) as registry:
        quill = add_quill(registry)
        kept = registry.add_person(OTHER, embeddings=[embedding(2)], consent_by=OTHER, consent_scope="search", entered_by="ren")
        registry.record_match(quill.id, kind="model", target="civitai:777", evidence={"title": f"{NAME} v2", "alias": ALIASES[1]},
                              actor="ren")  # fmt: skip
        idle_reader = sqlite3.connect(path)  # another connection, idle: must not keep the log alive
        idle_reader.execute("SELECT count(*) FROM people").fetchone()
        needles = secrets_of(embedding(1))
        assert len(leaks(path, needles)) >= len(needles)  # stored in clear before: the check below means something
        receipt = registry.withdraw(quill.id, "ren")
        assert leaks(path, needles) == [], "person data left in the database files after withdrawal"
        assert Path(str(path) + "-wal").stat().st_size == 0
        with pytest.raises(PersonNotFound, match=quill.id):
            registry.get(quill.id, "ren", "check")
        assert registry.find_by_name("quill", "ren", "check") == []
        assert [pid for pid, _ in registry.reference_embeddings("ren", "check")] == [kept.id]
        assert registry.get(kept.id, "ren", "check").display_name == OTHER
        counts = [registry.db.query_one(f"SELECT count(*) AS n FROM {t}")["n"] for t in ("people", "person_signals", "person_matches")]
        assert counts == [1, 1, 0]
        entries = registry.audit_entries()
        assert registry.verify_audit().ok
    idle_reader.close()
    withdrawal = [e for e in entries if e.action == "withdraw"]
    assert len(withdrawal) == 1 and withdrawal[0].seq == receipt.audit_seq
    assert withdrawal[0].person_ids == () and withdrawal[0].note == "a person record was withdrawn" and withdrawal[0].actor == "ren"
    assert leaks(path, needles) == []  # also once closed


def test_withdraw_with_a_reader_in_the_way_then_compact(tmp_path: Path):
    """A connection in the middle of a read keeps old WAL frames alive: withdrawal says so, and
    `compact` finishes the job once the reader is gone."""
    path = tmp_path / "registry.db"
    with Registry.open(path) as registry:
        quill = add_quill(registry)
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM people").fetchone()
        registry.db.execute("PRAGMA busy_timeout=100")
        with pytest.raises(RegistryError, match="another connection is reading the registry.*registry compact") as err:
            registry.withdraw(quill.id, "ren")
        assert NAME not in str(err.value)
        reader.rollback()
        reader.close()
        registry.compact()
        assert leaks(path, secrets_of(embedding(1))) == []
        assert registry.status().people == 0


@pytest.fixture
def postgres_target():
    """A schema of its own on the test PostgreSQL server (skipped locally without one)."""
    from conftest import postgres_admin_url, postgres_schema

    with postgres_schema(postgres_admin_url()) as url:
        yield url


def test_withdraw_on_postgresql_rewrites_the_tables(postgres_target: str):
    import psycopg

    with Registry.open(postgres_target) as registry:
        quill = add_quill(registry)
        registry.add_person(OTHER, consent_by=OTHER, consent_scope="search", entered_by="ren")
        registry.record_match(quill.id, kind="model", target="hf:x/y", evidence={"title": NAME}, actor="ren")
        db = registry.db

        def heap_files() -> bytes | None:
            try:
                db.execute("CHECKPOINT")  # shared buffers to disk, so the files show what the server keeps
                rows = [db.query_one("SELECT pg_read_binary_file(pg_relation_filepath(?)) AS b", (t,))["b"]
                        for t in ("people", "person_signals", "person_matches")]  # fmt: skip
            except psycopg.errors.InsufficientPrivilege:  # not a superuser: no file check on this server
                return None
            return b"".join(bytes(r) for r in rows)

        filenodes = [db.query_one("SELECT pg_relation_filenode(?) AS f", (t,))["f"] for t in ("people", "person_signals")]
        before = heap_files()
        registry.withdraw(quill.id, "ren")
        after = heap_files()
        assert [db.query_one("SELECT pg_relation_filenode(?) AS f", (t,))["f"] for t in ("people", "person_signals")] != filenodes
        with pytest.raises(PersonNotFound):
            registry.get(quill.id, "ren", "check")
        assert [p.display_name for p in registry.people("ren", "check")] == [OTHER]
        assert db.query_one("SELECT count(*) AS n FROM person_matches")["n"] == 0
    if before is not None:
        needles = secrets_of(embedding(1))
        assert all(n in before for n in needles[:3])
        assert [i for i, n in enumerate(needles) if n in after] == []


def test_withdraw_unknown_or_not_an_id(registry_target: str):
    with Registry.open(registry_target) as registry:
        with pytest.raises(PersonNotFound, match="no person 0{32} in the registry"):
            registry.withdraw("0" * 32, "ren")
        with pytest.raises(PersonNotFound) as err:
            registry.withdraw(NAME, "ren")
        assert NAME not in str(err.value)
        assert registry.audit_entries() == []


# --- encryption at rest --------------------------------------------------------------------------


def test_encrypted_registry_never_holds_person_data_in_clear(tmp_path: Path):
    path = tmp_path / "registry.db"
    needles = secrets_of(embedding(1)) + [b"civitai:555"]
    with Registry.open(path, key=RAW_KEY) as registry:
        quill = add_quill(registry)
        registry.record_match(quill.id, kind="model", target="civitai:555", evidence={"title": NAME}, actor="ren")
        assert registry.get(quill.id, "ren", "t").display_name == NAME
        assert leaks(path, needles) == []
        registry.withdraw(quill.id, "ren")
        assert leaks(path, needles) == []
    assert leaks(path, needles) == []


def test_encryption_format_opens_with_independent_tools(tmp_path: Path):
    """The stored layout as documented: the data key wrapped under the operator's key, each
    value sealed with AAD naming registry, column and person. Opened here with cryptography's
    AESGCM directly, the passphrase's key derived with hashlib.scrypt."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    for key in (RAW_KEY, PASSPHRASE):
        path = tmp_path / f"{len(key)}.db"
        with Registry.open(path, key=key) as registry:
            quill = add_quill(registry)
        con = sqlite3.connect(path)
        meta = dict(con.execute("SELECT name, value FROM registry_meta"))
        blob = con.execute("SELECT record FROM people WHERE id = ?", (quill.id,)).fetchone()[0]
        face = con.execute("SELECT value FROM person_signals WHERE person_id = ? AND kind = 'face'", (quill.id,)).fetchone()[0]
        con.close()
        if key == RAW_KEY:
            assert meta["kdf"] == "raw"
            kek = base64.b64decode(RAW_KEY)
        else:
            assert meta["kdf"] == "scrypt" and (meta["kdf_n"], meta["kdf_r"], meta["kdf_p"]) == ("32768", "8", "1")
            kek = hashlib.scrypt(PASSPHRASE.encode(), salt=base64.b64decode(meta["kdf_salt"]), n=32768, r=8, p=1, maxmem=64 << 20, dklen=32)
        wrapped = base64.b64decode(meta["wrapped_key"])
        data_key = AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], b"consentry-registry:key-wrap:v1:" + meta["registry_id"].encode())
        aad = f"consentry-registry:v1:{meta['registry_id']}:record:{quill.id}".encode()
        assert blob[0] == 1
        record = json.loads(AESGCM(data_key).decrypt(blob[1:13], blob[13:], aad))
        assert record["display_name"] == NAME and record["aliases"] == list(ALIASES)
        face_aad = f"consentry-registry:v1:{meta['registry_id']}:face:{quill.id}".encode()
        assert AESGCM(data_key).decrypt(face[1:13], face[13:], face_aad) == embedding(1).astype("<f4").tobytes()


def test_wrong_key_missing_key_and_key_for_clear_registry(tmp_path: Path):
    path = tmp_path / "registry.db"
    with Registry.open(path, key=PASSPHRASE) as registry:
        quill = add_quill(registry)
    with pytest.raises(RegistryKeyError, match="wrong registry key") as err:
        Registry.open(path, key=PASSPHRASE + "!")
    assert NAME not in str(err.value)
    with pytest.raises(RegistryKeyError, match="encrypted with a passphrase, but CONSENTRY_REGISTRY_KEY is a base64 32-byte key"):
        Registry.open(path, key=RAW_KEY)
    with Registry.open(path) as locked:  # no key: status, audit and withdrawal by id still work
        status = locked.status()
        assert status.encrypted and not status.unlocked and status.people == 1 and status.kdf == "scrypt"
        with pytest.raises(RegistryKeyError, match="is encrypted: set CONSENTRY_REGISTRY_KEY"):
            locked.get(quill.id, "ren", "t")
        assert locked.verify_audit().ok
        locked.withdraw(quill.id, "ren")
        assert locked.status().people == 0
    clear = tmp_path / "clear.db"
    Registry.open(clear).close()
    with pytest.raises(RegistryKeyError, match="not encrypted, but a key was given"):
        Registry.open(clear, key=RAW_KEY)
    with Registry.open(clear) as registry:
        assert not registry.status().encrypted


def test_key_forms(tmp_path: Path):
    from consentry.registry.crypto import parse_key

    raw = bytes(range(100, 132))
    for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b64encode(raw).decode() + "\n"):
        parsed = parse_key(text)
        assert parsed.kind == "raw" and parsed.material == raw and "material=<hidden>" in repr(parsed)
    assert parse_key("x" * 44).kind == "passphrase"  # 44 characters, but not the base64 of 32 bytes
    with pytest.raises(RegistryKeyError, match="at least 12 characters"):
        parse_key("short")
    with pytest.raises(RegistryKeyError):
        parse_key(b"\x00" * 31)
    # the environment supplies the key when none is passed
    os.environ["CONSENTRY_REGISTRY_KEY"] = RAW_KEY
    try:
        with Registry.open(tmp_path / "env.db") as registry:
            assert registry.encrypted
    finally:
        del os.environ["CONSENTRY_REGISTRY_KEY"]


def test_tampered_ciphertext_is_an_error_naming_the_id(tmp_path: Path):
    path = tmp_path / "registry.db"
    with Registry.open(path, key=RAW_KEY) as registry:
        quill = add_quill(registry)
        other = registry.add_person(OTHER, consent_by=OTHER, consent_scope="s", entered_by="ren")
        # a sealed record moved to another person's row fails authentication (AAD binds the id)
        registry.db.execute("UPDATE people SET record = (SELECT record FROM people WHERE id = ?) WHERE id = ?", (quill.id, other.id))
        with pytest.raises(RegistryError, match=f"person {other.id}: a stored record cannot be read: it fails authentication") as err:
            registry.get(other.id, "ren", "t")
        assert NAME not in str(err.value) and OTHER not in str(err.value)


# --- key rotation --------------------------------------------------------------------------------


def _sealed_blobs(registry: Registry) -> list[bytes]:
    rows = registry.db.query("SELECT record AS v FROM people UNION ALL SELECT value FROM person_signals "
                             "UNION ALL SELECT value FROM person_matches")  # fmt: skip
    return [bytes(r["v"]) for r in rows]


def test_rekey_moves_every_value_to_the_new_key(registry_target: str):
    with Registry.open(registry_target, key=RAW_KEY) as registry:
        quill = add_quill(registry)
        other = registry.add_person(OTHER, embeddings=[embedding(2)], consent_by=OTHER, consent_scope="s", entered_by="ren")
        registry.record_match(quill.id, kind="model", target="civitai:555", evidence={"title": NAME}, actor="ren")
        before = _sealed_blobs(registry)
        assert len(before) == 6  # 2 records, 2 embeddings + 1 PDQ hash, 1 match
        assert registry.rekey(PASSPHRASE, "ren") == 6
        after = _sealed_blobs(registry)
        assert not set(before) & set(after)  # every value sealed anew
        rekeyed = [e for e in registry.audit_entries() if e.action == "rekey"]
        assert len(rekeyed) == 1 and rekeyed[0].person_ids == () and rekeyed[0].actor == "ren" and NAME not in rekeyed[0].note
        assert registry.verify_audit().ok
    with pytest.raises(RegistryKeyError, match="encrypted with a passphrase"):
        Registry.open(registry_target, key=RAW_KEY)
    with Registry.open(registry_target, key=PASSPHRASE) as registry:
        got = registry.get(quill.id, "ren", "t")
        assert (got.display_name, got.aliases, got.handles, got.pdq) == (NAME, ALIASES, HANDLES, ["f" * 16 + "0" * 48])
        np.testing.assert_array_equal(got.embeddings[0], embedding(1))
        assert dict(registry.reference_embeddings("ren", "t")).keys() == {quill.id, other.id}
        assert registry.matches(quill.id, "ren", "t")[0].evidence == {"title": NAME}
        assert registry.status().kdf == "scrypt"


def test_rekey_leaves_no_old_ciphertext_or_wrapped_key_in_the_files(tmp_path: Path):
    path = tmp_path / "registry.db"
    with Registry.open(path, key=RAW_KEY) as registry:
        add_quill(registry)
        old_wrapped = registry.db.query_one("SELECT value FROM registry_meta WHERE name = 'wrapped_key'")["value"].encode()
        old = [blob[13:45] for blob in _sealed_blobs(registry)]  # 32 bytes of each ciphertext, after version and nonce
        assert len(leaks(path, [old_wrapped, *old])) >= 1 + len(old)  # present before: the check below means something
        registry.rekey(PASSPHRASE, "ren")
        assert leaks(path, [old_wrapped, *old]) == []
    assert leaks(path, [old_wrapped, *old]) == []


def test_rekey_encrypts_a_clear_registry(tmp_path: Path):
    path = tmp_path / "registry.db"
    needles = secrets_of(embedding(1))
    with Registry.open(path) as registry:
        quill = add_quill(registry)
        assert len(leaks(path, needles)) >= len(needles)
        registry.rekey(RAW_KEY, "ren")
        assert registry.encrypted and leaks(path, needles) == []
    with pytest.raises(RegistryKeyError, match="is encrypted: set CONSENTRY_REGISTRY_KEY"):
        with Registry.open(path) as locked:
            locked.get(quill.id, "ren", "t")
    with Registry.open(path, key=RAW_KEY) as registry:
        assert registry.get(quill.id, "ren", "t").display_name == NAME


def test_rekey_without_the_key_or_over_a_damaged_value_changes_nothing(tmp_path: Path):
    path = tmp_path / "registry.db"
    with Registry.open(path, key=RAW_KEY) as registry:
        quill = add_quill(registry)
        other = registry.add_person(OTHER, consent_by=OTHER, consent_scope="s", entered_by="ren")
    with Registry.open(path) as locked, pytest.raises(RegistryKeyError, match="set CONSENTRY_REGISTRY_KEY"):
        locked.rekey(PASSPHRASE, "ren")
    with Registry.open(path, key=RAW_KEY) as registry:
        registry.db.execute("UPDATE people SET record = (SELECT record FROM people WHERE id = ?) WHERE id = ?", (quill.id, other.id))
        before = _sealed_blobs(registry)
        with pytest.raises(RegistryError, match=f"person {other.id}: a stored value cannot be read, nothing was re-encrypted") as err:
            registry.rekey(PASSPHRASE, "ren")
        assert NAME not in str(err.value) and OTHER not in str(err.value)
        assert _sealed_blobs(registry) == before
        assert registry.get(quill.id, "ren", "t").display_name == NAME  # still the old key's
        assert [e.action for e in registry.audit_entries()].count("rekey") == 0


# --- input and errors ----------------------------------------------------------------------------


def test_bad_input_names_the_field_never_the_value(registry_target: str):
    with Registry.open(registry_target) as registry:
        cases = [
            (dict(aliases=[NAME + "\x07"]), "alias 1 contains a control character"),
            (dict(embeddings=[np.zeros(127)]), r"embedding 1 has shape \(127,\), not \(128,\)"),
            (dict(embeddings=[np.full(128, np.nan)]), "embedding 1 has a non-finite value"),
            (dict(pdq=["zz"]), "PDQ hash 1 is not 64 hex digits"),
            (dict(consent_at="2999-01-01"), "consent time is in the future"),
            (dict(consent_at=f"when {NAME} said yes"), "consent time is not an ISO 8601"),
            (dict(aliases=NAME), "alias values must be given as a list"),
        ]
        for extra, message in cases:
            kwargs = dict(consent_by=CONSENT_BY, consent_scope="s", entered_by="ren") | extra
            with pytest.raises(PersonInputError, match=message) as err:
                registry.add_person(NAME, **kwargs)
            assert NAME not in str(err.value)
        with pytest.raises(PersonInputError, match="display name is empty"):
            registry.add_person("  ", consent_by="x", consent_scope="s", entered_by="ren")
        with pytest.raises(PersonInputError, match="actor is required"):
            registry.people("", "t")
        assert registry.status().people == 0 and registry.audit_entries() == []
        a = registry.add_person(NAME, consent_by="x", consent_scope="s", entered_by="ren")
        b = registry.add_person(NAME, consent_by="x", consent_scope="s", entered_by="ren")
        with pytest.raises(RegistryError) as err:
            registry.resolve(NAME, "ren", "t")
        assert a.id in str(err.value) and b.id in str(err.value) and NAME not in str(err.value)


def test_record_match_replaces_and_needs_a_person(registry_target: str):
    with Registry.open(registry_target) as registry:
        quill = add_quill(registry)
        first = registry.record_match(quill.id, kind="model", target="civitai:1", evidence={"score": 0.7}, actor="lead")
        registry.record_match(quill.id, kind="image", target="civitai-image:9", evidence={"distance": 0.31}, actor="lead")
        again = registry.record_match(quill.id, kind="model", target="civitai:1", evidence={"score": 0.9}, actor="lead")
        found = registry.matches(quill.id, "ren", "casework")
        assert again.id == first.id
        assert [(m.kind, m.target, m.evidence) for m in found] == [("image", "civitai-image:9", {"distance": 0.31}),
                                                                  ("model", "civitai:1", {"score": 0.9})]  # fmt: skip
        with pytest.raises(PersonNotFound):
            registry.record_match("1" * 32, kind="model", target="x", evidence={}, actor="lead")
        with pytest.raises(PersonInputError, match="plain JSON"):
            registry.record_match(quill.id, kind="model", target="x", evidence={"v": object()}, actor="lead")


def test_registry_lives_apart_from_the_store(tmp_path: Path):
    from consentry.store import Store

    Store.open(tmp_path / "consentry.db").close()
    with pytest.raises(RegistryError, match="this is consentry's store, not a registry"):
        Registry.open(tmp_path / "consentry.db")
    with pytest.raises(RegistryError, match="no registry here"):
        Registry.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    # and the other way round: a store command pointed at the registry refuses it, changing nothing
    path = tmp_path / "registry.db"
    with Registry.open(path) as registry:
        quill = add_quill(registry)
    before = sqlite3.connect(path).execute("SELECT name FROM sqlite_master ORDER BY name").fetchall()
    from consentry.errors import StoreError

    with pytest.raises(StoreError, match="this is a protected-person registry, not consentry's store"):
        Store.open(path)
    from consentry.cli import cli

    refused = CliRunner().invoke(cli, ["--db", str(path), "bank", "list"])
    assert refused.exit_code != 0 and "protected-person registry" in refused.stderr
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master ORDER BY name").fetchall() == before
    with Registry.open(path) as registry:
        registry.withdraw(quill.id, "ren")  # still a registry, withdrawal still works


def test_default_location_and_private_files(tmp_path: Path):
    with Registry.open() as registry:
        add_quill(registry)
        location = Path(registry.location)
        assert location == Path(os.environ["XDG_DATA_HOME"]) / "consentry" / "registry.db"
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in location.parent.iterdir() if p.name.startswith("registry.db")}
    assert modes and set(modes.values()) == {0o600}, modes


# --- photos (consentry.images) -------------------------------------------------------------------


def _photo_files(tmp_path: Path) -> dict[str, Path]:
    pytest.importorskip("consentry.images.faces")
    import matplotlib
    from PIL import Image
    from skimage import data

    out = tmp_path / "photos"
    out.mkdir()
    a = Image.fromarray(data.astronaut())
    a.save(out / "subject_a.jpg", quality=92)
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    b = Image.open(hopper).convert("RGB")
    b.save(out / "subject_b.png")
    both = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    both.save(out / "two_people.png")
    Image.fromarray(data.coffee()).save(out / "no_face.png")
    return {"a": out / "subject_a.jpg", "b": out / "subject_b.png", "two": out / "two_people.png", "none": out / "no_face.png"}


def test_photos_become_embeddings_and_are_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    photos = _photo_files(tmp_path)
    from PIL import Image

    from consentry.images.faces import SAME_PERSON_DISTANCE, face_distance

    scratch = tmp_path / "tmpdir"  # where Python, SQLite and the image libraries would put temporary files
    scratch.mkdir()
    for variable in ("TMPDIR", "SQLITE_TMPDIR"):
        monkeypatch.setenv(variable, str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    started = time.time() - 1
    path = tmp_path / "registry" / "registry.db"
    with Registry.open(path) as registry:
        a = registry.add_person("Subject A", photos=[photos["a"]], consent_by="subject A", consent_scope="tests", entered_by="ren")
        b = registry.add_person("Subject B", photos=[photos["b"].read_bytes()], consent_by="subject B", consent_scope="tests",
                                entered_by="ren")  # fmt: skip
        assert len(a.embeddings) == 1 and len(b.embeddings) == 1 and len(a.pdq) == 1 and len(a.pdq[0]) == 64
        assert face_distance(a.embeddings[0], b.embeddings[0]) > SAME_PERSON_DISTANCE  # two different people
        stored = registry.reference_embeddings("ren", "t")
        assert np.array_equal(stored[0][1], a.embeddings[0]) and np.array_equal(stored[1][1], b.embeddings[0])
        written = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != photos["a"].parent]
        written += [p for d in ("/tmp", "/var/tmp", "/dev/shm") if os.path.isdir(d) for p in Path(d).iterdir()
                    if p.is_file() and p.stat().st_mtime >= started]  # fmt: skip
        assert path in written
        for key in ("a", "b"):
            photo = photos[key].read_bytes()
            windows = [photo[i : i + 64] for i in range(len(photo) // 8, len(photo) - 64, len(photo) // 8)]
            for file in written:
                try:
                    content = file.read_bytes()
                except OSError:
                    continue
                assert not any(w in content for w in windows), f"{file} holds bytes of the reference photo"
        # nor the decoded pixels: a row of subject B's photo is in none of the registry's files
        pixels = np.asarray(Image.open(photos["b"]).convert("RGB"))
        row = pixels[pixels.shape[0] // 2].tobytes()[:300]
        assert all(row not in data for data in file_bytes(path).values())


def test_photo_with_no_face_or_two_faces_stores_nothing(tmp_path: Path):
    photos = _photo_files(tmp_path)
    with Registry.open(tmp_path / "registry.db") as registry:
        with pytest.raises(RegistryError, match=r"^photo 2: no face found.*nothing was stored"):
            registry.add_person("Subject A", photos=[photos["a"], photos["none"]], consent_by="x", consent_scope="s", entered_by="ren")
        with pytest.raises(RegistryError, match=r"^photo 1: 2 faces found") as err:
            registry.add_person("Subject A", photos=[photos["two"]], consent_by="x", consent_scope="s", entered_by="ren")
        assert "Subject A" not in str(err.value)
        not_image = tmp_path / "notes.jpg"
        not_image.write_text("not a photo at all")
        with pytest.raises(ConsentryError, match=r"^photo 2: ") as err:
            registry.add_person("Subject A", photos=[photos["a"], not_image], consent_by="x", consent_scope="s", entered_by="ren")
        assert err.value.exit_code == 2 and "notes" not in str(err.value)  # never the file's name: often the person's
        with pytest.raises(RegistryError, match=r"^photo 2: the same picture as an earlier photo"):
            registry.add_person("Subject A", photos=[photos["a"], photos["a"]], consent_by="x", consent_scope="s", entered_by="ren")
        missing = tmp_path / "Subject_A_private.jpg"
        with pytest.raises(ConsentryError, match=r"^photo 1: ") as err:
            registry.add_person("Subject A", photos=[missing], consent_by="x", consent_scope="s", entered_by="ren")
        assert "Subject" not in str(err.value)
        status = registry.status()
        assert (status.people, status.face_embeddings, status.audit_entries) == (0, 0, 0)
    from consentry.cli.people import person_group

    reg = str(tmp_path / "cli.db")
    two = run(person_group, ["--registry", reg, "add", "Subject B", "--photo", str(photos["two"]), "--consent-by", "x",
                             "--consent-scope", "s"])  # fmt: skip
    note, error = two.stderr.splitlines()  # the new registry's note, then the one error line
    assert two.exit_code == 2 and "WITHOUT encryption" in note
    assert error.startswith("consentry: error: photo 1: 2 faces found") and error.endswith("nothing was stored")
    assert str(photos["two"]) not in two.stderr
    one = run(person_group, ["--registry", reg, "add", "Subject B", "--photo", str(photos["b"]), "--consent-by", "x",
                             "--consent-scope", "s"])  # fmt: skip
    assert one.exit_code == 0 and "1 face embedding(s), 1 PDQ hash(es) from 1 photo(s); the photos were not stored" in one.stdout


# --- the CLI -------------------------------------------------------------------------------------


def run(group, args: list[str], **env: str):
    result = CliRunner().invoke(group, args, env=env or None, catch_exceptions=False)
    return result


def test_cli_add_list_show_withdraw(tmp_path: Path):
    from consentry.cli.people import person_group, registry_group

    reg = str(tmp_path / "r" / "registry.db")
    added = run(person_group, ["--registry", reg, "add", NAME, "--alias", ALIASES[0], "--handle", HANDLES[0],
                               "--consent-by", CONSENT_BY, "--consent-scope", "takedowns", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    person_id = json.loads(added.stdout)["id"]
    assert "WITHOUT encryption" in added.stderr
    listed = run(person_group, ["--registry", reg, "list"])
    assert listed.exit_code == 0 and person_id in listed.stdout and NAME in listed.stdout
    shown = run(person_group, ["--registry", reg, "show", NAME, "--json"])
    assert json.loads(shown.stdout)["consent"]["entered_by"] == "advocate-ren"  # $USER
    status = run(registry_group, ["--registry", reg, "status"])
    assert "NOT encrypted" in status.stdout and "people      1" in status.stdout
    refused = run(person_group, ["--registry", reg, "withdraw", person_id], )
    assert refused.exit_code == 1 and "Aborted" in refused.output
    gone = run(person_group, ["--registry", reg, "withdraw", NAME, "--yes", "--actor", "ren"])
    assert gone.exit_code == 0 and "audit entry #" in gone.stdout and NAME not in gone.stdout
    missing = run(person_group, ["--registry", reg, "show", NAME])
    assert missing.exit_code == 1 and missing.stderr == "consentry: error: no person with that id or display name in the registry\n"
    audit = run(registry_group, ["--registry", reg, "audit", "--json"])
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions == ["add", "list", "resolve", "matches", "resolve", "withdraw", "resolve"]
    assert NAME not in audit.stdout
    assert "audit log intact: 7 entries" in run(registry_group, ["--registry", reg, "audit", "--verify"]).stdout


def test_cli_encrypted_status_wrong_key_and_tampering(tmp_path: Path):
    from consentry.cli.people import person_group, registry_group

    reg = str(tmp_path / "registry.db")
    env = {"CONSENTRY_REGISTRY": reg, "CONSENTRY_REGISTRY_KEY": PASSPHRASE}
    added = run(person_group, ["add", NAME, "--consent-by", "x", "--consent-scope", "s", "--actor", "ren"], **env)
    assert added.exit_code == 0 and "created an encrypted registry" in added.stderr
    status = run(registry_group, ["status"], **env)
    assert "encrypted at rest (AES-256-GCM; the operator's key is a passphrase, stretched with scrypt)" in status.stdout
    assert "key         given" in status.stdout
    locked = run(registry_group, ["status"], CONSENTRY_REGISTRY=reg)
    assert "not given (CONSENTRY_REGISTRY_KEY): person data is locked" in locked.stdout
    wrong = run(person_group, ["list"], CONSENTRY_REGISTRY=reg, CONSENTRY_REGISTRY_KEY="not the right passphrase")
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1 and "wrong registry key" in wrong.stderr
    con = sqlite3.connect(reg)
    con.execute("UPDATE audit_log SET actor = 'rem' WHERE seq = 1")
    con.commit()
    con.close()
    verify = run(registry_group, ["audit", "--verify"], CONSENTRY_REGISTRY=reg)
    assert verify.exit_code == 1 and "entry #1 was altered" in verify.stderr
    nobody = run(person_group, ["list"], CONSENTRY_REGISTRY=reg, CONSENTRY_REGISTRY_KEY=PASSPHRASE, USER="")
    assert nobody.exit_code == 2 and "give --actor" in nobody.output
    key = run(registry_group, ["new-key"]).stdout.strip()
    assert len(base64.b64decode(key)) == 32


def test_cli_rekey(tmp_path: Path):
    from consentry.cli.people import person_group, registry_group

    reg = str(tmp_path / "registry.db")
    env = {"CONSENTRY_REGISTRY": reg, "CONSENTRY_REGISTRY_KEY": RAW_KEY}
    assert run(person_group, ["add", NAME, "--consent-by", "x", "--consent-scope", "s"], **env).exit_code == 0
    missing = run(registry_group, ["rekey"], **env)
    assert missing.exit_code == 2 and "set CONSENTRY_REGISTRY_NEW_KEY" in missing.output
    same = run(registry_group, ["rekey"], **env, CONSENTRY_REGISTRY_NEW_KEY=RAW_KEY)
    assert same.exit_code == 2 and "is the current key" in same.output
    done = run(registry_group, ["rekey", "--actor", "ren"], **env, CONSENTRY_REGISTRY_NEW_KEY=PASSPHRASE)
    assert done.exit_code == 0 and "re-encrypted 1 value(s) under the new key" in done.stdout
    assert run(person_group, ["list"], **env).exit_code == 2  # the old key opens nothing
    listed = run(person_group, ["list"], CONSENTRY_REGISTRY=reg, CONSENTRY_REGISTRY_KEY=PASSPHRASE)
    assert listed.exit_code == 0 and NAME in listed.stdout


def test_cli_add_from_an_intake_file_keeps_names_off_the_command_line(tmp_path: Path):
    from consentry.cli.people import person_group, registry_group

    reg = str(tmp_path / "registry.db")
    intake = tmp_path / "intake.json"
    intake.write_text(json.dumps({"name": NAME, "aliases": [ALIASES[1]], "handles": list(HANDLES), "consent_by": CONSENT_BY,
                                  "consent_scope": "takedowns", "consent_at": "2026-03-01T14:00Z"}), encoding="utf-8")  # fmt: skip
    added = run(person_group, ["--registry", reg, "add", "--intake", str(intake), "--alias", ALIASES[0], "--json"])
    assert added.exit_code == 0, added.output
    shown = json.loads(run(person_group, ["--registry", reg, "show", json.loads(added.stdout)["id"], "--json"]).stdout)
    assert shown["display_name"] == NAME and sorted(shown["aliases"]) == sorted(ALIASES) and shown["handles"] == list(HANDLES)
    assert shown["consent"]["by"] == CONSENT_BY and shown["consent"]["at"].startswith("2026-03-01T14:00")
    from_stdin = CliRunner().invoke(person_group, ["--registry", reg, "add", "--intake", "-", "--json"],
                                    input=json.dumps({"name": OTHER, "consent_by": OTHER, "consent_scope": "s"}))  # fmt: skip
    assert from_stdin.exit_code == 0, from_stdin.output
    bad = {
        "not json": ("{" + NAME, "not a UTF-8 JSON object (line 1)"),
        "a list": (json.dumps([NAME]), "not a JSON object"),
        "unknown key": (json.dumps({"name": NAME, "nickname": ALIASES[0]}), "unknown key(s) 'nickname'"),
        "wrong type": (json.dumps({"name": NAME, "aliases": ALIASES[0]}), "'aliases' must be a list of strings"),
        "missing consent": (json.dumps({"name": NAME}), "missing --consent-by (or 'consent_by' in the --intake file)"),
        "given twice": (json.dumps({"name": NAME, "consent_by": "x", "consent_scope": "s"}), "'name' is given both"),
        "photo missing": (json.dumps({"name": NAME, "consent_by": "x", "consent_scope": "s", "photos": [f"/nowhere/{NAME}.jpg"]}),
                          "a path under 'photos' is not a readable file"),
    }  # fmt: skip
    for case, (text, message) in bad.items():
        intake.write_text(text, encoding="utf-8")
        args = ["--registry", reg, "add", "--intake", str(intake)] + ([OTHER] if case == "given twice" else [])
        result = run(person_group, args)
        assert result.exit_code == 2 and message in result.output, (case, result.output)
        assert NAME not in result.output and ALIASES[0] not in result.output, case
    assert "people      2" in run(registry_group, ["--registry", reg, "status"]).stdout


def test_cli_module_imports_nothing_heavy():
    code = ("import sys, consentry.cli.people\n"
            "print(','.join(sorted(m for m in ('numpy', 'cryptography', 'consentry.registry', 'consentry.images', 'PIL', 'dlib') "
            "if m in sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_photos_without_the_face_models_installed_is_one_clear_error(tmp_path: Path):
    code = (
        "import sys; sys.modules['dlib'] = None\n"  # as if consentry[likeness] were not installed
        "from consentry.registry.intake import reduce_photos\n"
        "from consentry.registry import PhotoError\n"
        "import io; from PIL import Image; buf = io.BytesIO(); Image.new('RGB', (64, 64), (200, 80, 40)).save(buf, 'PNG')\n"
        "try:\n    reduce_photos([buf.getvalue()])\nexcept PhotoError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.strip() == ("photo 1: reference photos need the face models: pip install 'consentry[likeness]' "
                                  "(dlib is missing); nothing was stored")  # fmt: skip
