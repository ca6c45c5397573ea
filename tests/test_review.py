"""Review decisions (confirm, dismiss into a negative bank, appeal) and API keys, in the library
and through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from consentry.banks.entries import add_model_file
from consentry.banks.matching import STATUS_MATCH, STATUS_NO_MATCH, match_identity, queue_matches
from consentry.banks.review import InvalidTransition, ReviewError, ReviewItemNotFound, appeal, confirm, decide, dismiss
from consentry.cli import cli
from consentry.identity.identify import identify
from consentry.store import Store
from consentry.store.api_keys import ApiKeyError, ApiKeyExists, ApiKeyNotFound, ApiKeyRevoked, role_allows


def lora(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    save_file({"m.lora_down.weight": rng.standard_normal((4, 32)).astype(np.float16),
               "m.lora_up.weight": rng.standard_normal((32, 4)).astype(np.float16)}, str(path))  # fmt: skip
    return path


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "db.sqlite") as s:
        yield s


@pytest.fixture
def queued(tmp_path: Path, store: Store) -> tuple[Path, int]:
    """A banked model, a scan of its copy, and the review item the match opened."""
    model = lora(tmp_path / "jane.safetensors", 1)
    store.banks.create("deleted")
    add_model_file(store, "deleted", model, url="https://civitai.com/models/1")
    result = match_identity(store, identify(model))
    queue_matches(store, result, source="test")
    assert result.status == STATUS_MATCH and result.matches[0].review_item
    return model, result.matches[0].review_item


def test_confirm_records_who_when_why(store: Store, queued):
    _, item_id = queued
    item = confirm(store, item_id, actor="alice", reason="same tensors as the banked LoRA")
    assert item.status == "confirmed"
    [d] = item.decisions
    assert (d["action"], d["actor"], d["reason"], d["negative_bank"]) == ("confirm", "alice", "same tensors as the banked LoRA", None)
    assert d["decided_at"].endswith("+00:00")
    with pytest.raises(InvalidTransition, match="already confirmed"):
        confirm(store, item_id, actor="bob", reason="again")
    with pytest.raises(InvalidTransition, match="already confirmed"):
        dismiss(store, item_id, actor="bob", reason="changed my mind")
    assert len(store.reviews.get(item_id).decisions) == 1  # a refused decision leaves no record


def test_appeal_reopens_and_history_is_kept(store: Store, queued):
    _, item_id = queued
    with pytest.raises(InvalidTransition, match="is open"):
        appeal(store, item_id, actor="uploader", reason="it is my own model")
    dismiss(store, item_id, actor="alice", reason="false positive")
    item = appeal(store, item_id, actor="uploader-support", reason="user appeal #12")
    assert item.status == "open"
    item = confirm(store, item_id, actor="bob", reason="second look: it is the banked model")
    assert [(d["action"], d["actor"]) for d in item.decisions] == [
        ("dismiss", "alice"), ("appeal", "uploader-support"), ("confirm", "bob")]


def test_appeal_refused_when_the_same_match_is_open_again(store: Store, queued):
    model, item_id = queued
    confirm(store, item_id, actor="alice", reason="yes")
    result = match_identity(store, identify(model))
    queue_matches(store, result, source="test")  # a re-upload opens a new item for the same match
    new_id = result.matches[0].review_item
    assert new_id != item_id
    with pytest.raises(InvalidTransition, match=f"#{new_id} is already open"):
        appeal(store, item_id, actor="x", reason="y")


def test_dismiss_into_negative_bank_then_scan_hits_it(store: Store, queued):
    model, item_id = queued
    store.banks.create("known-good", kind="negative")
    item = dismiss(store, item_id, actor="alice", reason="licensed likeness, contract on file", negative_bank="known-good")
    assert item.status == "dismissed" and item.decisions[0]["negative_bank"] == "known-good"
    [entry] = store.banks.entries(store.banks.get("known-good"))
    assert entry.provenance["review_item"] == item_id
    assert (entry.provenance["actor"], entry.provenance["reason"]) == ("alice", "licensed likeness, contract on file")
    assert {"sha256", "autov3", "blake3", "content_hash"} <= set(entry.signals)
    assert not {"autov1", "crc32"} & set(entry.signals)  # 32-bit signals would vouch for strangers
    result = match_identity(store, identify(model))
    assert [m.bank for m in result.negative] == ["known-good"]


@pytest.mark.parametrize("into_negative_bank", [True, False])
def test_a_dismissal_sticks_for_the_same_file_until_appealed(tmp_path: Path, store_target: str, into_negative_bank: bool):
    """The reviewer's dismissal holds for the same file and entry: a re-scan reports the match
    as dismissed (not flagged, no new item), so the appeal of the dismissed item is not refused
    as "already open"; after the appeal the match is live again, on the same item. SQLite and
    PostgreSQL."""
    model = lora(tmp_path / "jane.safetensors", 1)
    with Store.open(store_target) as store:
        store.banks.create("deleted")
        store.banks.create("known-good", kind="negative")
        [entry_id, _] = add_model_file(store, "deleted", model, url="https://civitai.com/models/1")
        first = match_identity(store, identify(model))
        queue_matches(store, first, source="test")
        item_id = first.matches[0].review_item
        dismiss(store, item_id, actor="alice", reason="licensed likeness, contract on file",
                negative_bank="known-good" if into_negative_bank else None)  # fmt: skip

        again = match_identity(store, identify(model))
        queue_matches(store, again, source="test")
        [m] = again.matches
        assert (m.entry.id, m.dismissed_in, m.review_item) == (entry_id, item_id, item_id)
        assert again.status == STATUS_NO_MATCH  # the reviewer's word holds
        assert [n.bank for n in again.negative] == (["known-good"] if into_negative_bank else [])
        assert any(f"dismissed in review item #{item_id}" in note for note in again.notes)
        assert not any("disagree" in note for note in again.notes)  # a person has decided
        assert (store.reviews.count(), store.reviews.count("open")) == (1, 0)  # no new item
        assert again.as_json()["matches"][0]["dismissed_in"] == item_id

        # Another file carrying the same tensors (new SHA-256) is a new upload: it is flagged.
        other = tmp_path / "renamed.safetensors"
        rng = np.random.default_rng(1)  # as lora(..., 1) draws them
        save_file({"m.lora_down.weight": rng.standard_normal((4, 32)).astype(np.float16),
                   "m.lora_up.weight": rng.standard_normal((32, 4)).astype(np.float16)},
                  str(other), metadata={"ss_output_name": "renamed"})  # fmt: skip
        elsewhere = match_identity(store, identify(other))
        assert elsewhere.status == STATUS_MATCH and elsewhere.matches[0].dismissed_in is None

        reopened = appeal(store, item_id, actor="bob", reason="uploader's account linked to the original ban")
        assert reopened.status == "open"
        after = match_identity(store, identify(model))
        queue_matches(store, after, source="test")
        assert after.status == STATUS_MATCH
        assert (after.matches[0].dismissed_in, after.matches[0].review_item) == (None, item_id)
        assert store.reviews.count() == 1


def test_bad_decisions_are_refused_and_change_nothing(store: Store, queued):
    _, item_id = queued
    store.banks.create("also-positive")
    with pytest.raises(ReviewError, match="needs a reason"):
        confirm(store, item_id, actor="alice", reason="   ")
    with pytest.raises(ReviewError, match="unknown action"):
        decide(store, item_id, "delete", actor="alice", reason="x")
    with pytest.raises(ReviewError, match="only a dismissal"):
        decide(store, item_id, "confirm", actor="alice", reason="x", negative_bank="known-good")
    with pytest.raises(ReviewError, match="positive bank"):
        dismiss(store, item_id, actor="alice", reason="x", negative_bank="also-positive")
    with pytest.raises(ReviewItemNotFound):
        confirm(store, 999, actor="alice", reason="x")
    item = store.reviews.get(item_id)
    assert item.status == "open" and item.decisions == []  # the refused dismissal rolled back


def test_api_keys(store: Store):
    secret = store.api_keys.create("bot", "scanner")
    assert secret.startswith("cns_") and len(secret) > 40
    assert secret not in str([tuple(row) for row in store.db.query("SELECT * FROM api_keys")])  # only its hash
    assert tuple(store.api_keys.authenticate(secret)) == ("bot", "scanner")
    assert store.api_keys.authenticate(secret + "x") is None
    with pytest.raises(ApiKeyExists):
        store.api_keys.create("bot", "admin")
    with pytest.raises(ApiKeyError, match="unknown role"):
        store.api_keys.create("x", "root")
    store.api_keys.revoke("bot")
    assert store.api_keys.authenticate(secret) is None
    assert store.api_keys.list()[0].revoked_at
    with pytest.raises(ApiKeyRevoked):
        store.api_keys.revoke("bot")
    with pytest.raises(ApiKeyNotFound):
        store.api_keys.revoke("nobody")
    assert role_allows("admin", "reviewer") and role_allows("reviewer", "scanner") and not role_allows("scanner", "reviewer")


def test_cli_review_and_apikey(tmp_path: Path, store: Store, queued):
    _, item_id = queued
    store.banks.create("known-good", kind="negative")
    db = store.path

    def run(*args: str):
        return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)

    listed = run("review", "list")
    assert listed.exit_code == 0 and f"#{item_id}" in listed.output and "jane.safetensors" in listed.output
    out = run("review", "dismiss", str(item_id), "--reason", "not her", "--actor", "carol", "--negative-bank", "known-good")
    assert out.exit_code == 0 and "dismissed" in out.output
    again = run("review", "confirm", str(item_id), "--reason", "x")
    assert again.exit_code == 2 and "already dismissed" in again.output
    assert run("review", "appeal", str(item_id), "--reason", "appeal").exit_code == 0
    shown = run("review", "show", str(item_id))
    assert "dismiss (into negative bank known-good) by carol" in shown.output and "appeal by" in shown.output
    assert run("review", "confirm", str(item_id)).exit_code == 2  # --reason is required

    created = run("apikey", "create", "ops", "--role", "admin")
    secret = created.stdout.strip().splitlines()[0]
    assert created.exit_code == 0 and secret.startswith("cns_")
    assert "ops" in run("apikey", "list").output and secret not in run("apikey", "list").output
    assert run("apikey", "revoke", "ops").exit_code == 0
    assert store.api_keys.authenticate(secret) is None


def test_a_dismissal_does_not_carry_over_to_a_new_bank_that_reuses_the_entry_id(store: Store, queued):
    model, item_id = queued
    dismiss(store, item_id, actor="rev", reason="not her")
    old_entry = store.reviews.get(item_id).entry_id
    assert match_identity(store, identify(model)).status == STATUS_NO_MATCH  # the dismissal holds in its bank
    store.banks.delete("deleted")
    store.banks.create("reported-again")
    entry_id, _ = add_model_file(store, "reported-again", model)
    assert entry_id == old_entry  # SQLite hands the id out again: the case this guards against
    result = match_identity(store, identify(model))
    assert result.status == STATUS_MATCH and result.matches[0].dismissed_in is None
    kept = store.reviews.get(item_id)
    assert (kept.status, kept.entry_id, kept.bank_name) == ("dismissed", None, "deleted")  # history kept, link gone
