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


# --- person find over local files and image prompts; the face search's pages; the commands' options -------


def _kohya_file(path: Path, metadata: dict[str, str]) -> Path:
    save_file({"lora_unet_a.lora_down.weight": np.zeros((4, 8), np.float16)}, str(path), metadata=metadata)
    return path


def test_person_find_searches_indexed_files_and_image_prompts(store_target: str) -> None:
    """`person find` reaches local files by their name and training metadata (kohya folders in
    ss_tag_frequency, modelspec.title) and crawled images by their prompt and resources, through
    the same folded-text prefilter; a name only in a negative prompt is no finding."""
    import json

    from consentry.likeness import find_person

    files = {
        "/models/LORA.safetensors": {"ss_output_name": "last", "ss_tag_frequency": json.dumps({"10_mira castellan": {"woman": 40}})},
        "/models/v2.safetensors": {"modelspec.title": "Мира Кастеллан"},
        "/models/mira_castellan_xl.safetensors": {},
        "/models/old.safetensors": {"ss_output_name": "mira_castellan_v1"},  # indexed before migration 8
        "/models/ink.safetensors": {"ss_output_name": "ink wash", "ss_tag_frequency": json.dumps({"5_mirage": {"castle": 3}})},
    }  # fmt: skip
    images = [
        {"remote_id": "i1", "model_remote_id": "9", "meta": {"prompt": "photo of mira castellan, smiling", "negativePrompt": "blurry"}},
        {"remote_id": "i2", "model_remote_id": "10", "meta": {"prompt": "a woman", "negativePrompt": "mira castellan, lowres"}},
        {"remote_id": "i3", "model_remote_id": "11", "meta": {"prompt": "portrait", "resources": [{"name": "miraCastellan_v3"}]}},
        {"remote_id": "i4", "meta": {"prompt": "Мира Кастеллан at the beach"}},
        {"remote_id": "i5", "model_remote_id": "9", "meta": {"prompt": "mira castellan in the rain"}},
    ]  # fmt: skip
    with Store.open(store_target) as store:
        for path, metadata in files.items():
            store.upsert_file({"path": path, "format": "safetensors", "verdict": "clean", "metadata_json": metadata})
        store.db.execute("UPDATE files SET search_text = NULL WHERE path = ?", ("/models/old.safetensors",))
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": "9", "name": "Realistic Vision", "tags": []}])
        store.hubs.upsert("hub_images", "civitai", images)
        store.hubs.upsert("hub_images", "civitai", [{"remote_id": "i1", "model_remote_id": "9"}])  # listed again, no meta
        found = {f.ref: f for f in find_person(store, MIRA)}
    assert set(found) == {"/models/LORA.safetensors", "/models/v2.safetensors", "/models/mira_castellan_xl.safetensors",
                          "/models/old.safetensors", "civitai:9", "civitai:11", "hub:civitai:i4"}  # fmt: skip
    assert {s["field"] for s in found["/models/LORA.safetensors"].signals} == {"training folder"}
    assert {s["field"] for s in found["/models/v2.safetensors"].signals} == {"modelspec title"}
    assert {s["field"] for s in found["/models/old.safetensors"].signals} == {"output name"}
    prompt = found["civitai:9"]
    assert prompt.title == "Realistic Vision" and [s["field"] for s in prompt.signals] == ["image prompt"]
    assert prompt.signals[0]["images"] == ["hub:civitai:i1", "hub:civitai:i5"]
    assert [s["field"] for s in found["civitai:11"].signals] == ["image resources"]


def _faces_at(store, reference: np.ndarray, n: int, rng, distance: float, model=lambda i: str(i)) -> None:
    for i in range(n):
        offset = rng.standard_normal(128).astype(np.float32)
        face = reference + offset / np.linalg.norm(offset) * distance
        store.images.put(f"hub:civitai:img{i}", hub="civitai", model_remote_id=model(i), url=None, sha256=None, width=64,
                         height=64, faces_total=1, nsfw=None, pdq=None, pdq_quality=None, problem=None,
                         faces=[((0, 0, 9, 9), 1.0, face)])  # fmt: skip


def test_face_search_pages_past_the_first_shortlist_and_says_when_capped(tmp_path: Path, monkeypatch) -> None:
    """More faces within the threshold than the index's first page (200) are all found; past the
    cap the search says so instead of dropping them silently."""
    from consentry.images.faces import SAME_PERSON_DISTANCE
    from consentry.likeness import face_index, find_person

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(7)
    reference = rng.standard_normal(128).astype(np.float32)
    person = RegisteredPerson("p", "Someone", ("Someone",), (), (reference,))
    with Store.open(tmp_path / "s.db") as store:
        _faces_at(store, reference, 450, rng, SAME_PERSON_DISTANCE * 0.5)
        notes: list[str] = []
        found = find_person(store, person, top=1000, notes=notes)
        assert len(found) == 450 and notes == []  # 450 > face_index.FIRST_PAGE
        monkeypatch.setattr(face_index, "MAX_HITS", 100)
        capped: list[str] = []
        found = find_person(store, person, top=1000, notes=capped)
    assert face_index.FIRST_PAGE == 200
    assert len(found) == 100 and len(capped) == 1 and "only the nearest 100" in capped[0]


def test_person_find_top_keeps_the_strongest_and_says_how_many_there_were(tmp_path: Path, monkeypatch) -> None:
    import json

    from click.testing import CliRunner

    from consentry.cli import cli
    from consentry.likeness.text import STRENGTH

    monkeypatch.setenv("USER", "advocate1")
    registry, db = str(tmp_path / "registry.db"), str(tmp_path / "store.db")
    runner = CliRunner()
    added = runner.invoke(cli, ["person", "--registry", registry, "add", "Mira Castellan", "--consent-by", "Mira Castellan",
                                "--consent-scope", "search", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    with Store.open(db) as store:  # the name in the title and the trigger words; in the title; misspelt
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": "1", "name": "Mira Castellan", "tags": []},
                                                    {"remote_id": "2", "name": "Mira Castellan SDXL", "tags": []},
                                                    {"remote_id": "3", "name": "Mira Castelan", "tags": []}])  # fmt: skip
        store.hubs.upsert("hub_versions", "civitai", [{"remote_id": "v1", "model_remote_id": "1", "trained_words": ["mira castellan"]}])
    out = runner.invoke(cli, ["--db", db, "person", "--registry", registry, "find", "Mira Castellan", "--top", "2", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    both = 1 - (1 - STRENGTH["registered-name"]) ** 2  # the name in two fields, combined by noisy-OR
    assert [(f["ref"], f["score"]) for f in result["found"]] == [("civitai:1", pytest.approx(both)),
                                                                ("civitai:2", STRENGTH["registered-name"])]  # fmt: skip
    assert result["notes"] == ["3 findings, the 2 strongest shown (--top)"]
    text = runner.invoke(cli, ["--db", db, "person", "--registry", registry, "find", "Mira Castellan", "--top", "1"])
    assert text.exit_code == 0 and "1 finding(s)" in text.output and "3 findings, the 1 strongest shown" in text.output
    assert "civitai:3" not in text.output and "civitai:2" not in text.output


def test_likeness_registry_is_named_and_a_missing_one_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """--registry names the registry; one that is missing or not a registry is one line and exit 2;
    --no-registry reads none (no audit entry) and matches nobody; without either, the default
    place is used and its absence is said."""
    import json

    from click.testing import CliRunner

    from consentry.cli import cli

    monkeypatch.setenv("USER", "advocate1")
    registry, db = str(tmp_path / "registry.db"), str(tmp_path / "store.db")
    runner = CliRunner()
    path = _kohya_file(tmp_path / "LORA.safetensors", {"ss_output_name": "mira_castellan_v2"})
    missing = runner.invoke(cli, ["--db", db, "likeness", str(path), "--registry", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1 and "nope.db" in missing.output
    assert "Traceback" not in missing.output and not (tmp_path / "nope.db").exists()
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    junk = runner.invoke(cli, ["--db", db, "likeness", str(path), "--registry", str(tmp_path / "junk.db")])
    assert junk.exit_code == 2 and junk.output.count("\n") == 1 and "cannot be read" in junk.output
    monkeypatch.setenv("CONSENTRY_REGISTRY", str(tmp_path / "nope.db"))  # asked for through the environment: the same
    assert runner.invoke(cli, ["--db", db, "likeness", str(path)]).exit_code == 2
    monkeypatch.delenv("CONSENTRY_REGISTRY")
    default = runner.invoke(cli, ["--db", db, "likeness", str(path), "--json"])
    assert default.exit_code == 0 and "no registry at" in default.output  # stderr, mixed in by CliRunner

    added = runner.invoke(cli, ["person", "--registry", registry, "add", "Mira Castellan", "--consent-by", "Mira Castellan",
                                "--consent-scope", "search", "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    def entries() -> int:
        return len(runner.invoke(cli, ["registry", "--registry", registry, "audit", "--json"]).output.splitlines())

    before = entries()
    off = json.loads(runner.invoke(cli, ["--db", db, "likeness", str(path), "--no-registry", "--json"]).output)
    assert off["people"] == [] and "registry: not used (--no-registry)" in off["notes"] and entries() == before
    on = json.loads(runner.invoke(cli, ["--db", db, "likeness", str(path), "--registry", registry, "--json"]).output)
    assert on["verdict"] == f"{REGISTERED}: Mira Castellan" and entries() == before + 1
    assert any(n.startswith("registry: 1 registered people from ") for n in on["notes"])
    both = runner.invoke(cli, ["--db", db, "likeness", str(path), "--registry", registry, "--no-registry"])
    assert both.exit_code == 2 and "not both" in both.output


def test_likeness_all_includes_indexed_local_files(tmp_path: Path, monkeypatch) -> None:
    import json

    from click.testing import CliRunner

    from consentry.cli import cli
    from consentry.likeness.assess import POSSIBLE, POSSIBLE_MIN, REAL_MIN
    from consentry.likeness.text import STRENGTH

    monkeypatch.setenv("USER", "advocate1")
    db = str(tmp_path / "store.db")
    models = tmp_path / "models"
    models.mkdir()
    renamed = _kohya_file(models / "LORA.safetensors", {"ss_tag_frequency": '{"10_orla brennan": {"woman": 4}}'})
    plain = _kohya_file(models / "ink_wash.safetensors", {"ss_output_name": "ink wash style"})
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db, "index", str(models)]).exit_code == 0
    with Store.open(db) as store:
        store.hubs.upsert("hub_models", "civitai", [{"remote_id": "5", "name": "Neon Noir Style", "tags": ["style"]}])
    out = runner.invoke(cli, ["--db", db, "likeness", "--all", "--no-registry", "--no-previews", "--json"])
    assert out.exit_code == 0, out.output
    reports = {r["ref"]: r for r in map(json.loads, out.output.splitlines())}
    assert set(reports) == {"civitai:5", str(renamed), str(plain)}
    # "Orla Brennan" only in the kohya folder: a person's name alone, strength 0.35, between "possible" and "likely"
    assert STRENGTH["person-name"] == reports[str(renamed)]["score"] and POSSIBLE_MIN <= 0.35 < REAL_MIN
    assert reports[str(renamed)]["verdict"] == POSSIBLE
    assert any(s["field"] == "training folder" for s in reports[str(renamed)]["signals"])
    assert reports[str(plain)]["verdict"] == NO_SIGN and reports["civitai:5"]["verdict"] == NO_SIGN


def test_a_preview_that_is_a_registered_photo_turned_or_mirrored_is_a_signal(tmp_path: Path, monkeypatch) -> None:
    """A registered person's PDQ hashes (from intake photos) are matched against every preview's
    8 dihedral hashes: a mirrored copy of the photo is found, though its upright hash is far."""
    from consentry.images import pdq
    from consentry.images.eval_set import subject_photos
    from consentry.likeness import find_person
    from consentry.likeness.assess import PDQ_MATCH, PDQ_MATCH_DISTANCE

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photo = subject_photos()["A"]
    digest, quality = pdq.pdq_hash(photo)
    assert quality >= 50
    mirrored = _write_jpeg(np.ascontiguousarray(photo[:, ::-1]), tmp_path / "mirrored.jpeg")
    other = _write_jpeg(subject_photos()["B"], tmp_path / "other.jpeg")
    upright = pdq.hamming(pdq.pdq_hash(np.ascontiguousarray(photo[:, ::-1]))[0], digest)
    assert upright > PDQ_MATCH_DISTANCE  # the upright hashes alone would miss it
    person = RegisteredPerson("p-a", "Subject A", ("Subject A",), (), (), (digest,))  # no face reference: PDQ alone
    path = _kohya_file(tmp_path / "model.safetensors", {})
    with Store.open(tmp_path / "s.db") as store:
        report = assess_file(store, path, images=[other, mirrored], people=[person])
        found = find_person(store, person)
    assert report.thresholds["pdq_distance"] == PDQ_MATCH_DISTANCE == pdq.MATCH_THRESHOLD
    [result] = report.people
    [signal] = result.signals
    assert signal["kind"] == "registered-photo" and signal["images"] == [str(mirrored)]
    assert signal["distance"] <= PDQ_MATCH_DISTANCE and "mirrored left to right" in signal["detail"]
    assert result.score == PDQ_MATCH and report.verdict == f"{REGISTERED}: Subject A"
    assert [(f.ref, f.signals[0]["kind"]) for f in found] == [(str(mirrored), "registered-photo")]


def test_previews_past_the_limit_are_said_to_be_left_out(tmp_path: Path) -> None:
    from consentry.likeness.previews import MAX_PREVIEWS

    images = [_write_jpeg(np.full((48, 48, 3), 10 * i, np.uint8), tmp_path / f"p{i}.jpeg") for i in range(MAX_PREVIEWS + 3)]
    path = _kohya_file(tmp_path / "model.safetensors", {})
    with Store.open(tmp_path / "s.db") as store:
        report = assess_file(store, path, images=images)
    assert MAX_PREVIEWS == 20 and report.faces.previews == 20
    assert f"{MAX_PREVIEWS + 3} preview images: the first 20 analysed, 3 not" in report.notes


def test_cli_no_previews_fetches_nothing(hub_with_previews, tmp_path: Path, monkeypatch) -> None:
    import json

    from click.testing import CliRunner

    from consentry.cli import cli
    from consentry.hubs.civitai import CivitaiConnector
    from consentry.hubs.fakes.civitai import fake_civitai

    world, person_model, _style, _photos, _previews = hub_with_previews
    monkeypatch.setenv("USER", "advocate1")
    db = str(tmp_path / "s.db")
    with fake_civitai(world) as hub:
        with Store.open(db) as store:
            CivitaiConnector(hub.url).crawl(store, {})
        out = CliRunner().invoke(cli, ["--db", db, "likeness", f"civitai:{person_model}", "--no-previews", "--no-registry",
                                       "--image-base-url", hub.url, "--json"])  # fmt: skip
        fetched = [r for r in hub.requests if r.path.endswith(".jpeg")]
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["faces"] is None and fetched == []
    assert any("not analysed (previews off)" in n for n in report["notes"])
    with Store.open(db) as store:
        assert store.images.count() == (0, 0)
