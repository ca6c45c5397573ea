"""The demo world: a seeded Civitai, Hugging Face and archive site, built to show mirror finding.

``build_demo_world`` fills the fakes with a realistic small world: a few thousand Civitai models
with tens of thousands of preview images; among them likeness LoRAs of fictional people, real
files whose kohya training metadata names their subject; a deletion wave that removes those;
and their re-uploads to Hugging Face under generic names ("LORA", "Test-model") — exact copies,
copies with the metadata stripped, conversions to PEFT keys in fp16, rank-resized copies, and
merges into a checkpoint — plus unrelated repos, one copy re-uploaded to Civitai itself, and
the archive site's mirror lists. Every planted copy is recorded (:class:`Planted`), so tests
and the demo can say what should be found and how. Everyone named here is fictional.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from consentry.demo.lora_variants import Lora, base_weights, make_lora, merge_into, resize, save_lora, write_safetensors
from consentry.demo.sample_models import kohya_metadata
from consentry.hubs.fakes.civarchive import ArchivedFile, ArchivedModel
from consentry.hubs.fakes.civitai import SITE, CivitaiWorld, civitai_world
from consentry.hubs.fakes.huggingface import SD15, HfWorld

PEOPLE = ["Mira Castellan", "Ilse Verhoeven", "Anouk Lindqvist", "Nella Okafor", "Katya Marchetti",
          "Liora Halloran", "Selma Drozdova", "Yusuf Pereira", "Dario Nakamura", "Orrin Castellan"]  # fmt: skip
# Each deleted model's fate on the other hubs (cycled): what a re-uploader did to it.
FATES = [
    ("exact", "stripped", "peft-fp16", "merged"),
    ("stripped", "resized", "civitai-exact"),
    ("fp32-kept-metadata",),
    ("merged",),
    ("exact", "offsite"),
    ("offsite",),
    (),
    ("late-peft",),
]
HOW = {
    "exact": ("the same file", "sha256"),
    "stripped": ("the same tensors, training metadata stripped", "autov3"),
    "peft-fp16": ("converted to PEFT/diffusers keys and fp16", "fingerprint"),
    "late-peft": ("converted to PEFT/diffusers keys and fp16, uploaded after the first search", "fingerprint"),
    "fp32-kept-metadata": ("re-saved in fp32 with the kohya metadata (and its now stale sshs_model_hash) kept", "fingerprint"),
    "resized": ("resized to rank 4 by SVD", "fingerprint"),
    "merged": ("merged into an SD1.5 checkpoint at 0.8, fp16", "fingerprint"),
    "civitai-exact": ("the same file, re-uploaded to Civitai by another account", "sha256"),
    "offsite": ("listed by the archive site on a file host that is not crawled", "archive"),
}
GENERIC_NAMES = [("LORA", "LORA.safetensors"), ("Test-model", "model.safetensors"), ("lora-v1", "pytorch_lora_weights.safetensors"),
                 ("test", "lora.safetensors"), ("model", "model.safetensors")]  # fmt: skip
MERGE_NAMES = [("realistic-mix", "model.safetensors"), ("merge-v2", "model.safetensors"), ("Test-model", "model.safetensors")]


@dataclass
class Person:
    name: str
    model_id: int  # the Civitai model of their likeness LoRA (deleted in the wave)
    path: Path  # the LoRA as first uploaded
    sha256: str  # upper-case hex of that file
    lora: Lora


@dataclass
class Planted:
    """One copy put on a hub: what should be found, and by which signal."""

    person: str
    model_id: int
    fate: str
    hub: str  # huggingface, civitai, or the file host's name for archive-only copies
    where: str  # repo/file on Hugging Face, model id on Civitai, URL elsewhere
    signal: str  # the strongest signal that should find it

    @property
    def how(self) -> str:
        return HOW[self.fate][0]


@dataclass
class DemoWorld:
    root: Path
    civitai: CivitaiWorld
    hf: HfWorld
    archive: list[ArchivedModel]
    people: list[Person]
    base_path: Path  # the public base model the merges used (a demo user has it locally)
    planted: list[Planted] = field(default_factory=list)
    late: list[tuple[Person, str]] = field(default_factory=list)  # re-uploads that happen after the first search

    @property
    def wave(self) -> set[int]:
        return {p.model_id for p in self.people}

    def deletion_wave(self) -> Path:
        """Delete the likeness models from Civitai and write the list an advocate holds
        afterwards: model name, old Civitai URL, SHA256 (in whatever case it was copied)."""
        self.civitai.delete(self.wave)
        path = self.root / "deleted_models.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Model Name", "Old URL", "SHA256"])
            for i, person in enumerate(self.people):
                model = self.civitai.models[person.model_id]
                sha = person.sha256.lower() if i % 3 == 1 else person.sha256
                writer.writerow([model["name"], f"{SITE}/models/{person.model_id}/{_slug(model['name'])}", sha])
        return path

    def upload_late(self) -> list[Planted]:
        """The re-uploads that appear after the first search (what a second run reports as new)."""
        added = []
        for person, fate in self.late:
            added.append(_plant_hf(self, person, fate, random.Random(person.model_id)))
        self.late.clear()
        self.planted.extend(added)
        return added


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def build_demo_world(root: Path, *, seed: int = 0, models: int = 3000, people: int = 8, noise_repos: int = 24) -> DemoWorld:
    """Write the world's files under ``root`` and return it (the same seed gives the same world)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    civitai = civitai_world(seed, models)
    hf = HfWorld(root=root / "huggingface", page_size=25, seed=seed)
    base_path = root / "sd15-base.safetensors"
    write_safetensors(base_weights(seed + 1), base_path)
    world = DemoWorld(root, civitai, hf, [], [], base_path)
    candidates = [m for m in civitai.listed() if m["type"] == "LORA"]
    for i, model in enumerate(rng.sample(candidates, min(people, len(candidates), len(PEOPLE)))):
        world.people.append(_likeness_model(world, model, PEOPLE[i], seed * 100 + i))
    for i, person in enumerate(world.people):
        for fate in FATES[i % len(FATES)]:
            if fate.startswith("late-"):
                world.late.append((person, fate))
            elif fate == "civitai-exact":
                world.planted.append(_plant_civitai(world, person, rng))
            elif fate == "offsite":
                world.planted.append(_plant_offsite(world, person))
            else:
                world.planted.append(_plant_hf(world, person, fate, rng))
    _noise(world, noise_repos, rng)
    _archive(world)
    return world


def _likeness_model(world: DemoWorld, model: dict, person: str, seed: int) -> Person:
    """Turn a listed LoRA into a fictional person's likeness LoRA with a real file."""
    first, last = person.split()
    model.update(name=f"{person} - realistic likeness", tags=["woman", "celebrity", "realistic", "person"],
                 description=f"<p>{person}, trained on 40 photos. Trigger: {first.lower()}{last.lower()[:3]}</p>")  # fmt: skip
    for version in model["modelVersions"]:
        version.update(baseModel="SD 1.5", trainedWords=[f"{first.lower()}{last.lower()[:3]}"])
    output = f"{first.lower()}_{last.lower()}_v1"
    lora = make_lora(seed)
    path = world.root / "civitai" / f"{output}.safetensors"
    metadata = kohya_metadata(f"10_{first.lower()} {last.lower()}", output)
    save_lora(lora, path, metadata=metadata)
    metadata["sshs_model_hash"] = _data_sha256(path).lower()  # kohya records its AutoV3 in the header
    save_lora(lora, path, metadata=metadata)
    world.civitai.attach_file(model["id"], path)
    return Person(person, model["id"], path, hashlib.sha256(path.read_bytes()).hexdigest().upper(), lora)


def _data_sha256(path: Path) -> str:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n :]).hexdigest().upper()


def _plant_hf(world: DemoWorld, person: Person, fate: str, rng: random.Random) -> Planted:
    merged = fate == "merged"
    repo_name, filename = rng.choice(MERGE_NAMES if merged else GENERIC_NAMES)
    user = f"{rng.choice(['anon', 'throwaway', 'user', 'x'])}{rng.randint(100, 9999)}"
    while f"{user}/{repo_name}" in world.hf.repos:
        user += "0"
    repo = world.hf.add_repo(f"{user}/{repo_name}", base=SD15, relation="merge" if merged else "adapter",
                             tags=["checkpoint"] if merged else ["lora"])  # fmt: skip
    target = world.hf.root / repo.repo_id / filename
    if fate == "exact":
        world.hf.add_file(repo, filename, copy_of=person.path)
    elif fate == "stripped":
        save_lora(person.lora, target, metadata={"format": "pt"})
    elif fate in ("peft-fp16", "late-peft"):
        save_lora(person.lora, target, fmt="peft", metadata={"format": "pt"})
    elif fate == "fp32-kept-metadata":
        from consentry.formats import read_manifest

        kept = dict(read_manifest(person.path).metadata)
        save_lora(person.lora, target, dtype=np.float32, metadata=kept)  # re-saved: new bytes, same header claims
    elif fate == "resized":
        save_lora(resize(person.lora, 4), target, metadata={"ss_training_comment": "dimension is resized from 8 to 4"})
    elif fate == "merged":
        from consentry.formats import read_manifest
        from consentry.fingerprints.arrays import read_array

        base = {t.name: read_array(read_manifest(world.base_path), t) for t in read_manifest(world.base_path).tensors}
        merge_into(base, person.lora, 0.8, target)
    else:
        raise ValueError(fate)
    if filename not in repo.files:
        world.hf.add_file(repo, filename, copy_of=target)
    return Planted(person.name, person.model_id, fate, "huggingface", f"{repo.repo_id}/{filename}", HOW[fate][1])


def _plant_civitai(world: DemoWorld, person: Person, rng: random.Random) -> Planted:
    """The same file under another account on Civitai, named like a generic test upload."""
    others = [m for m in world.civitai.listed() if m["type"] == "LORA" and m["id"] not in world.wave]
    model = rng.choice(others)
    model.update(name="Test model", tags=["character"])
    world.civitai.attach_file(model["id"], person.path, name="LORA.safetensors")
    return Planted(person.name, person.model_id, "civitai-exact", "civitai", str(model["id"]), "sha256")


def _plant_offsite(world: DemoWorld, person: Person) -> Planted:
    url = f"https://files.example-host.net/{person.sha256[:10].lower()}/{person.path.name}"
    return Planted(person.name, person.model_id, "offsite", "files.example-host.net", url, "archive")


def _noise(world: DemoWorld, count: int, rng: random.Random) -> None:
    """Unrelated repos: style LoRAs in both key formats, and the base model itself."""
    base = world.hf.add_repo("stable-diffusion-v1-5/sd15-base-mirror", base=None, relation=None, tags=["checkpoint"])
    world.hf.add_file(base, "model.safetensors", copy_of=world.base_path)
    for k in range(count):
        style = rng.choice(["watercolor", "ink-wash", "pixel-art", "neon-noir", "isometric", "film-grain"])
        repo = world.hf.add_repo(f"{rng.choice(['studio', 'artlab', 'lumen'])}{k % 5}/{style}-{k}", tags=["lora", "style"])
        target = world.hf.root / repo.repo_id / "style.safetensors"
        save_lora(make_lora(10_000 + k), target, fmt="peft" if k % 2 else "kohya",
                  metadata={"ss_output_name": f"{style}_{k}"})  # fmt: skip
        world.hf.add_file(repo, "style.safetensors", copy_of=target)


def _archive(world: DemoWorld) -> None:
    """The archive knows every deleted model: its file, and the exact copies it has seen."""
    for person in world.people:
        model = world.civitai.models[person.model_id]
        mirrors = []
        for p in world.planted:
            if p.person != person.name:
                continue
            if p.fate == "exact":
                repo, _, name = p.where.rpartition("/")
                mirrors.append({"url": f"{{hf}}/{repo}/resolve/main/{name}", "filename": name, "deletedAt": None})
            elif p.fate == "offsite":
                mirrors.append({"url": p.where, "filename": person.path.name, "deletedAt": None})
        if mirrors:  # and one copy that was taken down already
            mirrors.append({"url": f"https://pixeldrain.example/u/{person.sha256[:8].lower()}", "filename": person.path.name,
                            "deletedAt": "2026-06-02T10:00:00.000Z"})  # fmt: skip
        version = model["modelVersions"][0]
        world.archive.append(ArchivedModel(
            model_id=person.model_id, version_id=version["id"], name=model["name"], type="LORA",
            trigger=version["trainedWords"], creator=model["creator"]["username"], deleted_at="2026-05-24T00:00:00.000Z",
            files=[ArchivedFile(person.sha256, person.path.name, person.path.stat().st_size / 1024, mirrors)],
        ))  # fmt: skip
