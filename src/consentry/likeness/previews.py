"""A model's preview images, fetched (bounded) and analysed once: faces with embeddings, an NSFW
score, a PDQ hash. Results are kept in the store (``image_analyses``/``image_faces``) under the
image's reference, so a later assessment or ``person find`` reads them without fetching again.

Hub image URLs name the hub's CDN (``image.civitai.com``); ``image_base`` (``--image-base-url``,
``CONSENTRY_IMAGE_BASE_URL``) replaces scheme and host, for a mirror, a proxy or the local fake.
A download is capped at ``MAX_IMAGE_BYTES`` and never written to disk; what cannot be fetched or
read is recorded with the reason, and the assessment carries on without it.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from consentry.hubs.base import USER_AGENT
from consentry.likeness.sources import Preview, Subject
from consentry.store.images import StoredAnalysis

MAX_IMAGE_BYTES = 20 << 20
MAX_PREVIEWS = 20  # per model: enough to see whether one identity dominates


@dataclass
class FetchedImage:
    preview: Preview
    data: bytes | None
    problem: str | None = None


def _local_url(url: str, image_base: str | None) -> str:
    if not image_base:
        return url
    parts = urlsplit(url)
    return image_base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def fetch(client: httpx.Client, preview: Preview, image_base: str | None) -> FetchedImage:
    """The preview's bytes, at most MAX_IMAGE_BYTES; a problem instead when it cannot be had."""
    if preview.path is not None:
        try:
            size = os.path.getsize(preview.path)
            if size > MAX_IMAGE_BYTES:
                return FetchedImage(preview, None, f"{size} bytes, over the {MAX_IMAGE_BYTES}-byte limit")
            return FetchedImage(preview, preview.path.read_bytes())
        except OSError as exc:
            return FetchedImage(preview, None, f"cannot read: {exc.strerror or exc}")
    if not preview.url:
        return FetchedImage(preview, None, "no URL")
    url = _local_url(preview.url, image_base)
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                return FetchedImage(preview, None, f"HTTP {resp.status_code}")
            chunks, got = [], 0
            for chunk in resp.iter_bytes():
                got += len(chunk)
                if got > MAX_IMAGE_BYTES:
                    return FetchedImage(preview, None, f"over the {MAX_IMAGE_BYTES}-byte limit")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        return FetchedImage(preview, None, f"{type(exc).__name__}: {exc}")
    return FetchedImage(preview, b"".join(chunks))


def analyse_previews(store, subject: Subject, *, image_base: str | None = None, refetch: bool = False,
                     workers: int = 4) -> list[StoredAnalysis]:  # fmt: skip
    """Every preview of ``subject`` analysed (from the store when already done), in order.
    Without the ``likeness`` extra (Pillow, dlib, ...) nothing is analysed and a note says so."""
    try:
        from consentry.images.analysis import analyse_image
        import PIL  # noqa: F401
        import dlib  # noqa: F401
    except ImportError:
        subject.notes.append("image signals not used: they need pip install 'consentry[likeness]'")
        return []

    image_base = image_base or os.environ.get("CONSENTRY_IMAGE_BASE_URL")
    previews = subject.previews[:MAX_PREVIEWS]
    if len(subject.previews) > MAX_PREVIEWS:
        subject.notes.append(f"{len(subject.previews)} preview images: the first {MAX_PREVIEWS} analysed, "
                             f"{len(subject.previews) - MAX_PREVIEWS} not")  # fmt: skip
    done: dict[str, StoredAnalysis] = {}
    if not refetch:
        for p in previews:
            stored = store.images.get(p.ref) if p.path is None else None
            if stored is not None and stored.sha256 is not None:  # a failed download is tried again
                done[p.ref] = stored
    wanted = [p for p in previews if p.ref not in done]
    if wanted:
        with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(20.0, connect=10.0),
                          headers={"User-Agent": USER_AGENT}) as client, ThreadPoolExecutor(workers) as pool:  # fmt: skip
            fetched = list(pool.map(lambda p: fetch(client, p, image_base), wanted))
        hub, model = subject.hub, subject.remote_id
        for item in fetched:
            analysis = analyse_image(item.data, name=item.preview.ref) if item.data is not None else None
            faces = [(f.box, f.score, f.embedding) for f in analysis.faces] if analysis else []
            problem = item.problem or (analysis.problem if analysis else None)
            store.images.put(
                item.preview.ref, hub=hub, model_remote_id=model, url=item.preview.url,
                sha256=hashlib.sha256(item.data).hexdigest().upper() if item.data is not None else None,
                width=analysis.width if analysis else None, height=analysis.height if analysis else None,
                faces_total=analysis.faces_total if analysis else 0, nsfw=analysis.nsfw if analysis else None,
                pdq=analysis.pdq if analysis else None, pdq_quality=analysis.pdq_quality if analysis else None,
                problem=problem, faces=faces, pdq_dihedral=analysis.pdq_dihedral if analysis else None,
            )  # fmt: skip
            done[item.preview.ref] = store.images.get(item.preview.ref)
    return [done[p.ref] for p in previews if p.ref in done]


def analysis_dict(a: StoredAnalysis) -> dict[str, Any]:
    return {"ref": a.ref, "url": a.url, "faces": a.faces_total, "nsfw": a.nsfw, "pdq": a.pdq, "problem": a.problem,
            "width": a.width, "height": a.height}  # fmt: skip
