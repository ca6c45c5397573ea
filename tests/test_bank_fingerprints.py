"""The fingerprint signal in banks: converted re-uploads match by weights, with score and threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from consentry.banks.entries import add_model_file
from consentry.banks.matching import STATUS_MATCH, STATUS_NO_MATCH, match_identity
from consentry.cli import cli
from consentry.identity.identify import identify
from consentry.store import Store
from test_fingerprints import RANK, make_lora, refactor, resize, save_lora


@pytest.fixture
def store(store_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh store: SQLite, then PostgreSQL (tests/conftest.py)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the NN index cache
    with Store.open(store_target) as s:
        yield s


def test_converted_reupload_matches_by_fingerprint_only(tmp_path: Path, store: Store):
    lora = make_lora(1)
    original = save_lora(lora, tmp_path / "jane_v1.safetensors", fmt="kohya")
    # Converted to PEFT keys, re-factorised and cast to fp16: every hash differs.
    converted = save_lora(refactor(lora, 5), tmp_path / "LORA.safetensors", fmt="peft", dtype=np.float16)
    unrelated = save_lora(make_lora(2), tmp_path / "other.safetensors", fmt="kohya")
    store.banks.create("deleted")
    _entry_id, entry = add_model_file(store, "deleted", original)
    assert entry.provenance["fingerprint"] == "stored"

    result = match_identity(store, identify(converted))
    assert result.status == STATUS_MATCH
    match = result.matches[0]
    assert match.signal_type == "fingerprint" and match.value == "same"
    assert match.score >= 0.97 and match.threshold is not None and match.score >= match.threshold
    assert match.as_dict()["entry"]["name"] == "jane_v1.safetensors"
    assert match_identity(store, identify(unrelated)).status == STATUS_NO_MATCH


def test_bank_threshold_is_applied(tmp_path: Path, store: Store):
    lora = make_lora(3)
    original = save_lora(lora, tmp_path / "a.safetensors")
    resized = save_lora(resize(lora, RANK // 4), tmp_path / "b.safetensors", fmt="peft")  # derived: scores below 1
    store.banks.create("default")
    add_model_file(store, "default", original)
    [match] = match_identity(store, identify(resized)).matches
    assert match.threshold < match.score < 1.0
    store.banks.update("default", thresholds={"fingerprint": 1.0})  # only a perfect score now
    assert match_identity(store, identify(resized)).status == STATUS_NO_MATCH
    store.banks.update("default", thresholds={"fingerprint": match.score})  # the bound itself matches (score >= threshold)
    assert match_identity(store, identify(resized)).status == STATUS_MATCH


def test_negative_bank_fingerprint_suppresses_a_positive_one(tmp_path: Path, store: Store):
    lora = make_lora(4)
    original = save_lora(lora, tmp_path / "base_style.safetensors")
    copy = save_lora(refactor(lora, 3), tmp_path / "copy.safetensors", fmt="peft", dtype=np.float16)
    store.banks.create("flagged")
    store.banks.create("known-good", kind="negative")
    add_model_file(store, "flagged", original)
    add_model_file(store, "known-good", original)
    result = match_identity(store, identify(copy))
    assert result.status == STATUS_NO_MATCH
    assert result.matches[0].suppressed_by == "known-good"
    assert any("suppressed" in n for n in result.notes)


def test_deleting_a_bank_removes_its_fingerprints(tmp_path: Path, store: Store):
    original = save_lora(make_lora(6), tmp_path / "a.safetensors")
    store.banks.create("gone")
    add_model_file(store, "gone", original)
    assert store.fingerprints.count() == 1
    store.banks.delete("gone")
    assert store.fingerprints.count() == 0


def test_scan_cli_shows_fingerprint_score_and_threshold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lora = make_lora(7)
    original = save_lora(lora, tmp_path / "jane.safetensors")
    (tmp_path / "up").mkdir()
    copy = save_lora(refactor(lora, 2), tmp_path / "up" / "LORA.safetensors", fmt="peft")
    db = str(tmp_path / "db.sqlite")
    runner = CliRunner()
    runner.invoke(cli, ["--db", db, "bank", "create", "deleted"], catch_exceptions=False)
    added = runner.invoke(cli, ["--db", db, "bank", "add", "deleted", str(original)], catch_exceptions=False)
    assert "fingerprint stored" in added.stdout
    scanned = runner.invoke(cli, ["--db", db, "scan", str(copy)], catch_exceptions=False)
    assert scanned.exit_code == 1
    assert "via fingerprint same" in scanned.stdout and "score" in scanned.stdout and "threshold" in scanned.stdout


def test_exported_fingerprints_match_in_the_importing_store_and_round_trip(tmp_path: Path, store: Store):
    import io
    import json

    from consentry.banks.exchange import export_bank, import_exchange

    lora = make_lora(5)
    original = save_lora(lora, tmp_path / "banned.safetensors")
    converted = save_lora(refactor(lora, 2), tmp_path / "LORA.safetensors", fmt="peft", dtype=np.float16)  # no hash agrees
    store.banks.create("deleted")
    add_model_file(store, "deleted", original)
    first = io.StringIO()
    export_bank(store, "deleted", first)
    lines = first.getvalue().splitlines()
    assert "fingerprint" in json.loads(lines[1])
    with Store.open(tmp_path / "other.sqlite") as other:
        report = import_exchange(other, io.BytesIO(first.getvalue().encode()), source_name="deleted.jsonl")
        assert report.added == 1 and report.rejected == 0
        result = match_identity(other, identify(converted))
        assert result.status == STATUS_MATCH and result.matches[0].signal_type == "fingerprint"
        again = io.StringIO()
        export_bank(other, "deleted", again)
        assert again.getvalue() == first.getvalue()  # lossless: the same bytes back
        broken = json.loads(lines[1])
        broken["fingerprint"] = "bm90IGEgZmluZ2VycHJpbnQ="  # base64, but not a fingerprint
        bad = "\n".join([lines[0].replace('"deleted"', '"broken"', 1), json.dumps(broken)]) + "\n"
        refused = import_exchange(other, io.BytesIO(bad.encode()), source_name="bad.jsonl")
        assert refused.added == 0 and refused.rejected == 1
        assert "malformed fingerprint" in json.dumps(refused.as_dict())
