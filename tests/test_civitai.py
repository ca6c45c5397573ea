"""The Civitai connector against the local fake on 127.0.0.1: the real httpx client, a real socket.

Nothing in the code under test is mocked; faults are injected by the fake server itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consentry.hubs.base import HubError
from consentry.hubs.civitai import CivitaiConnector, decode_nsfw_level
from consentry.hubs.retry import RetryPolicy
from consentry.hubs.fakes import Fault
from consentry.hubs.fakes.civitai import Shapes, civitai_world, fake_civitai, last_version_at
from consentry.store.store import Store



def crawl(url: str, db: Path, *, max_pages: int | None = None, api_key: str | None = None, **options):
    with Store.open(db) as store:
        # quick retries (Retry-After is still honoured)
        connector = CivitaiConnector(url, api_key, retry=RetryPolicy(retries=3, backoff=0.01), timeout=5.0)
        return connector.crawl(store, options, max_pages=max_pages)


def rows(db: Path, table: str) -> list[tuple]:
    """Every row of a hub table, without the first_seen/last_seen timestamps."""
    conn = sqlite3.connect(db)
    try:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})") if r[1] not in ("first_seen", "last_seen")]
        return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY hub, remote_id").fetchall()
    finally:
        conn.close()


def world_counts(world, **filters) -> dict[str, int]:
    listed = world.listed(**filters)
    versions = [v for m in listed for v in m["modelVersions"]]
    images = {i["id"] for v in versions for i in v["images"] if not i["poi"]}
    return {"models": len(listed), "versions": len(versions), "files": sum(len(v["files"]) for v in versions),
            "images": len(images)}  # fmt: skip


@pytest.fixture(scope="module")
def world():
    return civitai_world(seed=7, n_models=30)


def test_crawl_equals_the_world(world, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with fake_civitai(world) as hub:
        report = crawl(hub.url, db, limit=7, images=True, api_key="k3y")
    assert report.finished and report.pages == -(-len(world.listed()) // 7)
    assert {r.headers.get("authorization") for r in hub.requests} == {"Bearer k3y"}
    with Store.open(db) as store:
        counts = {t: store.hubs.count(f"hub_{t}", "civitai") for t in ("models", "versions", "files", "images")}
        assert counts == world_counts(world)
        for model in world.listed()[:5]:
            stored = store.hubs.get("hub_models", "civitai", model["id"])
            assert (stored["name"], stored["type"], stored["creator"], stored["tags"], stored["poi"], stored["minor"]) == (
                model["name"], model["type"], model["creator"]["username"], model["tags"], 0, 0)  # fmt: skip
            assert stored["nsfw_level"] == model["nsfwLevel"] and stored["stats"] == model["stats"]
            labels = [name for bit, name in ((1, "PG"), (2, "PG-13"), (4, "R"), (8, "X"), (16, "XXX"), (32, "Blocked"))
                      if model["nsfwLevel"] & bit]  # §1.4, written out here  # fmt: skip
            assert stored["nsfw_labels"] == labels
            assert stored["updated_at"] == last_version_at(model)
            version = model["modelVersions"][0]
            v = store.hubs.get("hub_versions", "civitai", version["id"])
            assert v["trained_words"] == version["trainedWords"] and v["base_model"] == version["baseModel"]
            f = store.hubs.get("hub_files", "civitai", version["files"][0]["id"])
            hashes = version["files"][0]["hashes"]
            assert f["sha256"] == hashes["SHA256"] == hashes["SHA256"].upper() and f["autov3"] == hashes["AutoV3"]
            assert f["blake3"] == hashes["BLAKE3"] and f["crc32"] == hashes["CRC32"] and f["autov1"] == hashes.get("AutoV1")
        # generation metadata, seeds above 2^63 kept exactly, null meta when the uploader hid it
        images = [i for m in world.listed() for v in m["modelVersions"] for i in v["images"] if not i["poi"]]
        big = next(i for i in images if i["meta"] and i["meta"]["seed"] >= 2**63)
        assert store.hubs.get("hub_images", "civitai", big["id"])["meta"]["seed"] == big["meta"]["seed"]
        hidden = next(i for i in images if i["meta"] is None)
        assert store.hubs.get("hub_images", "civitai", hidden["id"])["meta"] is None
        assert {store.hubs.get("hub_images", "civitai", i["id"])["nsfw_level"] for i in images} <= {1, 2, 4, 8, 16}
        null_stats = next(m for m in world.listed() if None in m["stats"].values())
        assert None in store.hubs.get("hub_models", "civitai", null_stats["id"])["stats"].values()


def test_decode_nsfw_level() -> None:
    assert decode_nsfw_level(7) == ["PG", "PG-13", "R"]
    assert decode_nsfw_level(60) == ["R", "X", "XXX", "Blocked"]
    assert decode_nsfw_level(0) == [] and decode_nsfw_level(None) == []


@pytest.mark.parametrize("style", ["number", "string", None])  # None: the composite "id|offset" string
def test_cursor_as_number_or_string(world, tmp_path: Path, style: str | None) -> None:
    with fake_civitai(world, Shapes(cursor_style=style)) as hub:
        report = crawl(hub.url, tmp_path / "c.db", limit=4)
    assert report.finished and report.models == len(world.listed())


@pytest.mark.parametrize("types", ["LORA,Checkpoint", " LORA , Checkpoint,"])
def test_query_and_types_filter(world, tmp_path: Path, types: str) -> None:
    with fake_civitai(world) as hub:
        report = crawl(hub.url, tmp_path / "c.db", limit=2, types=types, query="style", nsfw=False)
        sent = [r.query for r in hub.requests if r.path == "/api/v1/models"]
    assert report.finished and report.models == len(world.listed(types=["LORA", "Checkpoint"], query="style", nsfw=False))
    assert sent and all("types=LORA&types=Checkpoint" in q for q in sent), sent


def test_429_without_retry_after_and_503_with_it_are_retried(world, tmp_path: Path) -> None:
    with fake_civitai(world) as hub:
        # the 2nd /models request answers 429 without Retry-After (Cloudflare), the 3rd 503 with it
        hub.faults.append(Fault("status", match="/api/v1/models", status=429, message="Too Many Requests", skip=1))
        hub.faults.append(Fault("status", match="/api/v1/models", status=503, retry_after=1, skip=2,
                                message="Model search is temporarily overloaded — please retry."))  # fmt: skip
        started = time.monotonic()
        report = crawl(hub.url, tmp_path / "c.db", limit=5)
        elapsed = time.monotonic() - started
    assert report.finished and report.models == len(world.listed())
    assert [f.fired for f in hub.faults] == [1, 1] and "2 request(s) retried" in report.notes
    assert elapsed >= 1.0  # the 503's Retry-After: 1 was honoured


def test_page_limit_error_surfaces_clearly(tmp_path: Path) -> None:
    big = civitai_world(seed=3, n_models=1200)
    with fake_civitai(big, Shapes(page_mode=True)) as hub:
        with pytest.raises(HubError, match="too many pages.*cursors"):
            crawl(hub.url, tmp_path / "c.db", limit=100)
    with Store.open(tmp_path / "c.db") as store:  # the ten pages before the refusal are kept
        assert store.hubs.count("hub_models") == 1000


@pytest.mark.parametrize("damage", ["drop", "truncate", "bad_length"])
def test_broken_responses_are_retried_within_bounds(world, tmp_path: Path, damage: str) -> None:
    with fake_civitai(world) as hub:
        hub.faults.append(Fault(damage, match="/api/v1/models", times=2))
        report = crawl(hub.url, tmp_path / "ok.db", limit=10)
    assert report.finished and report.models == len(world.listed()) and hub.faults[0].fired == 2
    with fake_civitai(world) as hub:
        hub.faults.append(Fault(damage, match="/api/v1/models", times=None))
        with pytest.raises(HubError, match="gave up after 4 attempts"):
            crawl(hub.url, tmp_path / "bad.db", limit=10)
    assert hub.faults[0].fired == 4


def test_since_is_incremental(tmp_path: Path) -> None:
    world = civitai_world(seed=5, n_models=20)
    listed = world.listed()
    since = last_version_at(listed[6])[:19]  # seconds precision: listed[0..6] are at or after it
    db = tmp_path / "c.db"
    with fake_civitai(world) as hub:
        report = crawl(hub.url, db, limit=3, since=since)
        assert report.finished and report.models == 7 and report.pages == 3  # stopped, not the whole listing
        before = world.now
        world.add_models(4)
        new_ids = {m["id"] for m in world.listed()} - {m["id"] for m in listed}  # poi models are never listed
        report = crawl(hub.url, db, limit=3, since=before.isoformat())
    assert new_ids and report.finished and report.models == len(new_ids)
    with Store.open(db) as store:
        assert all(store.hubs.get("hub_models", "civitai", i) for i in new_ids)
        assert store.hubs.count("hub_models") == 7 + len(new_ids)


def test_killed_crawl_resumes_to_the_same_store(tmp_path: Path) -> None:
    world = civitai_world(seed=11, n_models=24)
    options = ["--limit", "3", "--images", "--no-progress"]
    reference, resumed = tmp_path / "reference.db", tmp_path / "resumed.db"
    with fake_civitai(world) as hub:  # one server: stored URLs name its port
        crawl(hub.url, reference, limit=3, images=True)  # uninterrupted
        hub.faults.append(Fault("slow", delay=0.1, times=None))  # slow enough to be killed between pages
        command = [sys.executable, "-m", "consentry", "--db", str(resumed), "crawl", "civitai", "--base-url", hub.url, *options]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while _stored_models(resumed) < 6:
                assert proc.poll() is None and time.monotonic() < deadline, "the crawl ended before it could be killed"
                time.sleep(0.02)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        stored = _stored_models(resumed)
        assert 0 < stored < len(world.listed()) and stored % 3 == 0  # killed mid-way, whole pages only
        hub.faults.clear()
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "resumed from " in done.stdout and "finished" in done.stdout
    for table in ("hub_models", "hub_versions", "hub_files", "hub_images"):
        assert rows(resumed, table) == rows(reference, table), table


def _stored_models(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM hub_models").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()


def test_images_feed_with_meta_linked_to_stored_models(world, tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with fake_civitai(world) as hub:
        crawl(hub.url, db)  # the models (and their previews, without generation metadata)
        report = crawl(hub.url, db, feed="images", limit=50)
    # the feed shows every public image of every model still up, also of models /models hides (poi, unrated)
    public = [(m, v, i) for m in world.models.values() if m["id"] not in world.deleted for v in m["modelVersions"]
              for i in v["images"] if not i["poi"] and not i["minor"]]  # fmt: skip
    listed = {m["id"] for m in world.listed()}
    assert report.finished and report.images == len(public) and report.models == 0
    with Store.open(db) as store:
        assert store.hubs.count("hub_images") == len(public)  # the previews were the same images: merged, not doubled
        for m, v, i in public:
            row = store.hubs.get("hub_images", "civitai", i["id"])
            assert row["meta"] == i["meta"] and row["nsfw_level"] == i["nsfwLevel"]
            # linked to its model when that model's version was stored (unlisted models' images stay unlinked)
            expected = (str(m["id"]), str(v["id"])) if m["id"] in listed else (None, str(v["id"]))
            assert (row["model_remote_id"], row["version_remote_id"]) == expected
    with fake_civitai(world) as hub:  # a later models crawl (previews carry no meta) keeps the feed's meta
        crawl(hub.url, db)
    with Store.open(db) as store:
        m, v, i = next(x for x in public if x[2]["meta"])
        assert store.hubs.get("hub_images", "civitai", i["id"])["meta"] == i["meta"]


def test_images_feed_since_stops_at_older_images(tmp_path: Path) -> None:
    world = civitai_world(seed=9, n_models=15)
    images = sorted((i for m in world.models.values() if m["id"] not in world.deleted for v in m["modelVersions"]
                     for i in v["images"] if not i["poi"] and not i["minor"]), key=lambda i: i["createdAt"], reverse=True)  # fmt: skip
    since = images[9]["createdAt"][:19]
    with fake_civitai(world) as hub:
        report = crawl(hub.url, tmp_path / "c.db", feed="images", limit=4, since=since)
    assert report.finished and report.images == sum(1 for i in images if i["createdAt"][:19] >= since)


def test_fingerprints_range_read_the_model_files(tmp_path: Path) -> None:
    """Files behind the download URL are read by ranges: header, the full AutoV3 and content hash
    (checked with hashlib / an independent read here), and a weight fingerprint; files the hub
    cannot serve are recorded with the reason, and the crawl carries on."""
    import numpy as np
    from safetensors.numpy import save_file

    from consentry.formats import read_manifest
    from consentry.identity.identify import identify

    world = civitai_world(seed=2, n_models=12)
    model = next(m for m in world.listed() if m["type"] == "LORA")
    path = tmp_path / "lora.safetensors"
    rng = np.random.default_rng(0)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rng.standard_normal((4, 320)).astype(np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": np.array(4.0, dtype=np.float32)},
              str(path), metadata={"ss_output_name": "someone"})  # fmt: skip
    f = world.attach_file(model["id"], path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    db = tmp_path / "c.db"
    with fake_civitai(world) as hub:
        report = crawl(hub.url, db, fingerprints=True)
    assert report.finished
    with Store.open(db) as store:
        row = store.hubs.get("hub_files", "civitai", f["id"])
        assert row["autov3"] == hashlib.sha256(data[8 + n :]).hexdigest().upper()  # full form, starting with Civitai's 12
        assert row["content_hash"] == identify(path).content_hash
        assert row["metadata_json"]["raw"] == read_manifest(path).metadata
        assert store.fingerprints.by_key(f"hub-file:civitai:{f['id']}") is not None
        others = store.db.query("SELECT raw FROM hub_files WHERE hub = 'civitai' AND remote_id != ?", (str(f["id"]),))
        problems = [json.loads(r["raw"]).get("problem", "") for r in others]
        assert problems and all("404" in p for p in problems if p)


def _serve_json(body: object):
    """A host answering every request with ``body``: the shapes no real page should have."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from consentry.hubs.fakes.serving import FakeServer

    async def answer(request):
        return Response(json.dumps(body), media_type="application/json")

    return FakeServer(Starlette(routes=[Route("/api/v1/models", answer), Route("/api/v1/images", answer)]))


@pytest.mark.parametrize("body", [[1, 2], "text", {"items": {"id": 1}}, None])
def test_an_answer_that_is_not_a_listing_is_one_clear_error(tmp_path: Path, body: object) -> None:
    with _serve_json(body) as hub, pytest.raises(HubError, match="not a listing"):
        crawl(hub.url, tmp_path / "c.db")


def test_listed_objects_without_an_id_are_skipped_and_counted(tmp_path: Path) -> None:
    good_file = {"id": 3, "name": "a.safetensors", "hashes": "not-an-object", "sizeKB": "big", "metadata": None}
    version = {"id": 2, "name": "v1", "publishedAt": 5, "files": [{"name": "no id"}, good_file], "images": [7, None]}
    body = {"items": [{"name": "no id"}, 5, None,
                      {"id": 1, "name": "ok", "creator": "a string", "modelVersions": [{"name": "no id"}, 9, version]}],
            "metadata": {}}  # fmt: skip
    with _serve_json(body) as hub:
        report = crawl(hub.url, tmp_path / "c.db")
    assert report.finished and (report.models, report.versions, report.files) == (1, 1, 1)
    # 3 models, 2 versions, 1 file, 2 images of no use
    assert report.failed == 8 and any("8 listed object(s) skipped" in n for n in report.notes)
    with Store.open(tmp_path / "c.db") as store:
        (f,) = store.db.query("SELECT remote_id, size, sha256 FROM hub_files")
    assert (f["remote_id"], f["size"], f["sha256"]) == ("3", None, None)


@pytest.mark.parametrize("query", ["page=x", "cursor=abc", "modelVersionId=v1", "browsingLevel=-1"])
def test_fake_refuses_a_bad_parameter_as_the_api_does(world, query: str) -> None:
    """400 with the zod-style {"error": …} body, never a 500 from the fake itself."""
    import httpx

    path = "/api/v1/images" if "Version" in query or "browsing" in query else "/api/v1/models"
    with fake_civitai(world) as hub:
        response = httpx.get(f"{hub.url}{path}?{query}")
    assert response.status_code == 400 and query.split("=")[0] in response.json()["error"]
