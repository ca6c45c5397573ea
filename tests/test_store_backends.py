"""The store, the same tests on both backends: SQLite (embedded default) and PostgreSQL.

Each test takes ``store_target`` / ``store`` (tests/conftest.py) and runs twice; the PostgreSQL
half needs CONSENTRY_TEST_POSTGRES_URL (.ci/run starts a server and sets it).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.cli import cli
from consentry.errors import StoreError
from consentry.store import Store
from consentry.store.banks import BankEntry, BankExists, BankNotFound
from consentry.store.database import INTEGRITY_ERRORS, mask_url
from consentry.store.schema import MIGRATIONS
from helpers import reference_hashes

H = {  # hash values of two made-up files, in the forms the store keeps (upper-case hex)
    "a": {"sha256": "AB12" + "0" * 60, "autov1": "11AA22BB", "autov3": "CD34" + "1" * 60, "crc32": "0D4A1185",
          "crc32_conventional": "85114A0D", "blake3": "EF56" + "2" * 60, "content_hash": "9876" + "3" * 60},
    "b": {"sha256": "AB12" + "F" * 60, "autov1": "33CC44DD", "autov3": "CD35" + "4" * 60, "crc32": "01020304",
          "crc32_conventional": "04030201", "blake3": "EF57" + "5" * 60, "content_hash": "9877" + "6" * 60},
}  # fmt: skip
TABLES = ("files", "index_runs", "banks", "bank_entries", "bank_signals", "bank_imports", "review_items",
          "review_decisions", "api_keys")  # fmt: skip


def file_record(path: str, hashes: dict[str, str], **extra) -> dict:
    return {"path": path, "size": 1234, "mtime_ns": 1_700_000_000_123_456_789, "inode": 42, "device": 7,
            "format": "safetensors", "verdict": "clean", **hashes, **extra}  # fmt: skip


def entry(name: str, **signals: str) -> BankEntry:
    return BankEntry(id=None, bank_name="", signals=signals, name=name, url=f"https://example.test/{name}",
                     provenance={"actor": "test"})  # fmt: skip


def count(store: Store, table: str, where: str = "", args: tuple = ()) -> int:
    return int(store.db.query_one(f"SELECT count(*) AS n FROM {table} {where}", args)["n"])


def open_review(store: Store, bank, sha256: str | None, value: str) -> int:
    return store.reviews.open_item(file_name="up.safetensors", file_sha256=sha256, file_size=10, file_identity={"k": 1},
                                   bank_id=bank.id, bank_name=bank.name, entry_id=None, signal_type="sha256",
                                   signal_value=value)  # fmt: skip


# --- migrations ---------------------------------------------------------------------------


def test_migrations_from_empty_then_idempotent(store_target: str):
    with Store.open(store_target) as store:
        versions = [r["version"] for r in store.db.query("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        for table in TABLES:
            assert count(store, table) == 0
        store.banks.create("kept")
    for _ in range(2):  # reopening applies nothing and loses nothing
        with Store.open(store_target) as store:
            assert count(store, "schema_migrations") == len(MIGRATIONS)
            assert [b.name for b in store.banks.list()] == ["kept"]


def test_schema_newer_than_the_code_is_refused(store_target: str):
    with Store.open(store_target) as store:
        store.db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (len(MIGRATIONS) + 1, "x"))
    with pytest.raises(StoreError, match=f"schema v{len(MIGRATIONS) + 1} is newer than this consentry"):
        Store.open(store_target)


def test_first_open_from_many_clients_at_once(store_target: str):
    """Several processes starting on an empty database migrate it exactly once."""
    errors, barrier = [], threading.Barrier(4)

    def opener():
        try:
            barrier.wait()
            Store.open(store_target).close()
        except BaseException as exc:  # reported below, with its type
            errors.append(repr(exc))

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store.open(store_target) as store:
        assert count(store, "schema_migrations") == len(MIGRATIONS)


# --- files and index runs -----------------------------------------------------------------


def test_files_upsert_get_and_stat(store: Store):
    store.upsert_file(file_record("/m/a.safetensors", H["a"], metadata_json={"ss_output_name": "a"}))
    got = store.get_file("/m/a.safetensors")
    assert got.hashes["sha256"] == H["a"]["sha256"] and got.hashes["autov2"] == H["a"]["sha256"][:10]
    assert got.hashes["autov3_short"] == H["a"]["autov3"][:12] and got.verdict == "clean"
    assert store.file_stat("/m/a.safetensors") == (1234, 1_700_000_000_123_456_789, 42)
    # An update replaces the row in place; inode/device beyond int64 fold into the signed range.
    store.upsert_file(file_record("/m/a.safetensors", H["b"], size=99, inode=2**64 - 1, device=2**63, verdict="quarantine",
                                  problem="refused global os.system"))  # fmt: skip
    assert count(store, "files") == 1
    got = store.get_file("/m/a.safetensors")
    assert (got.size, got.inode, got.hashes["sha256"], got.problem) == (99, -1, H["b"]["sha256"], "refused global os.system")
    assert store.get_file("/m/none") is None and store.file_stat("/m/none") is None
    store.upsert_file(file_record("/m/z.bin", {}, format="unknown", verdict="rejected", problem="not a model file"))
    assert store.count_files() == {"quarantine": 1, "rejected": 1}
    assert [f.path for f in store.iter_files()] == ["/m/a.safetensors", "/m/z.bin"]
    assert [f.path for f in store.iter_files("rejected")] == ["/m/z.bin"]


def test_find_hash_exact_and_prefix_forms(store: Store):
    store.upsert_file(file_record("/m/a.safetensors", H["a"]))
    store.upsert_file(file_record("/m/b.safetensors", H["b"]))
    a, b = H["a"], H["b"]

    def found(value: str) -> list[tuple[str, list[str]]]:
        return [(Path(f.path).name, kinds) for f, kinds in store.find_hash(value)]

    assert found(a["sha256"]) == [("a.safetensors", ["sha256"])]
    assert found(a["sha256"][:10]) == [("a.safetensors", ["autov2"])]
    assert found(a["autov3"]) == [("a.safetensors", ["autov3"])]
    assert found(a["autov3"][:12]) == [("a.safetensors", ["autov3_short"])]
    assert found(b["blake3"][:16]) == [("b.safetensors", ["blake3"])]
    assert found(b["content_hash"]) == [("b.safetensors", ["content_hash"])]
    assert found(a["autov1"]) == [("a.safetensors", ["autov1"])]
    assert found(a["crc32"]) == [("a.safetensors", ["crc32"])]
    assert found(b["crc32_conventional"]) == [("b.safetensors", ["crc32_conventional"])]
    assert found("AB120000") == [("a.safetensors", ["sha256"])]  # an 8-hex prefix of a long hash
    assert found("AB12") == [("a.safetensors", ["sha256"]), ("b.safetensors", ["sha256"])]  # both share it
    assert found("AB13" + "0" * 60) == [] and found("00000000") == []


def test_index_runs_are_recorded(store: Store):
    first = store.start_run("/models")
    second = store.start_run("/other")
    assert second != first
    store.finish_run(first, {"seen": 5, "indexed": 3, "unchanged": 1, "flagged": 1, "bytes": 2**40})
    row = store.db.query_one("SELECT * FROM index_runs WHERE id = ?", (first,))
    assert (row["root"], row["files_seen"], row["files_indexed"], row["files_unchanged"], row["files_flagged"],
            row["bytes_hashed"]) == ("/models", 5, 3, 1, 1, 2**40)  # fmt: skip
    assert row["finished_at"] and store.db.query_one("SELECT finished_at FROM index_runs WHERE id = ?", (second,))["finished_at"] is None


# --- banks --------------------------------------------------------------------------------


def test_bank_create_get_duplicate_list_update(store: Store):
    made = store.banks.create("deleted", labels=["real-person-likeness"], description="d", source="civitai",
                              thresholds={"fingerprint": 0.9})  # fmt: skip
    assert (made.name, made.kind, made.labels, made.enabled, made.thresholds) == ("deleted", "positive", ["real-person-likeness"], True, {"fingerprint": 0.9})
    with pytest.raises(BankExists):
        store.banks.create("deleted")
    # The failed insert left the connection usable (PostgreSQL aborts a failed transaction).
    store.banks.create("base-models", kind="negative", enabled=False)
    with pytest.raises(BankNotFound):
        store.banks.get("nope")
    deleted = store.banks.get("deleted")
    store.banks.add_entry(deleted, entry("one", sha256=H["a"]["sha256"]))
    store.banks.add_entry(deleted, entry("two", sha256=H["b"]["sha256"], blake3=H["b"]["blake3"]))
    assert [(b.name, b.kind, b.enabled, b.entry_count) for b in store.banks.list()] == [
        ("base-models", "negative", False, 0), ("deleted", "positive", True, 2)]  # fmt: skip
    changed = store.banks.update("deleted", enabled=False, labels=["x", "y"], description=None, thresholds={"fingerprint": 0.8})
    assert (changed.enabled, changed.labels, changed.description, changed.thresholds, changed.source) == (False, ["x", "y"], None, {"fingerprint": 0.8}, "civitai")
    assert changed.updated_at >= made.updated_at


def test_bank_delete_cascades_entries_and_signals(store: Store):
    doomed, kept = store.banks.create("doomed"), store.banks.create("kept")
    store.banks.add_entry(doomed, entry("one", sha256=H["a"]["sha256"], crc32=H["a"]["crc32"]))
    store.banks.add_entry(kept, entry("one", sha256=H["a"]["sha256"]))
    store.banks.delete("doomed")
    with pytest.raises(BankNotFound):
        store.banks.get("doomed")
    assert count(store, "bank_entries", "WHERE bank_id = ?", (doomed.id,)) == 0
    assert count(store, "bank_signals", "WHERE bank_id = ?", (doomed.id,)) == 0
    assert count(store, "bank_signals") == 1 and [h.bank for h in store.banks.lookup([("sha256", H["a"]["sha256"])])] == ["kept"]


def test_add_entry_refuses_duplicates_and_reads_back(store: Store):
    bank, other = store.banks.create("b"), store.banks.create("other")
    first = store.banks.add_entry(bank, entry("one", sha256=H["a"]["sha256"], blake3=H["a"]["blake3"]))
    assert isinstance(first, int)
    assert store.banks.add_entry(bank, entry("again", sha256=H["a"]["sha256"])) is None  # same signal
    assert store.banks.add_entry(bank, entry("half", sha256=H["b"]["sha256"], blake3=H["a"]["blake3"])) is None  # one overlaps
    assert store.banks.add_entry(other, entry("one", sha256=H["a"]["sha256"])) is not None  # other banks may hold it
    with pytest.raises(ValueError):
        store.banks.add_entry(bank, entry("empty"))
    assert count(store, "bank_entries", "WHERE bank_id = ?", (bank.id,)) == 1
    [got] = store.banks.entries(bank)
    assert (got.id, got.name, got.signals, got.provenance) == (first, "one", {"sha256": H["a"]["sha256"], "blake3": H["a"]["blake3"]}, {"actor": "test"})
    assert store.banks.entry(first).signals == got.signals and store.banks.entry(10**9) is None


def test_lookup_sees_enabled_banks_only(store: Store):
    on, off = store.banks.create("on"), store.banks.create("off", enabled=False)
    store.banks.add_entry(on, entry("x", sha256=H["a"]["sha256"]))
    store.banks.add_entry(off, entry("x", sha256=H["a"]["sha256"]))
    pairs = [("sha256", H["a"]["sha256"]), ("sha256", H["a"]["sha256"]), ("blake3", H["a"]["blake3"])]
    assert [(h.bank, h.bank_enabled, h.signal_type) for h in store.banks.lookup(pairs)] == [("on", True, "sha256")]
    assert sorted(h.bank for h in store.banks.lookup(pairs, enabled_only=False)) == ["off", "on"]


# --- review queue -------------------------------------------------------------------------


def test_open_review_item_is_idempotent_per_open_match(store: Store):
    bank = store.banks.create("b")
    first = open_review(store, bank, H["a"]["sha256"], H["a"]["sha256"])
    assert open_review(store, bank, H["a"]["sha256"], H["a"]["sha256"]) == first
    assert open_review(store, bank, H["b"]["sha256"], H["a"]["sha256"]) != first  # another file
    no_hash = open_review(store, bank, None, H["a"]["sha256"])  # NULL sha256 matches NULL, as IS does
    assert open_review(store, bank, None, H["a"]["sha256"]) == no_hash
    # The partial unique index allows one *open* item per match, any number of closed ones.
    with pytest.raises(INTEGRITY_ERRORS):
        store.db.execute("INSERT INTO review_items (status, file_sha256, bank_name, signal_type, signal_value, created_at,"
                         " updated_at) VALUES ('open', ?, 'b', 'sha256', ?, 'now', 'now')", (H["a"]["sha256"], H["a"]["sha256"]))  # fmt: skip
    store.db.execute("UPDATE review_items SET status = 'confirmed' WHERE id = ?", (first,))
    reopened = open_review(store, bank, H["a"]["sha256"], H["a"]["sha256"])
    assert reopened not in (first, no_hash)
    assert store.reviews.get(first).status == "confirmed" and store.reviews.get(reopened).file_identity == {"k": 1}
    assert count(store, "review_items") == 4


# --- transactions -------------------------------------------------------------------------


def test_transaction_rolls_back_on_exception(store: Store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.banks.create("ghost")
            raise RuntimeError("boom")
    assert store.banks.list() == []
    store.banks.create("real")  # the connection is fine afterwards
    assert [b.name for b in store.banks.list()] == ["real"]


def test_transactions_nest_and_commit_once(store_target: str, store: Store):
    with Store.open(store_target) as other:
        with store.transaction():
            with store.transaction():
                store.banks.create("inner")
            assert [b.name for b in store.banks.list()] == ["inner"]  # visible inside
            assert other.banks.list() == []  # not committed by the inner block
        assert [b.name for b in other.banks.list()] == ["inner"]
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.banks.create("outer")
                with store.transaction():
                    store.banks.create("inner2")
                raise RuntimeError("boom")
        assert [b.name for b in other.banks.list()] == ["inner"]  # inner2 went with the outer block


def test_failure_inside_a_nested_block_dooms_the_transaction(store: Store):
    """Catching an inner failure must not commit half of it (nor silently roll back on PostgreSQL)."""
    store.banks.create("taken")
    with pytest.raises(StoreError, match="rolled back"):
        with store.transaction():
            store.banks.create("new")
            with pytest.raises(BankExists):
                store.banks.create("taken")
    assert [b.name for b in store.banks.list()] == ["taken"]
    store.banks.create("after")  # and the connection is usable again
    assert len(store.banks.list()) == 2


# --- concurrent writers -------------------------------------------------------------------


def test_concurrent_writers_each_with_own_store(store_target: str, store: Store):
    workers, per_worker = 4, 15
    shared = store.banks.create("shared")
    for w in range(workers):
        store.banks.create(f"own-{w}")
    errors, barrier = [], threading.Barrier(workers)

    def work(w: int) -> None:
        try:
            with Store.open(store_target) as mine:  # connections are per thread
                bank, common = mine.banks.get(f"own-{w}"), mine.banks.get("shared")
                barrier.wait()
                for i in range(per_worker):
                    value = f"{w:04X}{i:060X}"
                    assert mine.banks.add_entry(bank, entry(f"{w}-{i}", sha256=value)) is not None
                    assert mine.banks.add_entry(common, entry(f"{w}-{i}", sha256=value, crc32=f"{w:04X}{i:04X}")) is not None
                    # Every worker adds the same model and scans the same upload: one wins, once.
                    mine.banks.add_entry(common, entry(f"same-{i}", sha256=f"F{i:063X}"))
                    open_review(mine, common, f"F{i:063X}", f"F{i:063X}")
                    open_review(mine, common, f"{w:04X}{i:060X}", value)
        except BaseException as exc:
            errors.append(f"worker {w}: {exc!r}")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    counts = {b.name: b.entry_count for b in store.banks.list()}
    assert counts == {"shared": workers * per_worker + per_worker, **{f"own-{w}": per_worker for w in range(workers)}}
    assert count(store, "bank_signals", "WHERE bank_id = ?", (shared.id,)) == 2 * workers * per_worker + per_worker
    assert count(store, "review_items", "WHERE status = 'open'") == per_worker + workers * per_worker
    if store.db.dialect == "sqlite":
        assert store.db.query_one("PRAGMA integrity_check")[0] == "ok"


# --- the CLI, end to end ------------------------------------------------------------------


def write_lora(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"a.lora_down.weight": rng.standard_normal((4, 64)).astype(np.float32),
               "a.lora_up.weight": rng.standard_normal((64, 4)).astype(np.float32)}, str(path))  # fmt: skip
    return path


def test_cli_end_to_end(store_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    models = tmp_path / "models"
    banned = write_lora(models / "banned.safetensors", 1)
    write_lora(models / "other.safetensors", 2)
    (models / "fake.ckpt").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "reupload.bin").write_bytes(banned.read_bytes())
    write_lora(uploads / "fine.safetensors", 3)
    outputs = []

    def run(*args: str, db: bool = True):
        result = CliRunner().invoke(cli, [*(["--db", store_target] if db else []), *args], catch_exceptions=False)
        outputs.append(result.output)
        return result

    indexed = run("index", "--no-progress", str(models))
    assert indexed.exit_code == 2 and "fake.ckpt" in indexed.stderr  # a flagged file: exit 2
    assert "indexed 3 file(s)" in indexed.stdout and mask_url(store_target) in indexed.stdout
    assert "indexed 0 file(s), 3 unchanged" in run("index", "--no-progress", str(models)).stdout
    ref = reference_hashes(banned)
    found = run("find", "--json", ref["sha256"][:10].lower(), ref["blake3"])
    assert found.exit_code == 0
    assert [(Path(r["path"]).name, r["matched"]) for r in map(json.loads, found.stdout.splitlines())] == [
        ("banned.safetensors", ["autov2"]), ("banned.safetensors", ["blake3"])]  # fmt: skip
    assert run("find", "DEADBEEF").exit_code == 1

    # CONSENTRY_DB names the same store for the bank commands.
    monkeypatch.setenv("CONSENTRY_DB", store_target)
    assert run("bank", "create", "deleted", "--label", "real-person-likeness", db=False).exit_code == 0
    assert run("bank", "create", "deleted", db=False).exit_code == 2
    added = run("bank", "add", "deleted", str(banned), "--url", "https://example.test/m/1", db=False)
    assert added.exit_code == 0 and "added" in added.stdout
    assert "already in the bank" in run("bank", "add", "deleted", str(banned), db=False).stdout
    [listed] = [json.loads(line) for line in run("bank", "list", "--json", db=False).stdout.splitlines()]
    assert (listed["name"], listed["entry_count"]) == ("deleted", 1)

    scanned = run("scan", "--json", str(uploads))
    assert scanned.exit_code == 1  # something matched
    results = {Path(r["path"]).name: r for r in map(json.loads, scanned.stdout.splitlines())}
    assert results["reupload.bin"]["status"] == "match" and results["fine.safetensors"]["status"] == "no match"
    assert run("scan", str(uploads)).exit_code == 1  # again: the open review item is reused
    with Store.open(store_target) as store:
        assert store.count_files() == {"clean": 2, "rejected": 1}
        assert count(store, "review_items") == len({m["review_item"] for m in results["reupload.bin"]["matches"]}) >= 1

    secret = urlsplit(store_target).password  # CI's server has one: it must never be printed
    if secret:
        assert all(secret not in out for out in outputs)


# --- URLs and passwords ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@db.example:5432/consentry", "postgresql://alice:***@db.example:5432/consentry"),
        ("postgres://:s3cret@localhost/c", "postgres://:***@localhost/c"),
        ("postgresql://alice@localhost/c?password=s3cret&sslmode=require", "postgresql://alice@localhost/c?password=***&sslmode=require"),
        ("postgresql://alice:p%40ss%2Fw@h1:5432,h2:5433/c", "postgresql://alice:***@h1:5432,h2:5433/c"),
        ("postgresql://localhost/c", "postgresql://localhost/c"),
    ],
)
def test_mask_url_hides_the_password(url: str, shown: str):
    assert mask_url(url) == shown


def test_connection_errors_never_print_the_password(monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("psycopg")
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    url = "postgresql://alice:hunter2secret@127.0.0.1:1/consentry?connect_timeout=5"
    with pytest.raises(StoreError) as err:
        Store.open(url)
    assert "hunter2secret" not in str(err.value) and "alice:***@127.0.0.1:1" in str(err.value)
    bad = "postgresql://alice:hunter2%zzsecret@127.0.0.1:1/c"  # libpq quotes a bad escape back
    with pytest.raises(StoreError) as err:
        Store.open(bad)
    assert "hunter2" not in str(err.value)
    monkeypatch.setenv("CONSENTRY_DB", url)
    result = CliRunner().invoke(cli, ["bank", "list"])
    assert result.exit_code == 1 and "cannot connect" in result.stderr and "hunter2secret" not in result.output
