"""The Hugging Face connector and remote range reads against the local fake Hub over a real socket
(huggingface_hub and httpx unmocked; nothing leaves 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from consentry.errors import MalformedModelError
from consentry.fingerprints import SAME, compare, fingerprint_file
from consentry.formats import read_manifest
from consentry.hubs.base import HubError
from consentry.hubs.fakes import Fault
from consentry.hubs.fakes.huggingface import hf_world, iter_files, serve_world
from consentry.hubs.huggingface import HuggingFaceConnector
from consentry.hubs.remote import HubAccessDenied, RemoteSafetensors, fingerprint_remote
from consentry.hubs.retry import RetryPolicy
from consentry.store import Store

MIRA = "uploader0/mira_castellan_v2"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    return hf_world(3, tmp_path_factory.mktemp("hf"), checkpoint_blocks=8, checkpoint_width=64)


@pytest.fixture(scope="module")
def hub(world):
    with serve_world(world) as served:
        yield served


@pytest.fixture(autouse=True)
def _clean_faults(world, hub):
    hub.faults.clear()
    world.granted_tokens.clear()
    yield
    hub.faults.clear()


def fast(retries: int = 3) -> RetryPolicy:
    return RetryPolicy(retries=retries, backoff=0.01)


def connector(hub, retries: int = 3, **kw) -> HuggingFaceConnector:
    return HuggingFaceConnector(hub.url, kw.pop("token", None), retry=fast(retries), **kw)


def url(hub, repo: str, name: str) -> str:
    return f"{hub.url}/{repo}/resolve/main/{name}"


def crawl_into(db: Path, hub, options=None, **kw):
    c = connector(hub, **kw)
    try:
        with Store.open(str(db)) as store:
            return c.crawl(store, options or {})
    finally:
        c.close()


def hub_rows(db: Path) -> dict[str, list[dict]]:
    """Every hub row minus the columns that record *when* (first/last seen, row id)."""
    with Store.open(str(db)) as store:
        out = {}
        for table in ("hub_models", "hub_files"):
            rows = [dict(r) for r in store.db.query(f"SELECT * FROM {table} ORDER BY remote_id")]
            out[table] = [{k: v for k, v in r.items() if k not in ("id", "first_seen", "last_seen")} for r in rows]
        return out


def test_crawl_equals_the_world(tmp_path: Path, world, hub) -> None:
    report = crawl_into(tmp_path / "c.db", hub)
    assert report.finished and report.models == len(world.repos)
    with Store.open(str(tmp_path / "c.db")) as store:
        for repo, f in iter_files(world):
            row = store.hubs.get("hub_files", "huggingface", f"{repo.repo_id}/{f.name}")
            assert row is not None and row["size"] == f.size
            served = httpx.get(url(hub, repo.repo_id, f.name)).content if not repo.gated else f.path.read_bytes()
            if f.lfs:  # the LFS sha256 is the real SHA-256 of the bytes served
                assert row["sha256"] == hashlib.sha256(served).hexdigest().upper()
            else:
                assert row["sha256"] is None
        mira = store.hubs.get("hub_files", "huggingface", f"{MIRA}/mira_castellan_v2.safetensors")
        decoded = mira["metadata_json"]["decoded"]
        assert decoded["kohya"]["output_name"] == "mira_castellan_v2"
        assert decoded["training_folders"] and "miracastellan" in json.dumps(decoded["training_folders"])
        local = read_manifest(world.repos[MIRA].files["mira_castellan_v2.safetensors"].path)
        assert [t[0] for t in mira["header_json"]["tensors"]] == [t.name for t in local.tensors]
        assert 0 < mira["bytes_fetched"] < mira["size"] and mira["autov3"] is None
        model = store.hubs.get("hub_models", "huggingface", MIRA)
        assert model["base_model"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
        assert model["raw"]["base_model_relation"] == "adapter" and "lora" in model["tags"]
        broken = store.hubs.get("hub_files", "huggingface", "oddball/broken-lora/broken.safetensors")
        assert broken["raw"]["problem"].startswith("rejected:") and "trailing bytes" in broken["raw"]["problem"]
        assert broken["header_json"] is None


def test_search_filter_author_follow_pagination(tmp_path: Path, world, hub) -> None:
    report = crawl_into(tmp_path / "s.db", hub, {"filter": "style", "author": "styles1"})
    assert report.models == 2  # page size 3: the listing spans Link pages
    report = crawl_into(tmp_path / "t.db", hub, {"search": "lora"})
    assert report.models == 2  # anon30/LORA and oddball/broken-lora


def test_full_read_gives_autov3(tmp_path: Path, world, hub) -> None:
    crawl_into(tmp_path / "f.db", hub, {"author": "uploader0"}, full_read=True)
    path = world.repos[MIRA].files["mira_castellan_v2.safetensors"].path
    data = path.read_bytes()
    with Store.open(str(tmp_path / "f.db")) as store:
        row = store.hubs.get("hub_files", "huggingface", f"{MIRA}/mira_castellan_v2.safetensors")
    assert row["autov3"] == hashlib.sha256(data[read_manifest(path).data_start :]).hexdigest().upper()
    assert row["bytes_fetched"] >= len(data) - read_manifest(path).data_start


def test_gated_repo_without_and_with_access(tmp_path: Path, world, hub) -> None:
    key = "gatedorg/restricted-likeness/model.safetensors"
    crawl_into(tmp_path / "g.db", hub, {"author": "gatedorg"})
    with Store.open(str(tmp_path / "g.db")) as store:
        row = store.hubs.get("hub_files", "huggingface", key)
    assert row["sha256"] and row["header_json"] is None and "GatedRepo" in row["raw"]["problem"]
    with pytest.raises(HubAccessDenied):
        RemoteSafetensors(url(hub, "gatedorg/restricted-likeness", "model.safetensors")).open()
    world.granted_tokens.add("hf_granted")
    crawl_into(tmp_path / "g2.db", hub, {"author": "gatedorg"}, token="hf_granted")
    with Store.open(str(tmp_path / "g2.db")) as store:
        row = store.hubs.get("hub_files", "huggingface", key)
    assert row["metadata_json"]["decoded"]["kohya"]["output_name"] == "anna_voss"


def test_404_shapes_are_clear_errors(hub) -> None:
    c = connector(hub)
    with pytest.raises(HubError, match="repository not found"):
        c.repo_records("nobody/nothing")
    with pytest.raises(HubError, match="file not found"):
        c._call("metadata", lambda: c.api.get_hf_file_metadata(url=url(hub, MIRA, "missing.safetensors")))
    with pytest.raises(HubError, match="revision not found"):
        c._call("info", lambda: c.api.model_info(MIRA, revision="nope"))
    with pytest.raises(HubError, match="404"):
        RemoteSafetensors(url(hub, MIRA, "missing.safetensors")).open()
    c.close()


def test_remote_manifest_equals_local(world, hub) -> None:
    f = world.repos[MIRA].files["mira_castellan_v2.safetensors"]
    local = read_manifest(f.path)
    with RemoteSafetensors(url(hub, MIRA, f.name)) as remote:
        manifest = remote.open()
        assert remote.size == f.size and remote.bytes_fetched <= 1 << 16 < f.size
        assert [(t.name, t.dtype, t.shape, t.file_range) for t in manifest.tensors] == [
            (t.name, t.dtype, t.shape, t.file_range) for t in local.tensors
        ]
        assert manifest.metadata == local.metadata and manifest.data_start == local.data_start
        for t, lt in list(zip(manifest.tensors, local.tensors))[:4]:
            before = remote.bytes_fetched
            assert b"".join(manifest.iter_tensor_bytes(t)) == b"".join(local.iter_tensor_bytes(lt))
            assert remote.bytes_fetched - before == t.nbytes  # only that tensor's bytes


def test_malformed_remote_header_is_rejected_not_accepted(world, hub) -> None:
    repo, name = "oddball/broken-lora", "broken.safetensors"
    lenient = HfApi(endpoint=hub.url, token=False).parse_safetensors_file_metadata(repo, name)
    assert lenient.tensors  # huggingface_hub's reader takes the polyglot ...
    with pytest.raises(MalformedModelError, match="trailing bytes"):
        RemoteSafetensors(url(hub, repo, name)).open()  # ... consentry's strict parser does not


@pytest.mark.parametrize("kind", ["drop", "truncate", "bad_length"])
def test_faults_are_retried_within_bounds(world, hub, kind: str) -> None:
    f = world.repos[MIRA].files["mira_castellan_v2.safetensors"]
    hub.faults.append(Fault(kind, match="/resolve/", times=2))
    with RemoteSafetensors(url(hub, MIRA, f.name), retry=fast()) as remote:
        assert len(remote.open().tensors) == len(read_manifest(f.path).tensors)
    hub.faults[:] = [Fault(kind, match="/resolve/", times=None)]
    start = len(hub.requests)
    with RemoteSafetensors(url(hub, MIRA, f.name), retry=fast(2)) as remote:
        with pytest.raises(HubError, match="gave up after 3 attempts"):
            remote.open()
    assert len(hub.requests) - start == 3


def test_model_info_fault_is_retried_then_clear_error(world, hub) -> None:
    c = connector(hub, retries=2)
    hub.faults.append(Fault("drop", match=f"/api/models/{MIRA}", times=1))
    model, files = c.repo_records(MIRA)
    assert model["remote_id"] == MIRA
    hub.faults[:] = [Fault("truncate", match=f"/api/models/{MIRA}", times=None)]
    with pytest.raises(HubError, match="gave up after 3 attempts"):
        c.repo_records(MIRA)
    c.close()


def test_slow_response_times_out_then_clear_error(world, hub) -> None:
    hub.faults.append(Fault("slow", match="/resolve/", times=None, delay=0.5))
    client = httpx.Client(timeout=0.1)
    with pytest.raises(HubError, match="ReadTimeout"):
        RemoteSafetensors(url(hub, MIRA, "mira_castellan_v2.safetensors"), client=client, retry=fast(1)).open()
    client.close()


def test_remote_fingerprints(world, hub) -> None:
    f = world.repos[MIRA].files["mira_castellan_v2.safetensors"]
    with RemoteSafetensors(url(hub, MIRA, f.name)) as remote:
        lora = fingerprint_remote(remote)
    assert compare(fingerprint_file(f.path), lora.fingerprint).verdict == SAME and not lora.partial
    base, tuned = world.repos["fake-org/sd15-base"].files["model.safetensors"], world.repos["fake-org/sd15-finetune"].files["model.safetensors"]
    with RemoteSafetensors(url(hub, "fake-org/sd15-finetune", "model.safetensors")) as remote:
        result = fingerprint_remote(remote, base=read_manifest(base.path), base_name="sd15-base", budget=0.05,
                                    min_sample=0)
    assert result.partial and result.bytes_fetched < 0.05 * tuned.size + (1 << 16)
    full = fingerprint_file(tuned.path, base=base.path, base_name="sd15-base")
    verdict = compare(result.fingerprint, full)
    assert verdict.verdict == SAME and verdict.identity > 0.99


_CRAWL = """
import sys
from consentry.hubs.huggingface import HuggingFaceConnector
from consentry.hubs.retry import RetryPolicy
from consentry.store import Store
with Store.open(sys.argv[2]) as store:
    HuggingFaceConnector(sys.argv[1], retry=RetryPolicy(retries=3, backoff=0.01)).crawl(store, {"filter": "lora"})
"""


def test_killed_crawl_resumes_to_the_same_store(tmp_path: Path, world, hub) -> None:
    crawl_into(tmp_path / "whole.db", hub, {"filter": "lora"})
    db = tmp_path / "killed.db"
    hub.faults.append(Fault("slow", match="/api/models/", times=None, delay=0.25))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _CRAWL, hub.url, str(db)], env=env)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if db.exists():
                with Store.open(str(db)) as store:
                    if store.hubs.count("hub_models") >= 3:
                        break
        os.kill(proc.pid, signal.SIGKILL)  # mid-crawl: likely between a model_info and its commit
    finally:
        proc.wait()
    with Store.open(str(db)) as store:
        partway = store.hubs.count("hub_models")
    assert 3 <= partway < 10
    hub.faults.clear()
    report = crawl_into(db, hub, {"filter": "lora"})
    assert report.resumed_from and report.finished and report.models == 10 - partway
    assert hub_rows(db) == hub_rows(tmp_path / "whole.db")


def test_one_failing_repo_is_skipped_and_named_the_rest_stored(tmp_path: Path, world, hub) -> None:
    """A repo whose model_info keeps failing (after its retries) does not abort the crawl."""
    whole = crawl_into(tmp_path / "whole.db", hub, {"filter": "lora"})
    hub.faults.append(Fault("status", match=f"/api/models/{MIRA}", status=500, times=None))
    report = crawl_into(tmp_path / "one-bad.db", hub, {"filter": "lora"}, retries=1)
    assert report.finished and report.failed == 1 and report.models == whole.models - 1
    assert any(MIRA in n and "HTTP 500" in n for n in report.notes), report.notes
    with Store.open(str(tmp_path / "one-bad.db")) as store:
        stored = {r["remote_id"] for r in store.db.query("SELECT remote_id FROM hub_models")}
    expected = {r["remote_id"] for r in hub_rows(tmp_path / "whole.db")["hub_models"]} - {MIRA}
    assert stored == expected
