"""The whole per-image pipeline: decode, faces (boxes, scores, embeddings), NSFW score, PDQ.

:func:`analyse_image` never raises for a bad image: :attr:`ImageAnalysis.problem` says what was
wrong ("not an image", "decompression bomb: ..."), and the signals are empty. :func:`analyse_many`
runs it over many images on a pool of processes (dlib and onnxruntime hold the GIL while they
work, so threads would not help), each loading the models once; results come back in order.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Union

from consentry.images.reading import ImageError, ImageSource, load_image, source_label

if TYPE_CHECKING:
    import numpy as np

    from consentry.images.faces import Face

AnalysisSource = Union[ImageSource, "np.ndarray"]


@dataclass
class ImageAnalysis:
    """What one image shows. ``faces`` holds at most :data:`~consentry.images.faces.MAX_FACES`
    (the highest-scoring), ``faces_total`` how many were found. With a ``problem`` the image
    could not be analysed and every signal is empty (``nsfw``, ``pdq`` None)."""

    faces: list[Face] = field(default_factory=list)
    faces_total: int = 0
    nsfw: float | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    width: int | None = None
    height: int | None = None
    problem: str | None = None
    name: str | None = None
    pdq_dihedral: list[str] | None = None  # the 8 dihedral hashes (consentry.images.pdq), the first is ``pdq``

    def as_dict(self, *, embeddings: bool = False) -> dict[str, Any]:
        return {
            "name": self.name, "width": self.width, "height": self.height, "faces_total": self.faces_total,
            "faces": [f.as_dict(embedding=embeddings) for f in self.faces], "nsfw": self.nsfw,
            "pdq": self.pdq, "pdq_quality": self.pdq_quality, "problem": self.problem,
        }  # fmt: skip


def analyse_image(source: AnalysisSource, *, name: str | None = None, faces: bool = True, nsfw: bool = True,
                  pdq: bool = True) -> ImageAnalysis:  # fmt: skip
    """Analyse one image: a path, the bytes of a file, or RGB pixels already decoded."""
    import numpy as np

    label = name or (source_label(source) if not isinstance(source, np.ndarray) else "image")
    try:
        rgb = source if isinstance(source, np.ndarray) else load_image(source, name=label)
    except ImageError as exc:
        return ImageAnalysis(problem=exc.problem, name=label)
    except MemoryError:
        return ImageAnalysis(problem="out of memory while decoding", name=label)
    result = ImageAnalysis(width=int(rgb.shape[1]), height=int(rgb.shape[0]), name=label)
    try:
        if faces:
            from consentry.images.faces import faces_and_total

            result.faces, result.faces_total = faces_and_total(rgb)
        if nsfw:
            from consentry.images.nsfw import nsfw_score

            result.nsfw = nsfw_score(rgb)
        if pdq:
            from consentry.images.pdq import pdq_dihedral_with_quality

            result.pdq_dihedral, result.pdq_quality = pdq_dihedral_with_quality(rgb)
            result.pdq = result.pdq_dihedral[0]
    except (ValueError, RuntimeError, MemoryError) as exc:  # dlib and onnxruntime raise RuntimeError
        return ImageAnalysis(width=result.width, height=result.height, problem=f"analysis failed: {exc}", name=label)
    return result


def warm_up() -> None:
    """Load every model now: a pool worker does this once, before its first image."""
    from consentry.images import faces, nsfw

    faces.warm_up()
    nsfw.warm_up()
    import pdqhash  # noqa: F401


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warm_up()


def _analyse_one(item: tuple[AnalysisSource, str | None]) -> ImageAnalysis:
    source, name = item
    return analyse_image(source, name=name)


def _context() -> multiprocessing.context.BaseContext:
    # forkserver: workers start from a clean server process, not a fork of a parent that may hold
    # onnxruntime's threads and open database connections.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def analyse_many(sources: Iterable[AnalysisSource], workers: int | None = None, *,
                 names: Iterable[str | None] | None = None, chunksize: int = 1) -> list[ImageAnalysis]:  # fmt: skip
    """:func:`analyse_image` over many images, in order, on ``workers`` processes (default: one
    per CPU, at most one per image; ``workers <= 1`` runs in this process)."""
    items = list(sources)
    labels = list(names) if names is not None else [None] * len(items)
    if len(labels) != len(items):
        raise ValueError("names must give one name per source")
    pairs = list(zip(items, labels))
    count = min(workers if workers is not None else (os.cpu_count() or 1), len(pairs))
    if count <= 1:
        return [_analyse_one(p) for p in pairs]
    with ProcessPoolExecutor(max_workers=count, mp_context=_context(), initializer=_worker_init) as pool:
        return list(pool.map(_analyse_one, pairs, chunksize=max(1, chunksize)))
