"""What a likeness assessment reads of a model: its text fields, where each came from, and its
preview images — for a local file (its name and the training metadata inside it) or for a model
crawled from a hub (title, description, trigger words, tags, the headers of its files, previews)."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consentry.store.records import from_json

_TAG = re.compile(r"<[^>]+>")


@dataclass
class Preview:
    """One preview image: where to read it, and what the hub said of it."""

    ref: str  # a local path, or "hub:<hub>:<image remote id>"
    path: Path | None = None
    url: str | None = None
    hub_nsfw_level: int | None = None


@dataclass
class Subject:
    """A model as the likeness signals see it."""

    ref: str  # the file path, or "<hub>:<remote id>"
    title: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # (field, text): see likeness.text
    previews: list[Preview] = field(default_factory=list)
    hub_nsfw_level: int | None = None
    hub: str | None = None  # for a crawled model: its hub and remote id
    remote_id: str | None = None
    notes: list[str] = field(default_factory=list)


def metadata_fields(decoded: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The text a training run left in the file (``inspection.metadata.decode_metadata`` output)."""
    if not decoded:
        return []
    out: list[tuple[str, str]] = []
    for folder in decoded.get("training_folders") or []:
        out.append(("training folder", folder.get("name") or folder.get("folder") or ""))
    kohya = decoded.get("kohya") or {}
    if kohya.get("output_name"):
        out.append(("output name", str(kohya["output_name"])))
    if kohya.get("training_comment"):
        out.append(("training comment", str(kohya["training_comment"])))
    tags = [tag for tag, _count in decoded.get("top_tags") or []]  # the 20 most frequent caption tags the inspection keeps
    if tags:
        out.append(("caption tags", ", ".join(tags)))
    title = (decoded.get("modelspec") or {}).get("title") or (decoded.get("modelspec") or {}).get("modelspec.title")
    if title:
        out.append(("modelspec title", str(title)))
    return out


def file_subject(path: str | Path, images: list[Path] | None = None) -> Subject:
    """A local model file: its name and the metadata inside it, and any preview images given."""
    from consentry.formats import read_manifest
    from consentry.inspection.metadata import decode_metadata

    p = Path(path)
    subject = Subject(ref=str(p), title=p.stem, fields=[("title", p.stem.replace("_", " "))])
    manifest = read_manifest(p)
    subject.fields += metadata_fields(decode_metadata(manifest.metadata).as_dict())
    subject.previews = [Preview(ref=str(i), path=Path(i)) for i in images or []]
    return subject


def stored_file_subject(row: Any) -> Subject:
    """A file ``consentry index`` stored (a ``files`` row): its name and the metadata that was
    inside it, as :func:`file_subject` reads them from the file itself."""
    from consentry.inspection.metadata import decode_metadata

    p = Path(row["path"])
    subject = Subject(ref=str(p), title=p.stem, fields=[("title", p.stem.replace("_", " "))])
    raw = from_json(row["metadata_json"], None)
    if isinstance(raw, dict):
        subject.fields += metadata_fields(decode_metadata({str(k): v for k, v in raw.items() if isinstance(v, str)}).as_dict())
    return subject


def hub_subject(store, hub: str, remote_id: str) -> Subject | None:
    """A crawled model: what its uploader wrote, what its files' headers hold, its previews."""
    model = store.hubs.get("hub_models", hub, remote_id)
    if model is None:
        return None
    subject = Subject(ref=f"{hub}:{remote_id}", title=model["name"] or remote_id, hub_nsfw_level=model["nsfw_level"],
                      hub=hub, remote_id=str(remote_id))  # fmt: skip
    subject.fields.append(("title", model["name"] or ""))
    if model["description"]:
        subject.fields.append(("description", html.unescape(_TAG.sub(" ", model["description"]))))
    if model["tags"]:
        subject.fields.append(("tags", ", ".join(model["tags"])))
    words = []
    for row in store.db.query("SELECT trained_words FROM hub_versions WHERE hub = ? AND model_remote_id = ?", (hub, remote_id)):
        words += from_json(row["trained_words"], [])
    if words:
        subject.fields.append(("trigger words", ", ".join(dict.fromkeys(words))))
    for row in store.db.query("SELECT metadata_json FROM hub_files WHERE hub = ? AND model_remote_id = ?", (hub, remote_id)):
        meta = from_json(row["metadata_json"], None) or {}
        subject.fields += metadata_fields(meta.get("decoded"))
    for row in store.db.query("SELECT remote_id, url, nsfw_level FROM hub_images WHERE hub = ? AND model_remote_id = ? ORDER BY remote_id",
                              (hub, remote_id)):  # fmt: skip
        subject.previews.append(Preview(ref=f"hub:{hub}:{row['remote_id']}", url=row["url"], hub_nsfw_level=row["nsfw_level"]))
    return subject
