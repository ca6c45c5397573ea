"""Benchmark: Civitai crawl ingest from the loopback fake into SQLite (model and image records/s).

The fake runs in its own process (so it does not share the crawler's GIL). Three runs over the
same world:

* baseline: raw HTTP fetch + JSON parse of every page (no mapping, no store writes);
* models:   ``crawl civitai`` without ``--images`` (models + versions + files + preview images);
* images:   ``crawl civitai --images`` (also pages /api/v1/images for every version, with meta).

Goals (issue 5): >= 5,000 model records/s and >= 20,000 image records/s on 2 cores.

    python bench/crawl_ingest.py [--models 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from consentry.hubs.civitai import CivitaiConnector
from consentry.store import Store


def start_fake(models: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "consentry.hubs.fakes.civitai", "--models", str(models), "--seed", "1"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    url = proc.stdout.readline().strip()
    for _ in range(100):
        try:
            httpx.get(url + "/api/v1/models?limit=1")
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError("fake did not start")


def baseline(url: str, limit: int) -> tuple[int, int, float]:
    """Fetch and parse every /models page, then every version's /images pages; no store."""
    versions: list[int] = []
    models = images = 0
    started = time.perf_counter()
    with httpx.Client(base_url=url) as client:
        cursor = None
        while True:
            params = {"limit": limit, "sort": "Newest", "nsfw": "true", **({"cursor": cursor} if cursor else {})}
            body = json.loads(client.get("/api/v1/models", params=params).content)
            models += len(body["items"])
            versions += [v["id"] for m in body["items"] for v in m["modelVersions"]]
            cursor = body["metadata"].get("nextCursor")
            if cursor is None:
                break
        model_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for version in versions:
            body = json.loads(client.get("/api/v1/images", params={"modelVersionId": version, "withMeta": "true",
                                                                  "limit": 200, "nsfw": "X"}).content)  # fmt: skip
            images += len(body["items"])
        image_seconds = time.perf_counter() - started
    print(f"baseline (fetch+parse, no store): {models / model_seconds:,.0f} models/s ({models} in {model_seconds:.2f} s); "
          f"/images one request per version, sequential: {images / image_seconds:,.0f} images/s ({images} in {image_seconds:.2f} s)")  # fmt: skip
    return models, images, model_seconds


def timed_crawl(url: str, db: Path, **options) -> tuple[object, float]:
    with Store.open(db) as store:
        started = time.perf_counter()
        report = CivitaiConnector(url).crawl(store, {"limit": 100, **options})
        return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=3000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU(s); world of {args.models} models (fake in its own process)")
    proc, url = start_fake(args.models)
    try:
        baseline(url, 100)
        with tempfile.TemporaryDirectory() as tmp:
            report, seconds = timed_crawl(url, Path(tmp) / "models.db")
            records = report.models + report.versions + report.files + report.images
            print(f"crawl (models, no --images): {report.models / seconds:,.0f} model records/s, {records / seconds:,.0f} "
                  f"records/s of all kinds ({report.models} models, {records} records, {seconds:.2f} s)")  # fmt: skip
            report, seconds = timed_crawl(url, Path(tmp) / "images.db", images=True)
            print(f"crawl --images: {report.images / seconds:,.0f} image records/s ({report.images} images with meta, "
                  f"{report.models} models, {seconds:.2f} s)")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
