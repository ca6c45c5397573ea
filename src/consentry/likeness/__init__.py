"""Likeness detection: does a model reproduce a real person, and which registered one (issue 6)?

Signals: the uploader's text and the training metadata inside the file (:mod:`.text`), the faces
in the preview images and whether one identity dominates them, the match to registered people's
reference faces, NSFW scores (:mod:`.assess`); `person find` searches the whole store for one
registered person (:mod:`.find`). The library API:

* :func:`assess_file`, :func:`assess_hub_model`, :func:`assess_all` → :class:`LikenessReport`;
* :func:`registered_people` reads the registry for matching (one audited read);
* :func:`find_person`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from consentry.likeness.assess import Assessor, LikenessReport, RegisteredPerson
from consentry.likeness.find import Finding, find_person
from consentry.likeness.sources import file_subject, hub_subject, stored_file_subject

__all__ = ["Assessor", "Finding", "LikenessReport", "RegisteredPerson", "assess_all", "assess_file", "assess_hub_model",
           "find_person", "registered_people"]  # fmt: skip


def registered_people(registry, *, actor: str, purpose: str) -> list[RegisteredPerson]:
    """Everyone in the registry, as matching needs them (the registry logs this one read)."""
    if registry is None:
        return []
    return [RegisteredPerson(p.id, p.display_name, (p.display_name, *p.aliases), tuple(p.handles), tuple(p.embeddings),
                             tuple(p.pdq)) for p in registry.people_for_matching(actor=actor, purpose=purpose)]  # fmt: skip


def assess_file(store, path: str | Path, *, images: Sequence[Path] = (),
                people: Sequence[RegisteredPerson] = ()) -> LikenessReport:  # fmt: skip
    """A local model file, with the preview images given (analysed and kept in the store)."""
    from consentry.likeness.previews import analyse_previews

    subject = file_subject(path, list(images))
    analyses = analyse_previews(store, subject) if subject.previews else []
    return Assessor(people).assess(subject, analyses)


def assess_hub_model(store, hub: str, remote_id: str, *, people: Sequence[RegisteredPerson] = (),
                     previews: bool = True, image_base: str | None = None) -> LikenessReport | None:  # fmt: skip
    """A crawled model; its previews are fetched and analysed once (``previews=False``: text only)."""
    return next(assess_all(store, [(hub, remote_id)], people=people, previews=previews, image_base=image_base), None)


def assess_all(store, models: Sequence[tuple[str, str]] | None = None, *, people: Sequence[RegisteredPerson] = (),
               previews: bool = True, image_base: str | None = None, files: bool | None = None) -> Iterator[LikenessReport]:  # fmt: skip
    """Every crawled model (or those given), one report each; with ``files`` (the default when
    no models are given) also every local file ``consentry index`` stored, from its name and
    the training metadata it held (no previews)."""
    from consentry.likeness.previews import analyse_previews

    assessor = Assessor(people)
    if files is None:
        files = models is None
    if models is None:
        models = [(r["hub"], r["remote_id"]) for r in store.db.query("SELECT hub, remote_id FROM hub_models ORDER BY hub, remote_id")]
    for hub, remote_id in models:
        subject = hub_subject(store, hub, remote_id)
        if subject is None:
            continue
        analyses = analyse_previews(store, subject, image_base=image_base) if previews and subject.previews else []
        if subject.previews and not previews:
            subject.notes.append(f"{len(subject.previews)} preview image(s) not analysed (previews off): image signals not used")
        yield assessor.assess(subject, analyses)
    if files:
        last = 0
        while True:  # a page at a time: metadata can be large
            rows = store.db.query("SELECT id, path, metadata_json FROM files WHERE id > ? ORDER BY id LIMIT 200", (last,))
            if not rows:
                break
            for row in rows:
                yield assessor.assess(stored_file_subject(row))
            last = rows[-1]["id"]
