"""Faces: where they are (dlib's HOG detector) and who they are (dlib's 128-d ResNet embedding).

The models come from face-recognition-models (CC0) and dlib-bin, loaded once per process by
path (``importlib.util.find_spec``: importing ``face_recognition_models`` needs
``pkg_resources``), each checked against its pinned SHA-256. Only the 5-point landmark model is
used, never the 68-point one (its iBUG 300-W training data excludes commercial use), and never
the CNN detector (1.1 s per 512-pixel image on a CPU, 24 s at 2048).

Detection works on a view of the image sized for HOG, whose window is 80x80 pixels:

* images with a side over :data:`DETECT_MAX_SIDE` (2048) are scaled down to it first (HOG costs
  ~90 ns per pixel: 2048x2048 takes ~0.25 s), so time and memory are bounded; faces smaller
  than ~80/2048 of the longer side are then missed;
* images whose longer side is under :data:`SMALL_SIDE` (400) are scaled up to it (at most
  :data:`MAX_UPSCALE` times, bicubic) and padded by 10% with their edge pixels, so a tight
  25-pixel face crop (scikit-image's lfw_subset) is found (the 6x cap was picked on lfw_subset
  itself: 95 of its 100 faces at 4-6x before the score filter, 92 at 8x, so its detection
  figure is optimistic); in between, the image is used as is,
  and faces under ~80 pixels are missed (a 512-pixel image is not upsampled: that would cost
  4x, and the 125 ms budget holds only without it);
* ``detector.run(view, 0, 0)`` returns every window scoring >= 0 (dlib's own decision
  boundary) with its score, and :data:`MIN_FACE_SCORE` (0.2) keeps those at or above it: on the
  evaluation set the mission patch on subject A's suit scores up to 0.141 (in its crop, half
  scale and JPEG variants), the weakest real subject face 0.369 (B rotated 10 degrees); 0.2
  drops 4 of lfw_subset's blurriest crops (0.05-0.13) with the patch.

Boxes are given in the original image's pixels, clipped to it. At most :data:`MAX_FACES` faces
(the highest-scoring) are embedded; :func:`faces_and_total` and :func:`find_faces` count them all.

Identity, calibrated on the offline evaluation set (:func:`consentry.images.eval_set.evaluate_faces`,
``python bench/likeness_eval.py``), with this module's detector settings: the Euclidean distance
between two embeddings (not unit vectors: norms are ~1.25-1.46). dlib's own convention is "same
person below 0.6" (99.38% on LFW pairs). Measured:

* same subject: each photo against its own augmentations and those against each other (crop,
  half scale, JPEG q30, brighter, darker, mirror, 10 degree rotation, blur, greyscale;
  subjects A and B: C's face is never detected), 90 pairs: **0.040-0.397**, median 0.178;
* different subjects (every A variant against every B variant), 100 pairs: **0.590-0.717**,
  median 0.672 -- one pair is *below* dlib's 0.6, so at 0.6 pair precision is 0.989;
* lfw_subset's 25-pixel crops (identities unknown, mostly different people; 4,095 pairs of the
  91 faces found): median 0.723, min 0.388; 7.4% of pairs under 0.6, 2.1% under 0.55, 0.44%
  under 0.5, 0.15% under 0.45.

:data:`SAME_PERSON_DISTANCE` is therefore **0.5**, not 0.6: a registry that protects people must
not name the wrong one, and at 0.6 even this tiny set holds a different-person pair below the
line. 0.5 lies 0.090 under the closest different-subject pair and 0.103 over the farthest
same-photo pair (the midpoint is 0.49); at 0.5 pair precision and recall are 1.0 (90 of 90 same,
0 of 100 different), and all 18 augmented copies are identified as their subject against the
originals, none wrongly. Caveats, to show wherever the threshold is used: every same-subject
pair is the *same photo* augmented (no set with two photos of one identified person ships
offline), so same-person distances here are optimistic -- different photos of one person lie
farther apart, and some real matches will fall between 0.5 and 0.6; and two women in studio
portraits are a narrow test of "different people". A face match is evidence for a reviewer,
with the distance shown; several reference photos per person help.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consentry.errors import ConsentryError

if TYPE_CHECKING:
    import numpy as np

SAME_PERSON_DISTANCE = 0.5
MAX_FACES = 20
MIN_FACE_SCORE = 0.2
DETECT_MAX_SIDE = 2048
SMALL_SIDE = 400
MAX_UPSCALE = 6.0
SMALL_PAD = 0.10
EMBEDDING_DIM = 128

SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
RESNET_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = {
    SHAPE_MODEL: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    RESNET_MODEL: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}


class FaceModelError(ConsentryError):
    """The face models are missing or not the ones pinned."""

    exit_code = 2


@dataclass(frozen=True, eq=False)
class FaceBox:
    """A detected face before embedding: (left, top, right, bottom) in image pixels, and its HOG score."""

    box: tuple[int, int, int, int]
    score: float


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face: its box (left, top, right, bottom) in image pixels, its HOG detection
    score, and its 128-d embedding (float32)."""

    box: tuple[int, int, int, int]
    score: float
    embedding: np.ndarray

    def as_dict(self, *, embedding: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"box": list(self.box), "score": round(self.score, 4)}
        if embedding:
            out["embedding"] = [float(x) for x in self.embedding]
        return out


def face_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two face embeddings (same person if <= :data:`SAME_PERSON_DISTANCE`)."""
    import numpy as np

    return float(np.linalg.norm(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)))


def detect_faces(rgb: np.ndarray, *, max_faces: int | None = None) -> list[Face]:
    """The faces in an RGB image, highest score first, each with its embedding; at most
    ``max_faces`` (default :data:`MAX_FACES`) of them (:func:`faces_and_total` also says how
    many were found)."""
    return faces_and_total(rgb, max_faces=max_faces)[0]


def faces_and_total(rgb: np.ndarray, *, max_faces: int | None = None) -> tuple[list[Face], int]:
    """(the ``max_faces`` (default :data:`MAX_FACES`) highest-scoring faces with embeddings,
    how many faces were found)."""
    view = _DetectionView(rgb)
    found = view.detect()
    return view.embed(found[: MAX_FACES if max_faces is None else max_faces]), len(found)


def find_faces(rgb: np.ndarray) -> list[FaceBox]:
    """Every face the detector finds (score >= :data:`MIN_FACE_SCORE`), highest score first,
    without embeddings (a few ms instead of ~80 ms per face)."""
    view = _DetectionView(rgb)
    return [FaceBox(view.to_image(rect), score) for rect, score in view.detect()]


class _DetectionView:
    """The image as HOG sees it: scaled into range and, if small, padded."""

    def __init__(self, rgb: np.ndarray) -> None:
        import numpy as np

        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"faces need RGB uint8 pixels (height, width, 3), got {a.dtype} {a.shape}")
        self.height, self.width = a.shape[:2]
        side = max(self.height, self.width)
        self.scale, self.pad = 1.0, 0
        if side > DETECT_MAX_SIDE:
            self.scale = DETECT_MAX_SIDE / side
        elif side < SMALL_SIDE:
            self.scale = min(MAX_UPSCALE, SMALL_SIDE / side)
        if self.scale != 1.0:
            from PIL import Image

            size = (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale)))
            resample = Image.Resampling.BICUBIC if self.scale > 1 else Image.Resampling.BILINEAR
            a = np.asarray(Image.fromarray(a).resize(size, resample, reducing_gap=None if self.scale > 1 else 2.0))
        if self.scale > 1.0:
            self.pad = math.ceil(SMALL_PAD * max(a.shape[:2]))
            a = np.pad(a, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)), mode="edge")
        self.pixels = np.ascontiguousarray(a)

    def detect(self) -> list[tuple[Any, float]]:
        rects, scores, _kinds = _models().detector.run(self.pixels, 0, 0.0)
        found = [(r, float(s)) for r, s in zip(rects, scores) if s >= MIN_FACE_SCORE]
        return sorted(found, key=lambda rs: -rs[1])

    def to_image(self, rect: Any) -> tuple[int, int, int, int]:
        def back(v: float, limit: int) -> int:
            return int(min(max(round((v - self.pad) / self.scale), 0), limit))

        return (back(rect.left(), self.width), back(rect.top(), self.height),
                back(rect.right() + 1, self.width), back(rect.bottom() + 1, self.height))  # fmt: skip

    def embed(self, found: list[tuple[Any, float]]) -> list[Face]:
        import dlib
        import numpy as np

        if not found:
            return []
        models = _models()
        shapes = dlib.full_object_detections()
        for rect, _score in found:
            shapes.append(models.shape(self.pixels, rect))
        vectors = models.resnet.compute_face_descriptor(self.pixels, shapes, 0)
        return [Face(self.to_image(rect), score, np.asarray(vector, dtype=np.float32).reshape(EMBEDDING_DIM))
                for (rect, score), vector in zip(found, vectors)]  # fmt: skip


@dataclass(frozen=True)
class _Models:
    detector: Any
    shape: Any
    resnet: Any


_lock = threading.Lock()
_loaded: _Models | None = None


def _models() -> _Models:
    """dlib's detector, 5-point shape predictor and ResNet, loaded once per process."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load_models()
    return _loaded


def model_dir() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError("face models not installed: pip install 'consentry[likeness]' (face-recognition-models)")
    return os.path.join(list(spec.submodule_search_locations)[0], "models")


def _checked(path: str) -> str:
    from consentry.images.model_files import verified

    return verified(path, MODEL_SHA256[os.path.basename(path)], "face model", FaceModelError)


def _load_models() -> _Models:
    import dlib

    base = model_dir()
    shape = dlib.shape_predictor(_checked(os.path.join(base, SHAPE_MODEL)))
    resnet = dlib.face_recognition_model_v1(_checked(os.path.join(base, RESNET_MODEL)))
    return _Models(detector=dlib.get_frontal_face_detector(), shape=shape, resnet=resnet)


def warm_up() -> None:
    """Load the models now (a worker process does this before its first image)."""
    _models()
