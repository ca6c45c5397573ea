"""The quick start's main job, end to end on the demo world (:mod:`consentry.demo.hub_world`):
start the fake hubs on 127.0.0.1, crawl Civitai, let the deletion wave happen, import the list
of deleted models as a bank, crawl Hugging Face with fingerprints, find every mirror (with the
archive site as a further source), then show that a later run reports only what is new.

Every step is a library call a user can make with a real command, printed as they would type it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from consentry.banks.importing import ImportReport, import_rows
from consentry.demo.hub_world import DemoWorld, Planted
from consentry.hubs.base import CrawlReport
from consentry.hubs.civarchive import CivArchiveClient
from consentry.hubs.civitai import CivitaiConnector
from consentry.hubs.fakes.civarchive import fake_civarchive
from consentry.hubs.fakes.civitai import fake_civitai
from consentry.hubs.fakes.huggingface import serve_world
from consentry.hubs.huggingface import HuggingFaceConnector
from consentry.mirrors import MirrorReport, find_mirrors
from consentry.mirrors.finder import hf_remote_id

BANK = "deleted-likeness"
BASE = "sd15-base"


@dataclass
class DemoResult:
    civitai: CrawlReport | None = None
    imported: ImportReport | None = None
    huggingface: CrawlReport | None = None
    first: MirrorReport | None = None
    second: MirrorReport | None = None
    found: list[tuple[Planted, str | None]] = field(default_factory=list)  # each planted copy and the signal that found it


def run_hub_demo(store, world: DemoWorld, *, say: Callable[[str], None] = print,
                 show: Callable[[MirrorReport, bool], None] | None = None) -> DemoResult:  # fmt: skip
    result = DemoResult()
    with serve_world(world.hf) as hf, fake_civitai(world.civitai) as civitai, \
            fake_civarchive(world.archive, hf_endpoint=hf.url) as archive:  # fmt: skip
        say(f"fake hubs on 127.0.0.1: Civitai {civitai.url}, Hugging Face {hf.url}, archive {archive.url}/api\n")
        _register_base(store, world, say)

        say(f"$ consentry crawl civitai --fingerprints --base-url {civitai.url}")
        result.civitai = CivitaiConnector(civitai.url).crawl(store, {"fingerprints": True})
        r = result.civitai
        say(f"  {r.models} models, {r.versions} versions, {r.files} files, {r.images} preview images in {r.pages} pages;")
        say("  every safetensors model file range-read: header, AutoV3 and fingerprint\n")

        csv_path = world.deletion_wave()
        say(f"the deletion wave: {len(world.wave)} likeness models removed from Civitai (their pages now answer 404);")
        say(f"an advocate's list of them (name, old URL, SHA256): {csv_path}")
        if BANK not in {b.name for b in store.banks.list(with_counts=False)}:
            store.banks.create(BANK, labels=["real-person-likeness"], description="models deleted from Civitai",
                               source="consentry demo")  # fmt: skip
        say(f"$ consentry bank import {BANK} {csv_path.name}")
        result.imported = import_rows(store, BANK, csv_path, actor="demo")
        say(f"  rows {result.imported.rows_total}: added {result.imported.added}, duplicates {result.imported.duplicates}, "
            f"rejected {result.imported.rejected}\n")  # fmt: skip

        say(f"$ consentry crawl huggingface --fingerprints --base-url {hf.url}")
        result.huggingface = _crawl_hf(store, hf.url)
        r = result.huggingface
        say(f"  {r.models} repos, {r.files} files (LFS SHA256 without download; LoRAs read whole for AutoV3 and "
            f"fingerprints, checkpoints by a sample)\n")  # fmt: skip

        say(f"$ consentry mirrors {BANK} --archive --archive-url {archive.url}/api")
        with CivArchiveClient(f"{archive.url}/api") as client:
            result.first = find_mirrors(store, BANK, archive=client)
            if show:
                show(result.first, False)
            late = world.upload_late()
            if late:
                say(f"\nlater, {len(late)} more re-upload(s) appear on Hugging Face; the next crawl and search:")
                say(f"$ consentry crawl huggingface --fingerprints --base-url {hf.url} && consentry mirrors {BANK} --archive")
                _crawl_hf(store, hf.url)
                result.second = find_mirrors(store, BANK, archive=client)
                if show:
                    show(result.second, False)
    result.found = _score(world, [r for r in (result.first, result.second) if r])
    return result


def _register_base(store, world: DemoWorld, say: Callable[[str], None]) -> None:
    """The public base model the merges were made from, which the user has locally."""
    from consentry.fingerprints.stored import register_base

    say(f"$ consentry base add {BASE} {world.base_path.name}")
    register_base(store, BASE, world.base_path)


def _crawl_hf(store, url: str) -> CrawlReport:
    connector = HuggingFaceConnector(url, fingerprints=True)
    try:
        return connector.crawl(store, {})
    finally:
        connector.close()


def _score(world: DemoWorld, reports: list[MirrorReport]) -> list[tuple[Planted, str | None]]:
    """Which planted copies the searches found, and by what (the ground truth of the world)."""
    found: dict[tuple[str, str], str] = {}
    names = {p.model_id: p.name for p in world.people}
    for report in reports:
        for item in report.entries:
            person = names.get(_model_id(item.entry.url))
            for m in item.mirrors:
                where = m.file_remote_id or (hf_remote_id(m.url) if m.hub == "huggingface" else None) or m.url
                if m.hub == "civitai":
                    where = m.file_remote_id and _civitai_model(world, m.file_remote_id)
                found.setdefault((person, str(where)), m.matched_by)
    return [(p, found.get((p.person, p.where))) for p in world.planted]


def _model_id(url: str | None) -> int | None:
    from consentry.mirrors.known import civitai_model_id

    value = civitai_model_id(url)
    return int(value) if value else None


def _civitai_model(world: DemoWorld, file_id: str) -> str | None:
    for model in world.civitai.models.values():
        for version in model["modelVersions"]:
            if any(str(f["id"]) == file_id for f in version["files"]):
                return str(model["id"])
    return None
