"""The nearest-neighbour index over every face seen in an analysed image (128-d dlib embeddings,
squared Euclidean distance, stored as float16), so `person find` asks the index instead of
comparing a reference face with a million stored ones."""

from __future__ import annotations

import numpy as np

from consentry import vectors

FACES = vectors.VectorTable(
    name="faces", version="dlib-resnet-v1", ndim=128, metric="l2sq", dtype="f16",
    max_id=lambda store: store.images.max_face_id(),
    iter_vectors=lambda store, after: store.images.iter_face_vectors(after_id=after),
    connectivity=16, expansion_add=64, expansion_search=128,
)  # fmt: skip


def faces_near(store, embedding: np.ndarray, threshold: float, k: int = 200) -> list[tuple[int, float]]:
    """(face id, Euclidean distance) of stored faces within ``threshold`` of ``embedding``, nearest
    first: the index gives a shortlist, each distance is recomputed from the stored embedding."""
    index = vectors.index_for(store, FACES)
    shortlist = [key for key, dist in vectors.search(index, embedding, k) if dist <= (threshold * 1.1) ** 2]
    found = store.images.faces_by_id(shortlist)
    out = []
    for face_id in shortlist:
        if face_id in found:
            d = float(np.linalg.norm(found[face_id][1].embedding - embedding))
            if d <= threshold:
                out.append((face_id, d))
    return sorted(out, key=lambda x: x[1])
