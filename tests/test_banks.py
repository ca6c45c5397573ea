"""Banks, signal plug-ins and the matcher behind `consentry scan`."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.banks.entries import add_model_file, normalise_signals
from consentry.banks.matching import STATUS_MATCH, STATUS_NO_MATCH, STATUS_QUARANTINE, match_identity
from consentry.banks.signals import SimilarityHit, build_registry, hookimpl, signal_registry
from consentry.cli import cli
from consentry.errors import HashFormatError
from consentry.identity.identify import identify
from consentry.store import Store
from consentry.store.banks import BankEntry, BankExists, BankNotFound
from helpers import reference_hashes


def lora(path: Path, seed: int, metadata: dict | None = None) -> Path:
    rng = np.random.default_rng(seed)
    save_file({"m.lora_down.weight": rng.standard_normal((4, 64)).astype(np.float16),
               "m.lora_up.weight": rng.standard_normal((64, 4)).astype(np.float16)}, str(path), metadata=metadata)  # fmt: skip
    return path


@pytest.fixture
def store(store_target: str):
    """A fresh store: SQLite, then PostgreSQL (tests/conftest.py)."""
    with Store.open(store_target) as s:
        yield s


def run(db: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def test_bank_lifecycle(store: Store):
    bank = store.banks.create("deleted", labels=["real-person-likeness"], source="list", thresholds={"fingerprint": 0.9})
    assert (bank.kind, bank.labels, bank.enabled, bank.thresholds) == ("positive", ["real-person-likeness"], True, {"fingerprint": 0.9})
    with pytest.raises(BankExists):
        store.banks.create("deleted")
    assert store.banks.update("deleted", enabled=False, description="d").enabled is False
    store.banks.delete("deleted")
    with pytest.raises(BankNotFound):
        store.banks.get("deleted")


def test_scan_finds_copies_by_the_right_signals(tmp_path: Path, store: Store):
    original = lora(tmp_path / "jane_v1.safetensors", 1, {"ss_output_name": "jane_v1"})
    reupload = lora(tmp_path / "LORA.safetensors", 1, {"format": "pt"})  # same tensors, metadata rewritten
    unrelated = lora(tmp_path / "style.safetensors", 2)
    store.banks.create("deleted")
    entry_id, entry = add_model_file(store, "deleted", original, url="https://civitai.com/models/1", actor="tester")
    assert entry_id is not None
    ref = reference_hashes(original)
    assert entry.signals["sha256"] == ref["sha256"] and entry.signals["autov3"] == ref["autov3"]
    assert add_model_file(store, "deleted", original)[0] is None  # a second add is a duplicate

    same = match_identity(store, identify(original))
    assert same.status == STATUS_MATCH and same.matches[0].signal_type == "sha256"
    renamed = match_identity(store, identify(reupload))
    assert renamed.status == STATUS_MATCH
    assert {t for t, _v, _b in renamed.matches[0].signals} == {"autov3", "content_hash"}  # not sha256: bytes differ
    assert renamed.matches[0].entry.url == "https://civitai.com/models/1"
    assert renamed.matches[0].entry.provenance["actor"] == "tester"
    assert match_identity(store, identify(unrelated)).status == STATUS_NO_MATCH


def test_banked_short_forms_match_full_file_hashes(tmp_path: Path, store: Store):
    model = lora(tmp_path / "m.safetensors", 3)
    ref = reference_hashes(model)
    bank = store.banks.create("civitai-list")
    store.banks.add_entry(bank, BankEntry(None, bank.name, normalise_signals({"autov3": ref["autov3_short"].lower()})))
    store.banks.add_entry(bank, BankEntry(None, bank.name, normalise_signals({"autov2": "0x" + ref["autov2"]})))
    result = match_identity(store, identify(model))
    assert sorted(m.signal_type for m in result.matches) == ["autov2", "autov3"]
    assert all(not m.weak for m in result.matches)  # 48 and 40 bits of evidence


def test_crc32_only_match_is_reported_weak(tmp_path: Path, store: Store):
    model = lora(tmp_path / "m.safetensors", 4)
    bank = store.banks.create("crc-only")
    store.banks.add_entry(bank, BankEntry(None, bank.name, {"crc32": reference_hashes(model)["crc32"]}))
    result = match_identity(store, identify(model))
    assert result.status == STATUS_MATCH and result.matches[0].weak
    assert any("weak match" in n for n in result.notes)


def test_negative_bank_is_reported_and_disabled_banks_ignored(tmp_path: Path, store: Store):
    model = lora(tmp_path / "base.safetensors", 5)
    store.banks.create("known-good", kind="negative")
    add_model_file(store, "known-good", model)
    result = match_identity(store, identify(model))
    assert result.status == STATUS_NO_MATCH and result.negative[0].bank == "known-good"
    assert any("negative bank" in n for n in result.notes)
    store.banks.create("off", enabled=False)
    add_model_file(store, "off", model)
    assert match_identity(store, identify(model)).matches == []


def test_quarantine_status_for_files_that_cannot_be_checked(tmp_path: Path, store: Store):
    evil = tmp_path / "x.ckpt"
    evil.write_bytes(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x01\x85R.")
    assert match_identity(store, identify(evil)).status == STATUS_QUARANTINE
    store.banks.create("evil")
    add_model_file(store, "evil", evil)  # banked by its bytes
    assert match_identity(store, identify(evil)).status == STATUS_MATCH


def test_signal_normalisation_errors():
    registry = signal_registry()
    assert registry.get("SHA256").normalise("sha256:" + "ab" * 32) == "AB" * 32
    with pytest.raises(HashFormatError, match="expected 64"):
        registry.get("sha256").normalise("abc123")
    with pytest.raises(HashFormatError, match="unknown signal type"):
        registry.get("md4")


class Md5Signal:
    """A plug-in signal type: MD5 of the file, computed by the plug-in itself."""

    name = "md5"
    description = "MD5 of the whole file"

    def normalise(self, text: str) -> str:
        value = text.strip().upper()
        if len(value) != 32:
            raise HashFormatError("md5: expected 32 hex digits")
        return value

    def values_for(self, identity) -> list[str]:
        return [hashlib.md5(Path(identity.path).read_bytes()).hexdigest().upper()]

    def strength(self, value: str) -> int:
        return 128


class Md5Plugin:
    @hookimpl
    def consentry_signal_types(self):
        return [Md5Signal()]


def test_a_plugin_signal_type_matches_without_touching_the_matcher(tmp_path: Path, store: Store):
    registry = build_registry([Md5Plugin()], load_entry_points=False)
    assert "md5" in registry and "sha256" in registry
    model = lora(tmp_path / "m.safetensors", 6)
    bank = store.banks.create("md5-bank")
    md5 = hashlib.md5(model.read_bytes()).hexdigest()
    store.banks.add_entry(bank, BankEntry(None, bank.name, normalise_signals({"md5": md5}, registry)))
    result = match_identity(store, identify(model), registry)
    assert result.status == STATUS_MATCH and result.matches[0].signal_type == "md5"


class SizeSimilarity:
    """A toy similarity signal: files of (nearly) the same size are related. It keeps what it
    needs in a table of its own, as a real plug-in would, and never touches bank_signals."""

    name = "size"
    kind = "similarity"
    description = "file size within a tolerance"

    @staticmethod
    def _table(store):
        store.db.execute("CREATE TABLE IF NOT EXISTS plugin_sizes (entry_id BIGINT PRIMARY KEY, size BIGINT NOT NULL)")

    def remember(self, store, entry_id, path, identity):
        self._table(store)
        store.db.execute("INSERT INTO plugin_sizes (entry_id, size) VALUES (?, ?)", (entry_id, identity.size))
        return "stored"

    def find(self, store, identity):
        self._table(store)
        hits = []
        for r in store.db.query("SELECT entry_id, size FROM plugin_sizes"):
            score = 1 - abs(r["size"] - identity.size) / max(r["size"], identity.size)
            bank = store.banks.get(store.banks.entry(r["entry_id"]).bank_name)
            threshold = float(bank.thresholds.get(self.name, 0.99))
            if score >= threshold:
                hits.append(SimilarityHit(r["entry_id"], "same size", round(score, 4), threshold))
        return hits, []


class SizePlugin:
    @hookimpl
    def consentry_signal_types(self):
        return [SizeSimilarity()]


def test_a_plugin_similarity_signal_matches_without_touching_the_matcher(tmp_path: Path, store: Store,
                                                                         monkeypatch: pytest.MonkeyPatch):  # fmt: skip
    registry = build_registry([SizePlugin()], load_entry_points=False)
    monkeypatch.setattr("consentry.banks.signals.signal_registry", lambda: registry)  # as if installed: banks accept its threshold
    assert sorted(s.name for s in registry.similarity()) == ["fingerprint", "pdq", "size"]  # the built-in ones and the plug-in
    assert "size" not in registry and "size" not in registry.names()  # not a column a list can fill
    with pytest.raises(HashFormatError, match="similarity signal"):
        normalise_signals({"size": "123"}, registry)
    banked, other = lora(tmp_path / "banked.safetensors", 11), lora(tmp_path / "other.safetensors", 12)  # same size, other tensors
    assert banked.stat().st_size == other.stat().st_size
    store.banks.create("sizes")
    entry_id, entry = add_model_file(store, "sizes", banked, registry=registry)
    assert entry.provenance["size"] == "stored" and entry.provenance["fingerprint"] == "stored"

    result = match_identity(store, identify(other), registry)
    assert result.status == STATUS_MATCH
    [match] = result.matches
    assert (match.entry.id, match.signal_type, match.value, match.score, match.threshold) == (entry_id, "size", "same size", 1.0, 0.99)
    assert not match.weak
    assert match_identity(store, identify(other)).status == STATUS_NO_MATCH  # without the plug-in: unrelated weights

    store.banks.update("sizes", thresholds={"size": 1.5})  # the bank's threshold is the signal's
    assert match_identity(store, identify(other), registry).status == STATUS_NO_MATCH
    store.banks.update("sizes", thresholds={})
    store.banks.create("known-good", kind="negative")
    add_model_file(store, "known-good", other, registry=registry)  # a known-good hit suppresses similarity
    result = match_identity(store, identify(other), registry)
    assert result.status == STATUS_NO_MATCH and result.matches[0].suppressed_by == "known-good"


def test_the_fingerprint_is_a_registered_similarity_signal():
    registry = signal_registry()
    assert [s.name for s in registry.similarity()] == ["fingerprint", "pdq"]
    assert "fingerprint" not in registry.names()
    with pytest.raises(HashFormatError, match="fingerprint is a similarity signal"):
        normalise_signals({"fingerprint": "0" * 64})
    # pdq is a *typed* similarity signal: PDQ hash lists import like any hash list (tests/test_images.py)
    assert "pdq" in registry.names() and "pdq" not in [t.name for t in registry]


def test_plugins_are_found_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    site = tmp_path / "site"
    (site / "consentry_md5_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "consentry_md5_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: consentry-md5-plugin\nVersion: 0.1\n")
    (site / "consentry_md5_plugin-0.1.dist-info" / "entry_points.txt").write_text("[consentry]\nmd5 = consentry_md5_plugin\n")
    (site / "consentry_md5_plugin.py").write_text(textwrap.dedent('''
        from consentry.banks.signals import hookimpl
        class _Sig:
            name = "md5"; description = "md5"
            def normalise(self, t): return t.upper()
            def values_for(self, identity): return []
            def strength(self, v): return 128
        @hookimpl
        def consentry_signal_types():
            return [_Sig()]
    '''))
    monkeypatch.syspath_prepend(str(site))
    assert "md5" in build_registry().names()
    monkeypatch.delitem(sys.modules, "consentry_md5_plugin", raising=False)


def test_bank_thresholds_must_name_a_similarity_signal_within_its_range(tmp_path: Path):
    db = tmp_path / "db.sqlite"
    for threshold, message in (("fingerprint=nan", "nan is not a finite number"), ("fingerprint=inf", "not a finite number"),
                               ("fingerprint=1.5", "outside 0..1"), ("pdq=-1", "outside 0..256"),
                               ("sha256=3", "no similarity signal of that name"), ("nosuch=1", "no similarity signal")):  # fmt: skip
        refused = run(db, "bank", "create", "t", "--threshold", threshold)
        assert refused.exit_code == 2 and message in refused.stderr, (threshold, refused.output)
    assert run(db, "bank", "create", "t", "--threshold", "PDQ=12").exit_code == 0
    assert run(db, "bank", "update", "t", "--threshold", "fingerprint=-0.1").exit_code == 2
    with Store.open(db) as store:
        assert [b.name for b in store.banks.list()] == ["t"] and store.banks.get("t").thresholds == {"pdq": 12.0}


def test_bank_names_are_url_safe_whichever_way_a_bank_is_made(tmp_path: Path):
    from consentry.api import create_app
    from fastapi.testclient import TestClient

    db = tmp_path / "db.sqlite"
    for name in ("a/b", "has space", "...", "_x", "x" * 101):
        refused = run(db, "bank", "create", name)
        assert refused.exit_code == 2 and "bank name" in refused.stderr, name
    with Store.open(db) as store:
        key = store.api_keys.create("admin-key", "admin")
    with TestClient(create_app(db)) as client:
        made = client.post("/v1/banks/has%20space/import?format=csv&create=true", content="sha256\n" + "ab" * 32 + "\n",
                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        assert made.status_code == 422 and "bank name" in made.json()["error"]
    with Store.open(db) as store:
        assert store.banks.list() == []


def test_cli_bank_and_scan(tmp_path: Path):
    db = tmp_path / "db.sqlite"
    original = lora(tmp_path / "jane.safetensors", 7)
    (tmp_path / "uploads").mkdir()
    copy = lora(tmp_path / "uploads" / "LORA.safetensors", 7, {"x": "y"})
    lora(tmp_path / "uploads" / "other.safetensors", 8)
    assert run(db, "bank", "create", "deleted", "--label", "real-person-likeness").exit_code == 0
    assert run(db, "bank", "create", "base", "--negative").exit_code == 0
    added = run(db, "bank", "add", "deleted", str(original), "--url", "https://civitai.com/models/9")
    assert added.exit_code == 0 and "added" in added.stdout
    listing = run(db, "bank", "list", "--json")
    banks = {b["name"]: b for b in map(json.loads, listing.stdout.splitlines())}
    assert banks["deleted"]["entry_count"] == 1 and banks["base"]["kind"] == "negative"

    scanned = run(db, "scan", "--json", str(tmp_path / "uploads"))
    assert scanned.exit_code == 1  # something matched
    results = {Path(r["path"]).name: r for r in map(json.loads, scanned.stdout.splitlines())}
    assert results["LORA.safetensors"]["status"] == "match"
    assert results["LORA.safetensors"]["matches"][0]["entry"]["url"] == "https://civitai.com/models/9"
    assert results["LORA.safetensors"]["matches"][0]["review_item"] is not None
    assert results["other.safetensors"]["status"] == "no match"
    assert run(db, "scan", str(tmp_path / "uploads" / "other.safetensors")).exit_code == 0
    human = run(db, "scan", str(copy)).stdout
    assert human.startswith("match ") and "positive bank deleted" in human and "via autov3" in human
    with Store.open(db) as s:  # the second scan of the same match reuses the open item
        assert len(s.reviews.list("open")) == 1


def test_scan_that_cannot_reach_its_store_never_reads_as_matched(tmp_path: Path):
    """1 means "matched": a store that cannot be opened is 3, with one line and no password."""
    model = lora(tmp_path / "m.safetensors", 3)
    result = CliRunner().invoke(cli, ["--db", "postgresql://scanner:s3cret@127.0.0.1:9/none", "scan", str(model)])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("consentry: error:") and "cannot connect" in line and "s3cret" not in line
