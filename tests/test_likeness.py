"""Likeness text and in-file signals, the combined verdict, and the evaluation set's figures.

Expected results follow from how each case is written (its truth label), never from the scorer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from consentry.likeness import Assessor, RegisteredPerson, assess_file
from consentry.likeness.assess import LIKELY, NO_SIGN, REGISTERED
from consentry.likeness.evaluation import evaluate_text
from consentry.likeness.sources import Subject
from consentry.likeness.text import FUZZY_MIN, text_signals, KnownPerson
from consentry.store import Store

MIRA = RegisteredPerson("p-mira", "Mira Castellan", ("Mira Castellan", "Мира Кастеллан"), ("@mira.cas",))
OTHER = RegisteredPerson("p-other", "Ilse Verhoeven", ("Ilse Verhoeven",))


def verdict(fields: list[tuple[str, str]], people=(MIRA, OTHER)):
    return Assessor(people).assess(Subject(ref="x", title=fields[0][1], fields=fields))


@pytest.mark.parametrize("fields, how", [
    ([("title", "Mira Castellan - realistic")], "as a phrase"),
    ([("title", "mira_castellan_v2")], "as a phrase"),
    ([("title", "LORA"), ("training folder", "miracastellan")], "without separators"),
    ([("title", "Мира Кастеллан SDXL")], "as a phrase"),
    ([("title", "Mira Castelan realistic")], "fuzzy"),
    ([("title", "Realistic girl"), ("description", "trained on photos from @mira.cas")], "handle"),
])  # fmt: skip
def test_registered_person_is_named_with_the_evidence(fields, how) -> None:
    report = verdict(fields)
    assert report.verdict == f"{REGISTERED}: Mira Castellan" and report.people[0].person_id == "p-mira"
    assert any(how in s["detail"] for s in report.people[0].signals), report.people[0].signals
    assert all(p.person_id != "p-other" for p in report.people)


def test_signals_say_where_they_were_found_and_inside_file_ones_are_marked() -> None:
    signals = text_signals([("title", "LORA"), ("output name", "mira_castellan_v1")],
                           [KnownPerson("p-mira", ("Mira Castellan",))])  # fmt: skip
    hit = next(s for s in signals if s.person_id == "p-mira")
    assert hit.field == "output name" and hit.inside_file and hit.text == "mira_castellan_v1"


def test_short_or_partial_names_do_not_match() -> None:
    assert not verdict([("title", "Mira style")]).people
    assert not verdict([("title", "Castellan Castle Interiors")]).people
    assert FUZZY_MIN >= 85


def test_generic_cues_without_a_registry_and_fiction_weakens_them() -> None:
    assert verdict([("title", "Orla Brennan - realistic")], people=()).verdict == LIKELY
    lara = verdict([("title", "Lara Croft"), ("tags", "character, game")], people=())
    assert lara.verdict == NO_SIGN and "fictional character" in " ".join(s["detail"] for s in lara.signals)
    assert verdict([("title", "Neon Noir Style"), ("tags", "style")], people=()).verdict == NO_SIGN


def test_a_file_renamed_lora_is_still_recognised_by_its_training_metadata(tmp_path: Path) -> None:
    path = tmp_path / "LORA.safetensors"
    tensors = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 320), np.float16),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": np.zeros((320, 4), np.float16)}
    save_file(tensors, str(path), metadata={"ss_output_name": "last", "ss_tag_frequency": '{"10_mira castellan": {"mira castellan": 40}}',
                                            "ss_dataset_dirs": '{"10_mira castellan": {"n_repeats": 10, "img_count": 40}}'})  # fmt: skip
    with Store.open(tmp_path / "s.db") as store:
        report = assess_file(store, path, people=[MIRA])
    assert report.verdict == f"{REGISTERED}: Mira Castellan"
    assert any(s["field"] == "training folder" and s["inside_file"] for s in report.people[0].signals)
    assert "no preview images" in report.notes[0]


def test_the_evaluation_set_figures() -> None:
    """The text/in-file evaluation (bench/likeness_eval.py prints the whole table): the verdict
    names the right registered person every time, and says "real person" with high precision."""
    result, _reports = evaluate_text(seed=0, per_variant=12)
    assert result.cases > 150
    assert result.verdict_person.precision == 1.0 and result.verdict_person.recall == 1.0
    assert result.verdict_real.recall >= 0.95 and result.verdict_real.precision >= 0.95
    hidden = result.by_variant["registered: title hides it, folder names her"]
    assert hidden[0] == hidden[1]  # the name only inside the file is enough


# --- previews on a hub, the registry, person find: end to end ------------------------------------


def _write_jpeg(rgb, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def hub_with_previews(tmp_path_factory):
    """A small fake Civitai whose image CDN serves real photos: one LoRA titled "LORA" whose
    previews all show subject A (augmented), one style LoRA whose previews show no face."""
    from consentry.hubs.fakes.civitai import civitai_world
    from consentry.images.eval_set import augment, subject_photos

    root = tmp_path_factory.mktemp("previews")
    world = civitai_world(seed=4, n_models=8)
    photos = subject_photos()
    listed = [m for m in world.listed() if m["type"] == "LORA"]
    person_model, style_model = listed[0], listed[1]
    person_model.update(name="LORA", tags=["woman"], description="<p>new upload</p>")
    for version in person_model["modelVersions"]:
        version["trainedWords"] = ["ohwx"]
    style_model.update(name="Ink Wash Style", tags=["style"])
    looks = ["crop", "jpeg q30", "brighter", "mirror"]
    faces_in = {}
    for model, make in ((person_model, lambda i: augment(photos["A"], looks[i % len(looks)])),
                        (style_model, lambda i: augment(np.full((256, 256, 3), 40 * (i + 1), np.uint8), "original"))):
        images = [img for v in model["modelVersions"] for img in v["images"]][:4]
        for i, image in enumerate(images):
            world.image_paths[image["id"]] = _write_jpeg(make(i), root / f"{image['id']}.jpeg")
            image["poi"] = False
        faces_in[model["id"]] = len(images)
    world.revision += 1
    return world, person_model["id"], style_model["id"], photos, faces_in


def test_previews_faces_and_the_registry_name_the_person(hub_with_previews, tmp_path: Path) -> None:
    from consentry.hubs.civitai import CivitaiConnector
    from consentry.hubs.fakes.civitai import fake_civitai
    from consentry.likeness import assess_hub_model, find_person, registered_people
    from consentry.registry import Registry

    world, person_id_model, style_id, photos, previews = hub_with_previews
    shown = previews[person_id_model]  # previews of subject A
    assert shown >= 3
    reference = _write_jpeg(photos["A"], tmp_path / "reference.jpg")  # the intake photo (never stored)
    with Registry.open(tmp_path / "registry.db") as registry:
        record = registry.add_person("Subject A", photos=[reference], consent_by="subject A", consent_scope="test",
                                     entered_by="tester")  # fmt: skip
        registry.add_person("Subject B", embeddings=[], consent_by="subject B", consent_scope="test", entered_by="tester")
        people = registered_people(registry, actor="tester", purpose="test")
    with fake_civitai(world) as hub, Store.open(tmp_path / "s.db") as store:
        CivitaiConnector(hub.url).crawl(store, {})
        down = assess_hub_model(store, "civitai", str(person_id_model), people=people, image_base="http://127.0.0.1:9")
        assert down.faces.previews == shown and len(down.faces.unreadable) == shown  # the image host is down
        report = assess_hub_model(store, "civitai", str(person_id_model), people=people, image_base=hub.url)  # tried again
        style = assess_hub_model(store, "civitai", str(style_id), people=people, image_base=hub.url)
        fetched = sum(1 for r in hub.requests if r.path.endswith(".jpeg"))
        again = assess_hub_model(store, "civitai", str(person_id_model), people=people, image_base=hub.url)
        refetched = sum(1 for r in hub.requests if r.path.endswith(".jpeg")) - fetched
        found = find_person(store, people[0] if people[0].person_id == record.id else people[1])
    assert report.verdict == f"{REGISTERED}: Subject A", report.as_dict()
    face = next(s for s in report.people[0].signals if s["kind"] == "registered-face")
    assert len(face["images"]) == shown and face["distance"] <= face["threshold"]
    assert any(s["kind"] == "dominant-identity" for s in report.signals)
    assert report.faces.with_faces == shown and report.faces.dominant_images == shown and report.faces.unreadable == []
    levels = {f"hub:civitai:{i['id']}": i["nsfwLevel"] for v in world.models[person_id_model]["modelVersions"] for i in v["images"]}
    assert report.faces.nsfw and all(n["hub_nsfw_level"] == levels[n["ref"]] for n in report.faces.nsfw)  # beside our score
    assert style.verdict == NO_SIGN and style.faces.with_faces == 0 and not style.people
    assert refetched == 0 and again.verdict == report.verdict  # analysed once, read from the store after
    assert found and found[0].ref == f"civitai:{person_id_model}" and found[0].score >= 0.9


def test_cli_likeness_and_person_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands over the library: a person registered by the CLI is named in a renamed file,
    found by `person find` among crawled models, and the reads are in the audit log."""
    import json

    from click.testing import CliRunner

    from consentry.cli import cli

    monkeypatch.setenv("USER", "advocate1")
    registry, db = str(tmp_path / "registry.db"), str(tmp_path / "store.db")
    runner = CliRunner()
    added = runner.invoke(cli, ["person", "--registry", registry, "add", "Mira Castellan", "--alias", "Мира Кастеллан",
                                "--consent-by", "Mira Castellan", "--consent-scope", "search and takedown", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    path = tmp_path / "LORA.safetensors"
    save_file({"lora_unet_a.lora_down.weight": np.zeros((4, 8), np.float16)}, str(path),
              metadata={"ss_output_name": "mira_castellan_v2"})  # fmt: skip
    monkeypatch.setenv("CONSENTRY_REGISTRY", registry)
    out = runner.invoke(cli, ["--db", db, "likeness", str(path), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["verdict"] == f"{REGISTERED}: Mira Castellan" and report["people"][0]["signals"][0]["field"] == "output name"
    with Store.open(db) as store:  # a crawled model whose title is the name in Cyrillic
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": 7, "name": "Мира Кастеллан SDXL", "tags": ["woman"]},
                                                    {"remote_id": 8, "name": "Ink Wash Style", "tags": ["style"]}])  # fmt: skip
    found = runner.invoke(cli, ["--db", db, "person", "find", "Mira Castellan", "--json"])
    assert found.exit_code == 0, found.output
    refs = [f["ref"] for f in json.loads(found.output)["found"]]
    assert refs == ["civitai:7"]
    audit = runner.invoke(cli, ["registry", "audit", "--json"])
    assert "Mira" not in audit.output and "likeness" in audit.output and "person find" in audit.output
    assert runner.invoke(cli, ["registry", "audit", "--verify"]).exit_code == 0


def test_face_search_through_the_index_on_both_stores(store_target: str, tmp_path: Path, monkeypatch) -> None:
    """Stored faces are found through the face index by distance, on SQLite and PostgreSQL."""
    from consentry.images.faces import SAME_PERSON_DISTANCE
    from consentry.likeness import find_person

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(128).astype(np.float32)
    with Store.open(store_target) as store:
        for i in range(60):
            faces = [((0, 0, 9, 9), 1.0, rng.standard_normal(128).astype(np.float32) * 3)]
            if i in (5, 17):  # the person, 0.6 x the threshold away from the reference
                offset = rng.standard_normal(128).astype(np.float32)
                faces.append(((10, 10, 20, 20), 0.9, reference + offset / np.linalg.norm(offset) * SAME_PERSON_DISTANCE * 0.6))
            store.images.put(f"hub:civitai:img{i}", hub="civitai", model_remote_id=str(i // 2), url=f"https://i/{i}.jpeg",
                             sha256=None, width=64, height=64, faces_total=len(faces), nsfw=0.0, pdq=None,
                             pdq_quality=None, problem=None, faces=faces)  # fmt: skip
        assert store.images.count() == (60, 62)
        found = find_person(store, RegisteredPerson("p", "Someone", ("Someone",), (), (reference,)))
    assert [f.ref for f in found] == ["civitai:2", "civitai:8"]
    distance = found[0].signals[0]["distance"]
    assert abs(distance - SAME_PERSON_DISTANCE * 0.6) < 1e-3  # re-measured from the stored embedding, not the index's f16


def test_person_find_reaches_names_in_other_scripts_with_accents_or_short_words(store_target: str) -> None:
    """The prefilter searches the records' folded text, so what the matcher would name is found;
    rows stored before the search text existed are folded on first search."""
    from consentry.likeness import find_person

    katya = RegisteredPerson("p1", "Katya Marchetti", ("Katya Marchetti",))
    li_na = RegisteredPerson("p2", "Li Na", ("Li Na",))
    titles = {"1": "Катя Марчетти SDXL", "2": "Kátya Márchetti", "3": "KATYA MARCHETTI v2", "4": "Li Na (pony)",
              "5": "Landscape style", "6": "Marching band"}  # fmt: skip
    with Store.open(store_target) as store:
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": rid, "name": title, "tags": []} for rid, title in titles.items()])
        store.hubs.upsert("hub_versions", "civitai", [{"remote_id": "v7", "model_remote_id": "7", "trained_words": ["katyamarchetti"]}])
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": "7", "name": "LORA", "tags": []}])
        store.db.execute("UPDATE hub_models SET search_text = NULL WHERE remote_id = '2'")  # as crawled before migration 7
        found = {f.ref for f in find_person(store, katya)}
        assert found == {"civitai:1", "civitai:2", "civitai:3", "civitai:7"}
        assert {f.ref for f in find_person(store, li_na)} == {"civitai:4"}
