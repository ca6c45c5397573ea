"""Benchmark: Civitai crawl ingest from the loopback fake into SQLite (model and image records/s).

The fake runs in its own process (so it does not share the crawler's GIL). Three runs over the
same world:

* baseline: raw HTTP fetch + JSON parse of every page, sequentially (no mapping, no store writes):
  what the fake can serve, the ceiling any crawler meets here;
* models:   ``crawl civitai`` (models + versions + files + preview images);
* images:   ``crawl civitai --feed images`` (the /api/v1/images feed, 200 per page, with meta).

Goals (issue 5): >= 5,000 model records/s and >= 20,000 image records/s on 2 cores. A model
record is a row the models feed yields for a model, a version or a file; the models/s rate and
the rate with preview images are printed too.

    python bench/crawl_ingest.py [--models 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def baseline(url: str, *, report: bool = True) -> None:
    """Fetch and parse every /models page, then every /images page; no store. The first
    (unreported) pass warms the fake, which serialises each item once, on first request."""
    with httpx.Client(base_url=url) as client:
        for path, limit, extra in (("/api/v1/models", 100, {"nsfw": "true"}),
                                   ("/api/v1/images", 200, {"withMeta": "true", "browsingLevel": 31})):  # fmt: skip
            count, cursor, started = 0, None, time.perf_counter()
            while True:
                params = {"limit": limit, "sort": "Newest", **extra, **({"cursor": cursor} if cursor else {})}
                body = json.loads(client.get(path, params=params).content)
                count += len(body["items"])
                cursor = body["metadata"].get("nextCursor")
                if cursor is None:
                    break
            seconds = time.perf_counter() - started
            if report:
                print(f"baseline {path} (fetch+parse, no store): {count / seconds:,.0f} records/s ({count} in {seconds:.2f} s)")


def timed_crawl(url: str, db: Path, **options) -> tuple[object, float]:
    with Store.open(db) as store:
        started = time.perf_counter()
        report = CivitaiConnector(url).crawl(store, {"limit": 100, **options})
        assert report.finished, report
        return report, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU(s); world of {args.models} models (fake in its own process)")
    proc, url = start_fake(args.models)
    try:
        baseline(url, report=False)
        baseline(url)
        with tempfile.TemporaryDirectory() as tmp:
            # each crawl three times into a fresh store: a 2-core host's neighbours move single
            # runs by a third, so the median and the range are printed, every run counted
            model_rates, image_rates = [], []
            for run in range(args.runs):
                report, seconds = timed_crawl(url, Path(tmp) / f"models{run}.db")
                model_side = report.models + report.versions + report.files
                records = model_side + report.images
                model_rates.append(model_side / seconds)
                print(f"  run {run + 1} models feed: {model_side / seconds:,.0f} model records/s "
                      f"({report.models / seconds:,.0f} models/s; with the {report.images} preview images "
                      f"{records / seconds:,.0f} records/s of all kinds; {records} records in {seconds:.2f} s)")  # fmt: skip
                report, seconds = timed_crawl(url, Path(tmp) / f"models{run}.db", feed="images", limit=200)
                image_rates.append(report.images / seconds)
                print(f"  run {run + 1} --feed images: {report.images / seconds:,.0f} image records/s "
                      f"({report.images} images with generation metadata, {seconds:.2f} s)")  # fmt: skip
            for what, rates, goal in (("crawl (models feed): model records/s (models, versions, files)", model_rates, 5000),
                                      ("crawl --feed images: image records/s", image_rates, 20000)):  # fmt: skip
                median = statistics.median(rates)
                print(f"{what}: median {median:,.0f} (range {min(rates):,.0f}-{max(rates):,.0f} over {len(rates)} runs); "
                      f"goal {goal:,}: {'met' if median >= goal else 'NOT met'}")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
