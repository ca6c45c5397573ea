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


FIRST_PAGE = 200  # nearest faces asked of the index first; more pages while they are all within the threshold
MAX_HITS = 50_000  # faces one reference embedding may match before the search stops (and says so)


def faces_near(store, embedding: np.ndarray, threshold: float, k: int = FIRST_PAGE,
               max_hits: int = MAX_HITS) -> tuple[list[tuple[int, float]], bool]:  # fmt: skip
    """(face id, Euclidean distance) of stored faces within ``threshold`` of ``embedding``, nearest
    first, and whether ``max_hits`` cut the list short. The index gives a shortlist of the ``k``
    nearest; while the farthest of them is still within reach, ``k`` grows fourfold (up to
    ``max_hits``) and the index is searched exhaustively, so every face within the threshold is
    seen. Each distance is recomputed from the stored embedding."""
    index = vectors.index_for(store, FACES)
    reach = (threshold * 1.1) ** 2  # the index keeps float16: a little slack, the exact check follows
    k = max(1, min(k, max_hits))
    exact = False
    while True:
        if exact:  # later pages: brute force, so a dense crowd of near faces is not left to HNSW's recall
            matches = index.search(np.asarray(embedding, dtype=np.float32), min(k, len(index)), exact=True)
            near = [(int(key), float(dist)) for key, dist in zip(matches.keys, matches.distances)]
        else:
            near = vectors.search(index, embedding, k)
        shortlist = [key for key, dist in near if dist <= reach]
        exhausted = len(near) < k or len(shortlist) < len(near) or len(index) <= k
        if exhausted or k >= max_hits:
            break
        k, exact = min(k * 4, max_hits), True
    capped = not exhausted and len(shortlist) >= max_hits
    found = store.images.faces_by_id(shortlist)
    out = []
    for face_id in shortlist:
        if face_id in found:
            d = float(np.linalg.norm(found[face_id][1].embedding - embedding))
            if d <= threshold:
                out.append((face_id, d))
    return sorted(out, key=lambda x: x[1]), capped
