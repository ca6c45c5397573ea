"""Benchmark: `person find` over a store of 100,000 crawled models and 1,000,000 face embeddings.

Synthetic, built through the store's own repositories: model titles from a vocabulary (40 of
them name the person, some misspelt or in the kohya training folder only), and 1,000,000 faces
(random 128-d vectors at dlib's scale) of which 60 are the person's (within the calibrated
distance of a reference embedding). Timed: the search with the face index built (what every
search after the first costs), the index build itself, and the baseline — comparing every stored
embedding with numpy in memory — in the same run.

    python bench/person_find.py [--models 100000 --faces 1000000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from consentry import vectors
from consentry.images.faces import SAME_PERSON_DISTANCE
from consentry.likeness import RegisteredPerson, find_person
from consentry.likeness.face_index import FACES
from consentry.store import Store

NAME = "Mira Castellan"
WORDS = ["Neon", "Noir", "Ink", "Wash", "Retro", "Anime", "Portrait", "Style", "Film", "Grain", "Golden", "Hour", "Pixel",
         "Art", "Dark", "Fantasy", "Studio", "Light", "Realistic", "Girl", "Woman", "Armor", "Castle", "Robots"]  # fmt: skip


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True) * 1.35  # dlib embeddings have norms ~1.25-1.46


def build(db: Path, models: int, faces: int) -> tuple[np.ndarray, set[str], set[str], float]:
    rng, prng = np.random.default_rng(0), random.Random(0)
    text_hits, face_hits = set(), set()
    started = time.perf_counter()
    with Store.open(db) as store:
        rows, files = [], []
        for i in range(models):
            name = " ".join(prng.sample(WORDS, 3))
            if i % (models // 40) == 0:
                name = prng.choice([f"{NAME} - realistic", "Mira Castelan v2", "LORA"])
                text_hits.add(f"civitai:{i}")
                if name == "LORA":
                    files.append({"remote_id": f"f{i}", "model_remote_id": i, "metadata_json": {
                        "decoded": {"training_folders": [{"folder": "10_miracastellan", "name": "miracastellan"}]}}})
            rows.append({"remote_id": i, "name": name, "type": "LORA", "tags": ["lora"], "description": f"<p>{name}</p>"})
        store.hubs.upsert("hub_models", "civitai", rows)
        store.hubs.upsert("hub_files", "civitai", files)
        reference = unit(rng, 1)[0]
        per_image = 4
        for start in range(0, faces, 40_000):
            count = min(40_000, faces - start)
            block = unit(rng, count)
            with store.db.transaction():
                for j in range(0, count, per_image):
                    n = start + j
                    model = str(rng.integers(0, models))
                    face_vectors = block[j : j + per_image]
                    if n % (faces // 60) == 0:  # the person, a little off the reference
                        face_vectors = face_vectors.copy()
                        noise = rng.standard_normal(128).astype(np.float32)
                        face_vectors[0] = reference + noise / np.linalg.norm(noise) * SAME_PERSON_DISTANCE * 0.6
                        face_hits.add(f"civitai:{model}")
                    store.images.put(f"hub:civitai:img{n}", hub="civitai", model_remote_id=model, url=None, sha256=None,
                                     width=512, height=512, faces_total=len(face_vectors), nsfw=0.01, pdq=None,
                                     pdq_quality=None, problem=None,
                                     faces=[((0, 0, 10, 10), 1.0, v) for v in face_vectors])  # fmt: skip
    return reference, text_hits, face_hits, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--faces", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "find.db"
        reference, text_hits, face_hits, built = build(db, args.models, args.faces)
        person = RegisteredPerson("p1", NAME, (NAME,), (), (reference,))
        with Store.open(db) as store:
            print(f"store: {args.models:,} models, {store.images.count()[1]:,} faces, built in {built:.0f} s")
            t0 = time.perf_counter()
            vectors.index_for(store, FACES)
            build_s = time.perf_counter() - t0
            print(f"face index: built in {build_s:.0f} s")
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                found = find_person(store, person, top=1000)
                times.append(time.perf_counter() - t0)
            refs = {f.ref for f in found}
            text_found = {f.ref for f in found if any(s["kind"].startswith("registered-name") for s in f.signals)}
            face_found = {f.ref for f in found if any(s["kind"] == "registered-face" for s in f.signals)}
            print(f"person find: median {np.median(times) * 1000:.0f} ms over 5 runs (index built); "
                  f"{len(text_found & text_hits)}/{len(text_hits)} named models, {len(face_found & face_hits)}/{len(face_hits)} "
                  f"models with the face found; {len(refs - text_hits - face_hits)} others")  # fmt: skip
            t0 = time.perf_counter()
            vecs = np.concatenate([v for _ids, v in store.images.iter_face_vectors()])
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            close = int((np.linalg.norm(vecs - reference[None, :], axis=1) <= SAME_PERSON_DISTANCE).sum())
            scan_s = time.perf_counter() - t0
            print(f"baseline, every embedding compared in numpy: {scan_s * 1000:.0f} ms after loading them ({load_s:.1f} s); "
                  f"{close} within the distance (index search recall {len(face_found & face_hits)}/{len(face_hits)})")  # fmt: skip


if __name__ == "__main__":
    main()
