"""The hub commands as a user runs them (click's runner, the real clients, the fakes on 127.0.0.1):
hosts from flags and from the environment, stop-and-resume, restart, the remote reader, and
what a host that cannot work gets."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from consentry.cli import cli
from consentry.hubs.base import HubError
from consentry.hubs.civitai import CivitaiConnector
from consentry.hubs.fakes import Fault
from consentry.hubs.fakes.civitai import civitai_world, fake_civitai
from consentry.hubs.fakes.huggingface import hf_world, serve_world
from consentry.hubs.huggingface import HuggingFaceConnector
from consentry.hubs.retry import RetryPolicy
from consentry.store import Store

MIRA = "uploader0/mira_castellan_v2"


@pytest.fixture(scope="module")
def cworld():
    return civitai_world(seed=5, n_models=12)


@pytest.fixture(scope="module")
def hworld(tmp_path_factory: pytest.TempPathFactory):
    return hf_world(2, tmp_path_factory.mktemp("hf"), checkpoint_blocks=4, checkpoint_width=32)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_civitai_host_from_the_environment_max_pages_resume_and_restart(cworld, tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    total = len(cworld.listed())
    with fake_civitai(cworld) as hub:
        env = {"CONSENTRY_CIVITAI_URL": hub.url}
        first = run("--db", db, "crawl", "civitai", "--limit", "5", "--max-pages", "1", "--json", env=env)
        assert first.exit_code == 0, first.output
        one = json.loads(first.output)
        assert (one["models"], one["pages"], one["finished"]) == (5, 1, False)
        rest = json.loads(run("--db", db, "crawl", "civitai", "--limit", "5", "--json", env=env).output)
        assert rest["resumed_from"] and rest["finished"] and rest["models"] == total - 5
        again = run("--db", db, "crawl", "civitai", "--limit", "5", "--restart", env=env)
        assert again.exit_code == 0 and f"crawl civitai: {total} model(s)" in again.output and "resumed" not in again.output
        paths = {r.path for r in hub.requests}
    assert paths == {"/api/v1/models"}  # every request went to the host the environment named
    with Store.open(db) as store:
        assert store.hubs.count("hub_models") == total


def test_huggingface_host_from_hf_endpoint_and_the_report(hworld, tmp_path: Path) -> None:
    db = str(tmp_path / "h.db")
    with serve_world(hworld) as hub:
        result = run("--db", db, "crawl", "huggingface", "--filter", "lora", "--json", env={"HF_ENDPOINT": hub.url})
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        text = run("--db", db, "crawl", "huggingface", "--filter", "lora", "--base-url", hub.url)
    loras = [r for r in hworld.ordered() if "lora" in r.tags]
    assert report["finished"] and report["models"] == len(loras) and report["failed"] == 0
    assert text.exit_code == 0 and f"crawl huggingface: {len(loras)} model(s)" in text.output
    with Store.open(db) as store:
        rows = {r["remote_id"]: r["sha256"] for r in store.db.query("SELECT remote_id, sha256 FROM hub_files")}
    f = hworld.repos[MIRA].files["mira_castellan_v2.safetensors"]
    assert rows[f"{MIRA}/{f.name}"] == hashlib.sha256(f.path.read_bytes()).hexdigest().upper()


def test_progress_callback_counts_every_stored_record(cworld, tmp_path: Path) -> None:
    seen: list[int] = []
    with fake_civitai(cworld) as hub, Store.open(tmp_path / "p.db") as store:
        report = CivitaiConnector(hub.url).crawl(store, {"limit": 4}, progress=seen.append)
    assert len(seen) == report.pages and sum(seen) == report.models + report.versions + report.files + report.images


def test_huggingface_429_and_503_are_waited_out(hworld, tmp_path: Path) -> None:
    with serve_world(hworld) as hub, Store.open(tmp_path / "r.db") as store:
        hub.faults.append(Fault("status", match=f"/api/models/{MIRA}", status=429, times=1))
        hub.faults.append(Fault("status", match=f"/api/models/{MIRA}", status=503, retry_after=1, times=1, skip=1))
        connector = HuggingFaceConnector(hub.url, retry=RetryPolicy(retries=3, backoff=0.01))
        started = time.monotonic()
        report = connector.crawl(store, {"filter": "lora"})
        elapsed = time.monotonic() - started
        connector.close()
        assert report.finished and report.failed == 0 and store.hubs.get("hub_models", "huggingface", MIRA)
    assert [f.fired for f in hub.faults] == [1, 1]  # (retried by consentry or by huggingface_hub itself)
    assert elapsed >= 1.0  # the 503's Retry-After: 1 was honoured


@pytest.mark.parametrize("hub", ["civitai", "huggingface"])
def test_a_url_no_retry_can_fix_fails_at_once(tmp_path: Path, hub: str) -> None:
    retry = RetryPolicy(retries=5, backoff=1.0)
    connector = (CivitaiConnector("ftp://127.0.0.1:9", retry=retry) if hub == "civitai"
                 else HuggingFaceConnector("ftp://127.0.0.1:9", retry=retry))  # fmt: skip
    started = time.monotonic()
    with Store.open(tmp_path / "u.db") as store, pytest.raises(HubError, match="UnsupportedProtocol"):
        connector.crawl(store, {})
    assert retry.retried == 0 and time.monotonic() - started < 5
    result = run("--db", str(tmp_path / "u.db"), "crawl", hub, "--base-url", "ftp://127.0.0.1:9")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("consentry: error:") and "unsupported protocol" in result.output


def test_remote_command_reads_header_and_lfs_sha256(hworld, tmp_path: Path) -> None:
    f = hworld.repos[MIRA].files["mira_castellan_v2.safetensors"]
    db = str(tmp_path / "r.db")
    with serve_world(hworld) as hub:
        url = f"{hub.url}/{MIRA}/resolve/main/{f.name}"
        result = run("--db", db, "remote", url, "--json")
        text = run("--db", db, "remote", url, "--no-fingerprint")
        missing = run("--db", db, "remote", f"{hub.url}/{MIRA}/resolve/main/nope.safetensors")
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    raw = f.path.read_bytes()
    assert body["sha256"] == hashlib.sha256(raw).hexdigest().upper() and body["size"] == len(raw)
    header_len = int.from_bytes(raw[:8], "little")
    assert body["tensors"] == len([k for k in json.loads(raw[8 : 8 + header_len]) if k != "__metadata__"])
    # a LoRA's fingerprint needs every tensor, so the whole data part was read: AutoV3 comes with it
    assert body["autov3"] == hashlib.sha256(raw[8 + header_len :]).hexdigest().upper()
    assert body["fingerprint"]["module_count"] > 0 and 0 < body["bytes_fetched"] <= len(raw)
    assert text.exit_code == 0 and "AutoV3   - (needs the whole data part: --full-read)" in text.output
    assert missing.exit_code != 0 and "nope.safetensors" in missing.output
