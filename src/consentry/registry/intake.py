"""Reference photos reduced to what matching needs: one face embedding and one PDQ hash each.

The photo is decoded in memory by :mod:`consentry.images` and dropped; its bytes and pixels are
never written anywhere. A photo with no face or several faces is refused, naming its place, before
anything is stored (which of several faces is the person is for the advocate to say, by cropping).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np

from consentry.registry.errors import PhotoError

Photo = Union[str, "os.PathLike[str]", bytes]

EMBEDDING_DIM = 128
# A second detection counts as another face when it scores at least this share of the strongest
# one; weaker ones are the HOG detector's noise. Measured: the JPEG-saved astronaut photo (subject
# A) gets a spurious "face" on the suit's patch scoring 0.04-0.26 against the real face's 1.53-1.61
# (at most 0.17 of it, JPEG quality 30-95); a real second person in the frame (subjects A and B side
# by side) scores 1.52 against 1.53. Faces in scikit-image's tiny lfw crops score as low as 0.05,
# so no absolute threshold separates noise from faces: the rule is relative.
RIVAL_FACE_RATIO = 0.25
# Meta's guidance: a PDQ hash with quality under 50 is too featureless to match on (flat images).
PDQ_MIN_QUALITY = 50


def photo_label(photo: Photo, index: int) -> str:
    """Errors name a photo by its place in the intake, never by its file name: reference photos
    are often named after the person."""
    return f"photo {index}"


def reduce_photos(photos: Sequence[Photo]) -> tuple[list[np.ndarray], list[str]]:
    """(embeddings, pdq hashes) for ``photos``: every photo must show exactly one face
    (detections weaker than :data:`RIVAL_FACE_RATIO` of the strongest are not counted).

    All photos are processed before the caller stores anything, so a bad one stores nothing.
    A PDQ hash below :data:`PDQ_MIN_QUALITY` is not kept (the face embedding still is).
    """
    if not photos:
        return [], []
    try:
        return _reduce(photos)
    except ImportError as exc:  # the face models and image readers load on first use
        raise PhotoError("photo 1", f"reference photos need the face models: pip install 'consentry[likeness]' ({exc.name} is "
                                    "missing)") from None  # fmt: skip


def _reduce(photos: Sequence[Photo]) -> tuple[list[np.ndarray], list[str]]:
    from consentry.images.faces import detect_faces
    from consentry.images.pdq import pdq_hash
    from consentry.images.reading import load_image

    embeddings: list[np.ndarray] = []
    hashes: list[str] = []
    seen: set[str] = set()
    for index, photo in enumerate(photos, 1):
        label = photo_label(photo, index)
        rgb = load_image(bytes(photo) if isinstance(photo, (bytes, bytearray, memoryview)) else Path(photo), name=label)
        faces = sorted(detect_faces(rgb), key=lambda f: f.score, reverse=True)
        if not faces:
            raise PhotoError(label, "no face found: a reference photo must show exactly one face")
        rivals = [f for f in faces[1:] if f.score >= RIVAL_FACE_RATIO * faces[0].score]
        if rivals:
            scores = ", ".join(f"{f.score:.2f}" for f in [faces[0], *rivals])
            raise PhotoError(label, f"{1 + len(rivals)} faces found (detector scores {scores}): a reference photo must show "
                                    "exactly one face (crop it to the person)")  # fmt: skip
        digest, quality = pdq_hash(rgb)
        same = hashlib.sha256(rgb.tobytes()).hexdigest()
        if same in seen:  # the same photo twice would count as two agreeing references
            raise PhotoError(label, "the same picture as an earlier photo: give each reference photo once")
        seen.add(same)
        embeddings.append(np.asarray(faces[0].embedding, dtype=np.float32).reshape(EMBEDDING_DIM).copy())
        if quality >= PDQ_MIN_QUALITY:
            hashes.append(digest)
        del rgb, faces
    return embeddings, hashes
