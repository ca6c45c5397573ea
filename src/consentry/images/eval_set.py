"""The offline evaluation set for the image signals, built from photos that ship in packages.

Nothing is downloaded: every image comes from scikit-image's bundled data or matplotlib's
``sample_data``. Three photographs of real people are the **subjects**, known here only as
``"A"``, ``"B"`` and ``"C"`` -- never by a name:

* ``A``: ``skimage.data.astronaut()`` (512x512 colour portrait);
* ``B``: matplotlib's ``sample_data/grace_hopper.jpg`` (512x600 colour portrait; the file name
  is the package's, kept only to locate it);
* ``C``: ``skimage.data.camera()`` (512x512 greyscale, a person behind a camera, face turned
  and small: dlib's HOG detector does not find it, which the evaluation reports as a miss).

Each subject photo comes as itself and with the augmentations of :data:`AUGMENTATIONS` (crop,
half scale, JPEG q30, brighter, darker, mirror, 10 degree rotation, blur, greyscale), all with
Pillow, deterministic. ``lfw_subset()`` adds 100 grey 25x25 face crops (identities unknown,
``identity`` None but ``has_face`` True) and 100 non-face crops; 25 more non-face images (a
cat, coffee, a rocket, textures, microscopy, text, logos) come from the same packages.

:func:`evaluate_faces` runs the detector and the embedding over the set and returns the figures
``bench/likeness_eval.py`` and the README report: detection precision and recall (an image is a
detection if at least one face is found), identity distances (same subject vs different
subjects), the threshold's pairwise and registry-style precision and recall, and the share of
lfw_subset face pairs under the threshold. The set is tiny -- three identities, one photo each --
and says so in :attr:`FaceEvaluation.caveats`.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    import numpy as np

SUBJECTS = ("A", "B", "C")
AUGMENTATIONS = ("original", "crop", "half scale", "jpeg q30", "brighter", "darker", "mirror", "rotate 10", "blur",
                 "greyscale")  # fmt: skip
NON_FACE_IMAGES = ("coffee", "chelsea", "rocket", "horse", "hubble_deep_field", "retina", "coins", "page", "text", "clock",
                   "brick", "grass", "gravel", "moon", "cell", "immunohistochemistry", "logo", "colorwheel",
                   "shepp_logan_phantom", "stereo_motorcycle", "microaneurysms", "checkerboard", "binary_blobs")  # fmt: skip
MATPLOTLIB_NON_FACES = ("Minduka_Present_Blue_Pack.png", "logo2.png")
SUBJECT_B_FILE = "grace_hopper.jpg"  # only to locate the file; subject B is never named


@dataclass(frozen=True, eq=False)
class EvalImage:
    """One image of the set: ``identity`` "A"/"B"/"C" for a subject, None otherwise;
    ``has_face`` the ground truth for detection; ``group`` subject, lfw-face, lfw-nonface, nonface."""

    key: str
    rgb: np.ndarray
    identity: str | None
    has_face: bool
    group: str
    source: str
    augmentation: str = "original"


def as_rgb(a: Any) -> np.ndarray:
    """Any package image (bool, float in [0, 1], grey, RGBA on white) as RGB uint8."""
    import numpy as np

    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        a = np.clip(np.rint(a * 255.0 if a.max() <= 1.0 else a), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.uint16)
        a = ((a[:, :, :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(a[:, :, :3])


def matplotlib_sample(name: str) -> str:
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", name)


@lru_cache(maxsize=1)
def subject_photos() -> dict[str, np.ndarray]:
    """The three subject photos, by label only."""
    from PIL import Image
    from skimage import data

    with Image.open(matplotlib_sample(SUBJECT_B_FILE)) as im:
        b = as_rgb(im.convert("RGB"))
    return {"A": as_rgb(data.astronaut()), "B": b, "C": as_rgb(data.camera())}


# Where each subject photo comes from, without a person's name (B's file is named after its sitter).
SUBJECT_SOURCES = {"A": "skimage.data.astronaut()", "B": "matplotlib sample_data, the portrait JPEG",
                   "C": "skimage.data.camera()"}  # fmt: skip


def augment(rgb: np.ndarray, name: str) -> np.ndarray:
    """One of :data:`AUGMENTATIONS` applied to an RGB image (deterministic)."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    im = Image.fromarray(rgb)
    w, h = im.size
    if name == "original":
        out = im
    elif name == "crop":  # keep the central 80%
        out = im.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    elif name == "half scale":
        out = im.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    elif name == "jpeg q30":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=30)
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    elif name == "brighter":
        out = ImageEnhance.Brightness(im).enhance(1.3)
    elif name == "darker":
        out = ImageEnhance.Brightness(im).enhance(0.7)
    elif name == "mirror":
        out = ImageOps.mirror(im)
    elif name == "rotate 10":
        out = im.rotate(10, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    elif name == "blur":
        out = im.filter(ImageFilter.GaussianBlur(2))
    elif name == "greyscale":
        out = im.convert("L").convert("RGB")
    else:
        raise ValueError(f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)})")
    return np.ascontiguousarray(np.asarray(out.convert("RGB"), dtype=np.uint8))


def subject_images(augmentations: Iterable[str] = AUGMENTATIONS, subjects: Iterable[str] = SUBJECTS) -> list[EvalImage]:
    photos = subject_photos()
    return [EvalImage(f"{s}/{a}", augment(photos[s], a), s, True, "subject", SUBJECT_SOURCES[s], a)
            for s in subjects for a in augmentations]  # fmt: skip


def lfw_images() -> list[EvalImage]:
    """scikit-image's lfw_subset: 100 face crops (identity unknown), then 100 non-faces."""
    from skimage import data

    crops = data.lfw_subset()
    out = []
    for i, crop in enumerate(crops):
        face = i < 100
        out.append(EvalImage(f"lfw-{'face' if face else 'nonface'}/{i % 100:03d}", as_rgb(crop), None, face,
                             "lfw-face" if face else "lfw-nonface", f"skimage.data.lfw_subset()[{i}]"))  # fmt: skip
    return out


def non_face_images() -> list[EvalImage]:
    from PIL import Image
    from skimage import data

    out = []
    for name in NON_FACE_IMAGES:
        a = getattr(data, name)()
        if isinstance(a, tuple):  # stereo_motorcycle: (left, right, disparity)
            a = a[0]
        out.append(EvalImage(f"nonface/{name}", as_rgb(a), None, False, "nonface", f"skimage.data.{name}()"))
    for name in MATPLOTLIB_NON_FACES:
        with Image.open(matplotlib_sample(name)) as im:
            a = as_rgb(im.convert("RGBA"))
        out.append(EvalImage(f"nonface/{name}", a, None, False, "nonface", f"matplotlib sample_data/{name}"))
    return out


def evaluation_set(*, lfw: bool = True, non_faces: bool = True, augmentations: Iterable[str] = AUGMENTATIONS) -> list[EvalImage]:
    """Subjects A/B/C with their augmentations, then lfw_subset, then the non-face images."""
    items = subject_images(augmentations)
    if lfw:
        items += lfw_images()
    if non_faces:
        items += non_face_images()
    return items


# --- evaluation ---------------------------------------------------------------------------------


@dataclass
class Detection:
    """Image-level face detection: a positive is an image with at least one face found."""

    images: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    extra_boxes: int  # faces beyond the one in single-face images (subjects, lfw faces)
    precision: float | None
    recall: float | None
    by_group: dict[str, dict[str, int]] = field(default_factory=dict)  # group -> {images, detected}
    missed: list[str] = field(default_factory=list)  # keys of face images with no face found
    false_alarms: list[str] = field(default_factory=list)  # keys of non-face images with a face found


@dataclass
class Distances:
    pairs: int
    min: float | None
    median: float | None
    max: float | None


@dataclass
class Identity:
    threshold: float
    same: Distances  # same subject (the photo vs its augmentations, and those vs each other)
    different: Distances  # different subjects
    pair_precision: float | None  # over subject pairs: predicted same = distance <= threshold
    pair_recall: float | None
    pair_counts: dict[str, int]  # tp, fp, fn, tn
    identification_precision: float | None  # each augmented copy vs the subjects' originals (a registry)
    identification_recall: float | None
    identification_counts: dict[str, int]  # queries, identified, correct, wrong, unmatched
    lfw_faces_matching_a_subject: int | None  # lfw faces (other people) within the threshold of a subject original
    lfw_pairs: Distances | None  # pairs of lfw_subset faces (identities unknown, mostly different people)
    lfw_pairs_under: dict[str, float] | None  # threshold -> share of lfw pairs under it
    sweep: list[dict[str, float | None]] = field(default_factory=list)  # the same figures at other thresholds


@dataclass
class FaceEvaluation:
    detection: Detection
    identity: Identity
    settings: dict[str, Any]
    caveats: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CAVEATS = [
    "three identities, one photo each: every same-subject pair is the same photo augmented, so "
    "same-person distances are optimistic (different photos of one person lie farther apart)",
    "subjects A and B are both middle-aged women in studio portraits: a narrow test of 'different people'",
    "subject C (greyscale, face turned and small) is not found by the HOG detector at all",
    "lfw_subset identities are unknown: its pairs are assumed to be mostly of different people",
    "a real evaluation needs many identities with several independent photos each (e.g. LFW's "
    "6,000 labelled pairs, or a consented in-house set), faces of all ages, skin tones and poses, "
    "and NSFW / non-photo content",
]


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _distances(values: list[float]) -> Distances:
    import numpy as np

    if not values:
        return Distances(0, None, None, None)
    a = np.asarray(values)
    return Distances(len(values), round(float(a.min()), 4), round(float(np.median(a)), 4), round(float(a.max()), 4))


def _analyse(item: tuple[np.ndarray, bool]) -> tuple[int, list[np.ndarray]]:
    """(faces found, embeddings of the best face if wanted) for one image."""
    from consentry.images.faces import faces_and_total, find_faces

    rgb, embed = item
    if not embed:
        return len(find_faces(rgb)), []
    faces, total = faces_and_total(rgb, max_faces=1)
    return total, [f.embedding for f in faces]


def _run(items: list[EvalImage], embed: Callable[[EvalImage], bool], workers: int) -> list[tuple[int, list[np.ndarray]]]:
    work = [(it.rgb, embed(it)) for it in items]
    if workers <= 1:
        return [_analyse(w) for w in work]
    from concurrent.futures import ProcessPoolExecutor

    from consentry.images.analysis import _context, _worker_init

    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_worker_init) as pool:
        return list(pool.map(_analyse, work, chunksize=4))


def evaluate_faces(items: list[EvalImage] | None = None, *, threshold: float | None = None, lfw_pairs: bool = True,
                   workers: int = 1, sweep: Iterable[float] = (0.4, 0.45, 0.5, 0.55, 0.6)) -> FaceEvaluation:  # fmt: skip
    """Detection and identity figures over ``items`` (default: the whole :func:`evaluation_set`).

    ``lfw_pairs`` embeds the lfw_subset faces too (about 8 s more) for the share of their pairs
    under the threshold. Ground truth is the set's labels, never the detector's output."""
    import numpy as np

    from consentry.images import faces as faces_module

    threshold = faces_module.SAME_PERSON_DISTANCE if threshold is None else threshold
    items = evaluation_set() if items is None else items
    results = _run(items, lambda it: it.group == "subject" or (lfw_pairs and it.group == "lfw-face"), workers)

    # detection
    tp = fp = fn = tn = extra = 0
    by_group: dict[str, dict[str, int]] = {}
    missed, alarms = [], []
    for it, (total, _emb) in zip(items, results):
        group = by_group.setdefault(it.group if it.group != "subject" else f"subject {it.identity}", {"images": 0, "detected": 0})
        group["images"] += 1
        group["detected"] += int(total > 0)
        if it.has_face:
            tp, fn = tp + (total > 0), fn + (total == 0)
            extra += max(0, total - 1)
            if total == 0:
                missed.append(it.key)
        else:
            fp, tn = fp + (total > 0), tn + (total == 0)
            if total > 0:
                alarms.append(it.key)
    detection = Detection(len(items), tp, fp, fn, tn, extra, _ratio(tp, tp + fp), _ratio(tp, tp + fn), by_group, missed, alarms)

    # identity: the best face of each subject image
    subject = [(it, emb[0]) for it, (_t, emb) in zip(items, results) if it.group == "subject" and emb]
    pairs: list[tuple[bool, float]] = []
    for i in range(len(subject)):
        for j in range(i + 1, len(subject)):
            d = faces_module.face_distance(subject[i][1], subject[j][1])
            pairs.append((subject[i][0].identity == subject[j][0].identity, d))
    originals = {it.identity: e for it, e in subject if it.augmentation == "original"}
    queries = [(it, e) for it, e in subject if it.augmentation != "original" and it.identity in originals]
    lfw = [emb[0] for it, (_t, emb) in zip(items, results) if it.group == "lfw-face" and emb]
    lfw_d = [faces_module.face_distance(lfw[i], lfw[j]) for i in range(len(lfw)) for j in range(i + 1, len(lfw))]
    lfw_to_subject = [min(faces_module.face_distance(e, ref) for ref in originals.values()) for e in lfw] if originals else []

    def figures(t: float) -> dict[str, Any]:
        ptp = sum(1 for same, d in pairs if same and d <= t)
        pfp = sum(1 for same, d in pairs if not same and d <= t)
        pfn = sum(1 for same, d in pairs if same and d > t)
        ptn = sum(1 for same, d in pairs if not same and d > t)
        identified = correct = 0
        for it, e in queries:
            best = min(((faces_module.face_distance(e, ref), who) for who, ref in originals.items()), default=None)
            if best is not None and best[0] <= t:
                identified += 1
                correct += int(best[1] == it.identity)
        return {"threshold": t, "pair_precision": _ratio(ptp, ptp + pfp), "pair_recall": _ratio(ptp, ptp + pfn),
                "pair_counts": {"tp": ptp, "fp": pfp, "fn": pfn, "tn": ptn},
                "identification_precision": _ratio(correct, identified), "identification_recall": _ratio(correct, len(queries)),
                "identification_counts": {"queries": len(queries), "identified": identified, "correct": correct,
                                          "wrong": identified - correct, "unmatched": len(queries) - identified},
                "lfw_faces_matching_a_subject": sum(1 for d in lfw_to_subject if d <= t) if lfw_to_subject else None,
                "lfw_pairs_under": round(float(np.mean(np.asarray(lfw_d) <= t)), 4) if lfw_d else None}  # fmt: skip

    main = figures(threshold)
    identity = Identity(
        threshold=threshold,
        same=_distances([d for same, d in pairs if same]),
        different=_distances([d for same, d in pairs if not same]),
        pair_precision=main["pair_precision"], pair_recall=main["pair_recall"], pair_counts=main["pair_counts"],
        identification_precision=main["identification_precision"], identification_recall=main["identification_recall"],
        identification_counts=main["identification_counts"], lfw_faces_matching_a_subject=main["lfw_faces_matching_a_subject"],
        lfw_pairs=_distances(lfw_d) if lfw_d else None,
        lfw_pairs_under={str(t): figures(t)["lfw_pairs_under"] for t in sorted({*sweep, threshold})} if lfw_d else None,
        sweep=[{k: v for k, v in figures(t).items() if k not in ("pair_counts", "identification_counts")} for t in sweep],
    )  # fmt: skip
    settings = {"detector": "dlib HOG frontal_face_detector, run(view, 0, 0)", "min_face_score": faces_module.MIN_FACE_SCORE,
                "detect_max_side": faces_module.DETECT_MAX_SIDE, "small_side": faces_module.SMALL_SIDE,
                "max_upscale": faces_module.MAX_UPSCALE, "embedding": "dlib_face_recognition_resnet_model_v1, 5-point alignment, jitter 0",
                "same_person_distance": threshold}  # fmt: skip
    return FaceEvaluation(detection, identity, settings, list(CAVEATS))
