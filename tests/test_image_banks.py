"""Image banks: the ``pdq`` signal, `bank add BANK IMAGE` and `scan IMAGE`, like StopNCII.

The photos are scikit-image's; the copies are made with Pillow (mirror, rotation, JPEG at
quality 30); which copy is which is known from how it was made, never from the matcher.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("pdqhash")
pytest.importorskip("skimage")

from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from consentry.banks.entries import add_model_file, normalise_signals  # noqa: E402
from consentry.banks.matching import STATUS_MATCH, STATUS_NO_MATCH, STATUS_QUARANTINE, match_identity, scan_paths  # noqa: E402
from consentry.banks.signals import signal_registry  # noqa: E402
from consentry.cli import cli  # noqa: E402
from consentry.errors import HashFormatError  # noqa: E402
from consentry.identity.identify import identify_image  # noqa: E402
from consentry.images.pdq import pdq_hash  # noqa: E402
from consentry.store import Store  # noqa: E402

ASTRONAUT_PDQ = "2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724"  # Meta's reference hasher (tests/test_images.py)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("photos")
    a = Image.fromarray(data.astronaut())
    files = {
        "original": ("original.png", a, {}),
        "mirrored": ("mirrored.jpg", a.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {"quality": 90}),
        "rotated": ("rotated.webp", a.rotate(90, expand=True), {"quality": 90}),  # Pillow turns counter-clockwise
        "recompressed": ("recompressed.jpg", a, {"quality": 30}),
        "unrelated": ("coffee.png", Image.fromarray(data.coffee()), {}),
        "flat": ("flat.png", Image.new("RGB", (64, 64), (128, 128, 128)), {}),
        "other": ("rocket.jpg", Image.fromarray(data.rocket()), {}),
    }
    paths = {}
    for key, (name, image, params) in files.items():
        image.save(out / name, **params)
        paths[key] = out / name
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    (out / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99))
                                   + chunk(b"IEND", b""))  # fmt: skip
    paths["bomb"] = out / "bomb.png"
    return paths


@pytest.fixture
def store(store_target: str):
    with Store.open(store_target) as s:
        yield s


def run(db: str, *args: str):
    return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)


def test_pdq_values_are_typed_like_a_hash_list_holds_them():
    assert normalise_signals({"PDQ": "PDQ:" + ASTRONAUT_PDQ.upper()}) == {"pdq": ASTRONAUT_PDQ}
    assert "pdq" in signal_registry().names()
    with pytest.raises(HashFormatError, match="pdq: 63 hex digits, expected 64"):
        normalise_signals({"pdq": ASTRONAUT_PDQ[:-1]})
    with pytest.raises(HashFormatError, match="not a hexadecimal hash"):
        normalise_signals({"pdq": "z" * 64})
    with pytest.raises(HashFormatError, match="all-zero hash"):
        normalise_signals({"pdq": "0" * 64})


def test_an_image_is_identified_by_its_bytes_and_its_pdq(photos):
    identity = identify_image(photos["original"])
    assert identity.format == "png" and str(identity.verdict) == "clean" and identity.hashes.sha256
    assert identity.extra["pdq"] == ASTRONAUT_PDQ and identity.extra["pdq_quality"] == 100
    assert len(identity.extra["pdq_dihedral"]) == 8 and identity.as_json()["pdq"] == ASTRONAUT_PDQ
    assert identify_image(photos["bomb"]).problem.startswith("decompression bomb: 30000x30000")
    model = photos["original"].parent / "model.safetensors"
    model.write_bytes(struct.pack("<Q", 2) + b"{}")
    assert identify_image(model) is None  # not an image: the model reader's business


def test_flipped_rotated_and_recompressed_copies_match_and_an_unrelated_image_does_not(photos, store: Store):
    store.banks.create("reported-images", labels=["ncii"])
    entry_id, entry = add_model_file(store, "reported-images", photos["original"], actor="case-7")
    assert entry.signals["pdq"] == ASTRONAUT_PDQ and entry.provenance["pdq"] == "stored"
    assert entry.provenance["added_from"] == "image file"
    expected = {"mirrored": "mirrored left to right", "rotated": "rotated 90 degrees counter-clockwise",
                "recompressed": "same orientation"}  # fmt: skip
    for key, how in expected.items():
        identity = identify_image(photos[key])
        result = match_identity(store, identity)
        assert result.status == STATUS_MATCH, key
        match = result.matches[0]
        assert match.signal_type == "pdq" and match.value == how and match.entry.id == entry_id
        assert match.measure == "distance" and match.threshold == 31
        # the distance is the Hamming distance of one of the copy's 8 dihedral hashes to the banked one
        from consentry.images.pdq import hamming

        assert match.score == min(hamming(h, ASTRONAUT_PDQ) for h in identity.extra["pdq_dihedral"]) <= 31
        assert ASTRONAUT_PDQ in match.reason and match.as_dict()["measure"] == "distance"
    assert match_identity(store, identify_image(photos["unrelated"])).status == STATUS_NO_MATCH
    assert match_identity(store, identify_image(photos["other"])).status == STATUS_NO_MATCH
    exact = match_identity(store, identify_image(photos["original"]))
    assert exact.status == STATUS_MATCH and exact.matches[0].signal_type == "sha256"  # the stronger evidence


def test_the_banks_threshold_decides(photos, store: Store):
    store.banks.create("strict", thresholds={"pdq": 4})
    add_model_file(store, "strict", photos["original"])
    recompressed = match_identity(store, identify_image(photos["recompressed"]))
    assert recompressed.status == STATUS_MATCH and recompressed.matches[0].score <= 4 and recompressed.matches[0].threshold == 4
    mirrored = identify_image(photos["mirrored"])
    from consentry.images.pdq import hamming

    assert min(hamming(h, ASTRONAUT_PDQ) for h in mirrored.extra["pdq_dihedral"]) > 4
    assert match_identity(store, mirrored).status == STATUS_NO_MATCH
    store.banks.update("strict", enabled=False)
    assert match_identity(store, identify_image(photos["recompressed"])).status == STATUS_NO_MATCH


def test_a_pdq_hash_list_imports_and_matches_the_image_it_came_from(photos, store: Store, tmp_path: Path):
    from consentry.banks.importing import import_rows

    csv = tmp_path / "hashes.csv"
    csv.write_text(f"name,PDQ hash\nreported,{ASTRONAUT_PDQ.upper()}\n", encoding="utf-8")
    report = import_rows(store, "stopncii", csv, create=True)
    assert report.added == 1, report
    result = match_identity(store, identify_image(photos["mirrored"]))
    assert result.status == STATUS_MATCH and result.matches[0].entry.name == "reported"
    assert result.matches[0].bank == "stopncii"


def test_bank_changes_reach_a_running_matcher(photos, store: Store):
    store.banks.create("first")
    assert match_identity(store, identify_image(photos["mirrored"])).status == STATUS_NO_MATCH  # builds the in-memory copy
    add_model_file(store, "first", photos["original"])
    assert match_identity(store, identify_image(photos["mirrored"])).status == STATUS_MATCH
    store.banks.delete("first")
    assert match_identity(store, identify_image(photos["mirrored"])).status == STATUS_NO_MATCH


def test_a_dismissal_into_a_negative_bank_vouches_for_the_image_and_its_copies(photos, store: Store, tmp_path: Path):
    from consentry.banks import review

    store.banks.create("reported-images")
    store.banks.create("known-good", kind="negative")
    add_model_file(store, "reported-images", photos["original"])
    coffee_id, _ = add_model_file(store, "reported-images", photos["unrelated"])
    [flagged] = list(scan_paths(store, [photos["mirrored"]]))
    assert flagged.status == STATUS_MATCH and flagged.matches[0].signal_type == "pdq"
    review.dismiss(store, flagged.matches[0].review_item, actor="reviewer-1", reason="a different photo", negative_bank="known-good")
    [vouched] = list(store.banks.entries(store.banks.get("known-good")))
    assert vouched.signals["pdq"] == identify_image(photos["mirrored"]).extra["pdq"]  # its PDQ, not only its bytes' hashes
    assert vouched.signals["sha256"] == identify_image(photos["mirrored"]).hashes.sha256
    # a copy of the dismissed image (other bytes: no file hash agrees) is known-good through its PDQ hash
    copy = tmp_path / "mirrored-again.jpg"
    Image.open(photos["mirrored"]).save(copy, quality=40)
    [again] = list(scan_paths(store, [copy]))
    assert again.status == STATUS_NO_MATCH and [m.signal_type for m in again.negative] == ["pdq"]
    assert again.matches[0].suppressed_by == "known-good"
    # other banked images still match
    coffee_copy = tmp_path / "coffee-copy.jpg"
    Image.open(photos["unrelated"]).save(coffee_copy, quality=40)
    [other] = list(scan_paths(store, [coffee_copy]))
    assert other.status == STATUS_MATCH and other.matches[0].entry.id == coffee_id and other.negative == []


def test_low_quality_and_broken_images(photos, store: Store):
    store.banks.create("b")
    _id, entry = add_model_file(store, "b", photos["flat"])
    assert "pdq" not in entry.signals and entry.provenance["pdq"].startswith("not stored: image quality 0 below 50")
    add_model_file(store, "b", photos["original"])
    flat = match_identity(store, identify_image(photos["flat"]))
    assert flat.status == STATUS_MATCH and flat.matches[0].signal_type == "sha256"  # the same file, by its bytes
    copy = photos["flat"].parent / "flat_copy.bmp"
    Image.open(photos["flat"]).save(copy)
    result = match_identity(store, identify_image(copy))
    assert result.status == STATUS_NO_MATCH and any("quality 0 below 50" in n for n in result.notes)
    bomb = match_identity(store, identify_image(photos["bomb"]))
    assert bomb.status == STATUS_QUARANTINE and any("decompression bomb" in n for n in bomb.notes)
    _id, entry = add_model_file(store, "b", photos["bomb"])  # banked by its bytes, like a malformed model file
    assert "sha256" in entry.signals and "pdq" not in entry.signals and "decompression bomb" in entry.provenance["pdq"]


def test_scan_and_bank_add_on_the_command_line(photos, tmp_path: Path):
    db = str(tmp_path / "store.db")
    assert run(db, "bank", "create", "reported").exit_code == 0
    added = run(db, "bank", "add", "reported", str(photos["original"]))
    assert added.exit_code == 0 and "added (" in added.output and "pdq)" in added.output and "pdq stored" in added.output
    scan = run(db, "scan", str(photos["mirrored"]), str(photos["unrelated"]), str(photos["bomb"]))
    assert scan.exit_code == 1  # something matched
    lines = scan.output.splitlines()
    assert lines[0].startswith("match") and lines[0].endswith("mirrored.jpg")
    assert "via pdq mirrored left to right (distance" in lines[1] and "<= threshold 31)" in lines[1]
    assert f"vs banked {ASTRONAUT_PDQ}" in lines[2]
    assert any(line.startswith("no match") and line.endswith("coffee.png") for line in lines)
    assert any(line.startswith("quarantine") and line.endswith("bomb.png") for line in lines)
    as_json = run(db, "scan", "--json", "--no-queue", str(photos["rotated"]))
    row = json.loads(as_json.output)
    assert row["status"] == "match" and row["format"] == "webp" and row["image"] == {"width": 512, "height": 512}
    assert row["hashes"]["pdq"] == pdq_hash(np.asarray(Image.open(photos["rotated"]).convert("RGB")))[0]
    match = row["matches"][0]
    assert match["signal"] == "pdq" and match["measure"] == "distance" and match["threshold"] == 31 and match["score"] <= 31
    folder = run(db, "scan", "--no-queue", str(photos["original"].parent))  # folders: images are found by their bytes
    assert "mirrored.jpg" in folder.output and "rotated.webp" in folder.output


def test_exported_image_banks_import_elsewhere(photos, tmp_path: Path):
    db, other = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    run(db, "bank", "create", "reported")
    run(db, "bank", "add", "reported", str(photos["original"]))
    exported = tmp_path / "reported.jsonl"
    assert run(db, "bank", "export", "reported", "-o", str(exported)).exit_code == 0
    assert json.loads(exported.read_text().splitlines()[1])["signals"]["pdq"] == ASTRONAUT_PDQ
    assert run(other, "bank", "import", "reported", str(exported), "--create").exit_code == 0
    with Store.open(other) as store:
        assert match_identity(store, identify_image(photos["recompressed"])).status == STATUS_MATCH
    with Store.open(other) as store:
        results = list(scan_paths(store, [photos["rotated"]], queue=False))
        assert results[0].status == STATUS_MATCH and results[0].identity.format == "webp"


def test_the_vectorised_scan_finds_exactly_what_a_plain_hamming_loop_finds():
    from consentry.banks.pdq_matching import _pack, nearest

    rng = np.random.default_rng(11)
    banked = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(3000)]
    queries = [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(3)]
    for i, q in enumerate(queries):  # plant near copies: q with 5, 31 and 32 bits flipped
        for flips in (5, 31, 32):
            value = int(q, 16)
            for bit in rng.choice(256, flips, replace=False):
                value ^= 1 << int(bit)
            banked[100 * i + flips] = f"{value:064x}"
    rows, dists, which = nearest(np.ascontiguousarray(_pack(banked).T), _pack(queries), 31)
    got = {r: (d, k) for r, d, k in zip(rows.tolist(), dists.tolist(), which.tolist())}
    expected = {}
    for r, b in enumerate(banked):
        d, k = min(((int(b, 16) ^ int(q, 16)).bit_count(), k) for k, q in enumerate(queries))
        if d <= 31:
            expected[r] = (d, k)
    assert got == expected and sorted(d for d, _k in got.values()) == [5, 5, 5, 31, 31, 31]
