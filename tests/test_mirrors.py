"""Mirror finding on the seeded demo world, end to end through the real clients and fake hubs.

The world records how every copy was made (``Planted``): expected results come from there and
from hashlib on the files' bytes, never from the finder. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from consentry.cli import cli
from consentry.demo.hub_demo import BANK, run_hub_demo
from consentry.demo.hub_world import build_demo_world
from consentry.hubs.civarchive import CivArchiveClient
from consentry.hubs.fakes.civarchive import fake_civarchive
from consentry.hubs.fakes.huggingface import serve_world
from consentry.hubs.huggingface import HuggingFaceConnector
from consentry.mirrors import find_mirrors
from consentry.mirrors.finder import hf_remote_id
from consentry.store import Store


@pytest.fixture
def world(tmp_path: Path):
    return build_demo_world(tmp_path / "world", seed=3, models=300)


def reported(report) -> dict[tuple[int, str], tuple[str, list[str]]]:
    """(Civitai model id of the banked model, where) -> (strongest signal, every signal)."""
    out = {}
    for item in report.entries:
        origin = int(item.entry.url.split("/models/")[1].split("/")[0])
        for m in item.mirrors:
            where = m.file_remote_id if m.hub == "huggingface" else m.url
            if m.hub == "civitai":
                where = m.url.split("/models/")[1].split("?")[0]
            out[(origin, where)] = (m.matched_by, [e["signal"] for e in m.evidence])
    return out


def test_every_planted_copy_is_found_by_its_signal_and_nothing_else(world, store_target: str) -> None:
    with Store.open(store_target) as store:
        result = run_hub_demo(store, world, say=lambda _line: None)
        first = reported(result.first)
        second = reported(result.second)
        entries = store.banks.entries(store.banks.get(BANK))
    planted = {(p.model_id, p.where): p for p in world.planted}
    assert len(planted) >= 12 and {p.signal for p in planted.values()} >= {"sha256", "autov3", "fingerprint", "archive"}
    for key, p in planted.items():
        got = first.get(key) or second.get(key)
        assert got is not None, f"not found: {p}"
        assert got[0] == p.signal, f"{p}: found by {got[0]}"
    # no false accusation: every hub copy reported was planted (the archive's taken-down URLs aside)
    extra = {k: v for k, v in {**first, **second}.items() if k not in planted}
    assert all(v[0] == "archive" and "pixeldrain" in k[1] for k, v in extra.items()), extra
    # the bank holds the SHA-256 of the deleted files as hashlib computes it, whatever case the list used
    by_model = {int(e.url.split("/models/")[1].split("/")[0]): e for e in entries}
    for person in world.people:
        assert by_model[person.model_id].signals["sha256"] == hashlib.sha256(person.path.read_bytes()).hexdigest().upper()
    # the second run reports as new exactly the copy uploaded in between
    late = {(p.model_id, p.where) for p in world.planted if p.fate.startswith("late-")}
    new = {k for item in result.second.entries for m in item.mirrors if m.new for k in reported_one(item, m)}
    assert late and new == late


def reported_one(item, m) -> list[tuple[int, str]]:
    origin = int(item.entry.url.split("/models/")[1].split("/")[0])
    return [(origin, m.file_remote_id if m.hub == "huggingface" else m.url)]


def test_exact_copy_evidence_is_verifiable(world, tmp_path: Path) -> None:
    """A SHA-256 mirror's pinned URL serves bytes whose hashlib SHA-256 is the banked one."""
    import httpx

    with Store.open(tmp_path / "s.db") as store:
        result = run_hub_demo(store, world, say=lambda _line: None)
        with serve_world(world.hf) as hub:  # the world's files, served again
            for item in result.first.entries:
                for m in item.mirrors:
                    if m.matched_by == "sha256" and m.hub == "huggingface":
                        path = world.hf.root / m.file_remote_id
                        assert hashlib.sha256(path.read_bytes()).hexdigest().upper() == item.entry.signals["sha256"]
                        repo, _, name = m.file_remote_id.rpartition("/")
                        served = httpx.get(f"{hub.url}/{repo}/resolve/main/{name}").content
                        assert hashlib.sha256(served).hexdigest().upper() == item.entry.signals["sha256"]


def test_cli_formats_and_only_new(world, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store.open(db) as store:
        run_hub_demo(store, world, say=lambda _line: None)
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "mirrors", BANK, "--format", "csv", "--all"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    planted_hf = {p.where for p in world.planted if p.hub == "huggingface"}
    assert planted_hf <= {hf_remote_id(r["mirror_url"]) for r in rows if r["hub"] == "huggingface"}
    assert {r["new"] for r in rows} == {"no"}  # the demo's two runs reported them all already
    again = runner.invoke(cli, ["--db", str(db), "mirrors", BANK, "--format", "json"])
    body = json.loads(again.output)
    assert body["new"] == 0 and body["mirrors"] == len(rows) and all(not e["mirrors"] for e in body["entries"])
    table = runner.invoke(cli, ["--db", str(db), "mirrors", BANK, "--all"])
    assert "fingerprint contains" in table.output and "autov3" in table.output


def test_mirrors_without_fingerprints_or_archive(world, tmp_path: Path) -> None:
    """Hashes alone still find the exact and header-rewritten copies; converted ones need fingerprints."""
    with Store.open(tmp_path / "s.db") as store:
        run_hub_demo(store, world, say=lambda _line: None)
        report = find_mirrors(store, BANK, fingerprints=False, record=False)
    signals = {m.matched_by for e in report.entries for m in e.mirrors}
    assert "fingerprint" not in signals and "archive" not in signals and {"sha256", "autov3"} <= signals


def test_archive_client_against_the_fake(world) -> None:
    person = world.people[0]
    with fake_civarchive(world.archive, hf_endpoint="https://huggingface.co") as archive:
        with CivArchiveClient(f"{archive.url}/api") as client:
            record = client.lookup(person.sha256.lower())
            assert record.model_id == str(person.model_id) and record.sha256 == person.sha256
            assert client.lookup("0" * 64) is None
            archive.faults.append(__import__("consentry.hubs.fakes", fromlist=["Fault"]).Fault(
                "status", match="/api/sha256/", status=503, retry_after=0))  # fmt: skip
            assert client.lookup(person.sha256) is not None  # retried after the 503
    expected = [m["url"] for f in world.archive[0].files for m in f.mirrors]
    assert [m.url for m in record.mirrors] == [u.replace("{hf}", "https://huggingface.co") for u in expected]


def test_bank_entry_added_from_a_file_finds_converted_copies(world, tmp_path: Path) -> None:
    """A bank built with `bank add` from the file itself (no Civitai crawl at all) needs only the
    Hugging Face crawl: its own fingerprint finds the converted and merged copies."""
    from consentry.banks.entries import add_model_file
    from consentry.fingerprints.stored import register_base

    person = world.people[0]
    with Store.open(tmp_path / "s.db") as store, serve_world(world.hf) as hub:
        register_base(store, "sd15", world.base_path)
        store.banks.create("mine", labels=["real-person-likeness"])
        add_model_file(store, "mine", person.path)
        connector = HuggingFaceConnector(hub.url, fingerprints=True)
        connector.crawl(store, {})
        connector.close()
        found = {m.file_remote_id: m.matched_by for e in find_mirrors(store, "mine").entries for m in e.mirrors}
    for p in world.planted:
        if p.person == person.name and p.hub == "huggingface":
            assert found.get(p.where) == p.signal, p


def test_unknown_bank_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "s.db"), "mirrors", "nope"])
    assert result.exit_code == 2 and "no bank named 'nope'" in result.output


def test_demo_command_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick start's main job: its own store in the demo folder, every planted copy found."""
    import re
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the demo makes its folder without --dir
    default = CliRunner().invoke(cli, ["demo", "--models", "300"])
    assert default.exit_code == 0, default.output
    assert list(tmp_path.glob("consentry-demo-*/consentry.db"))
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--models", "300"])
    assert result.exit_code == 0, result.output
    found, planted = map(int, re.search(r"(\d+) of (\d+) planted copies found", result.output).groups())
    assert planted >= 12 and found == planted
    assert "NOT FOUND" not in result.output and (tmp_path / "d" / "consentry.db").is_file()
    assert not (tmp_path / "home").exists() or not list((tmp_path / "home").rglob("consentry.db"))


def test_a_new_commit_on_a_mirror_repo_is_not_a_new_mirror(world, tmp_path: Path) -> None:
    """A Hugging Face URL is pinned to the repo's commit: after a push (and from another host
    serving the same hub) the same file is the same mirror, its URL brought up to date."""
    with Store.open(tmp_path / "s.db") as store:
        first = run_hub_demo(store, world, say=lambda _line: None).second
        before = {(e.entry.id, m.file_remote_id): m for e in first.entries for m in e.mirrors if m.hub == "huggingface"}
        for repo in world.hf.repos.values():
            repo.sha = hashlib.sha1(b"pushed " + repo.sha.encode()).hexdigest()
        with serve_world(world.hf) as hub:
            connector = HuggingFaceConnector(hub.url, fingerprints=True)
            connector.crawl(store, {})
            connector.close()
            again = find_mirrors(store, BANK)
        after = {(e.entry.id, m.file_remote_id): m for e in again.entries for m in e.mirrors if m.hub == "huggingface"}
        stored = store.mirrors.for_bank(store.banks.get(BANK).id)
    assert before and set(after) == set(before)
    assert again.new_count == 0 and all(not m.new for m in after.values())
    for key, m in after.items():
        repo = world.hf.repos["/".join(m.file_remote_id.split("/")[:2])]
        assert f"/resolve/{repo.sha}/" in m.url and m.url != before[key].url
        assert m.first_seen == before[key].first_seen
    assert len({(s.entry_id, s.url) for s in stored}) == len(stored)
    assert {s.url for s in stored if s.hub == "huggingface"} == {m.url for m in after.values()}


def test_archive_site_down_keeps_the_rest_of_the_report(world, tmp_path: Path) -> None:
    """The archive answering 503 every time: the hub mirrors are still printed and recorded, the
    report says which source is missing, and the exit status (1) says it is incomplete."""
    from consentry.hubs.fakes import Fault

    db = tmp_path / "s.db"
    with Store.open(db) as store:
        run_hub_demo(store, world, say=lambda _line: None)
        expected = store.mirrors.count()
    with fake_civarchive(world.archive, hf_endpoint="https://huggingface.co") as archive:
        archive.faults.append(Fault("status", match="/api/sha256/", status=503, retry_after=0, times=None))
        result = CliRunner().invoke(cli, ["--db", str(db), "mirrors", BANK, "--all", "--format", "json", "--archive",
                                          "--archive-url", f"{archive.url}/api"])  # fmt: skip
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["failed_source"] and "gave up" in body["failed_source"]
    signals = {m["matched_by"] for e in body["entries"] for m in e["mirrors"]}
    assert {"sha256", "autov3", "fingerprint"} <= signals and body["mirrors"] > 0
    assert any("archive site could not be asked" in n for n in body["notes"])
    assert "consentry: error:" in result.stderr and "503" in result.stderr
    with Store.open(db) as store:
        assert store.mirrors.count() == expected  # nothing recorded before is lost
