"""`person find`: everything in the store that reproduces one registered person, ranked.

Text: the crawled models whose title, description, tags, trigger words or file headers (training
folders, output name, ...) name the person — a cheap SQL prefilter on the start of each name
token in the records' folded search text (ASCII, lower case: a name in another script or with
accents is found; misspellings past the fourth letter pass), then the same matcher as
``likeness`` on the candidates.
Faces: each reference embedding is looked up in the face index (:mod:`.face_index`) of every
analysed image. Each model's evidence is combined as in :mod:`.assess`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from consentry.likeness.assess import FACE_MATCH, FACE_MATCH_ONE, RegisteredPerson, noisy_or
from consentry.likeness.sources import hub_subject
from consentry.likeness.text import KnownPerson, NameMatcher, fold

PREFIX = 4  # letters of each name token the SQL prefilter looks for


@dataclass
class Finding:
    ref: str  # "<hub>:<remote id>", or an analysed image's reference when no model is known
    title: str | None
    url: str | None
    score: float
    signals: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _patterns(person: RegisteredPerson) -> list[str]:
    """What the prefilter looks for in the folded search text: the first letters of every name
    token of four letters or more (a misspelling past them still passes, and the matcher
    decides), and a name with a shorter token ("Li Na") as a whole."""
    out = set()
    for name in (*person.names, *person.handles):
        tokens = fold(name).split()
        out.update(token[:PREFIX] for token in tokens if len(token) >= PREFIX)
        if tokens and any(len(token) < PREFIX for token in tokens):
            out.add(" ".join(tokens))
    return sorted(out)


def text_candidates(store, person: RegisteredPerson) -> list[tuple[str, str]]:
    """(hub, remote id) of models whose folded text or file headers contain a pattern."""
    patterns = _patterns(person)
    if not patterns:
        return []
    store.hubs.fill_search_text()  # rows crawled before the search text existed (once)
    likes = " OR ".join("search_text LIKE ?" for _ in patterns)
    args = [f"%{p}%" for p in patterns]
    found: set[tuple[str, str]] = set()
    for table, key in (("hub_models", "remote_id"), ("hub_versions", "model_remote_id"), ("hub_files", "model_remote_id")):
        for r in store.db.query(f"SELECT hub, {key} AS model FROM {table} WHERE {likes}", args):
            if r["model"]:
                found.add((r["hub"], r["model"]))
    return sorted(found)


def find_person(store, person: RegisteredPerson, *, top: int = 100) -> list[Finding]:
    from consentry.images.faces import SAME_PERSON_DISTANCE
    from consentry.likeness.face_index import faces_near

    matcher = NameMatcher([KnownPerson(person.person_id, person.names, person.handles)])
    by_ref: dict[str, Finding] = {}
    for hub, remote_id in text_candidates(store, person):
        subject = hub_subject(store, hub, remote_id)
        if subject is None:
            continue
        signals = [s.as_dict() for s in matcher.signals(subject.fields) if s.person_id == person.person_id]
        if signals:
            model = store.hubs.get("hub_models", hub, remote_id)
            by_ref[subject.ref] = Finding(subject.ref, subject.title, model["url"] if model else None, 0.0, signals)
    images: dict[str, dict[str, float]] = {}  # model ref -> {image ref: nearest distance}
    titles: dict[str, tuple[str | None, str | None]] = {}
    for embedding in person.embeddings:
        near = faces_near(store, embedding, SAME_PERSON_DISTANCE)
        found = store.images.faces_by_id([face_id for face_id, _d in near])
        for face_id, distance in near:
            analysis, _face = found[face_id]
            ref = f"{analysis.hub}:{analysis.model_remote_id}" if analysis.model_remote_id else analysis.ref
            seen = images.setdefault(ref, {})
            seen[analysis.ref] = min(distance, seen.get(analysis.ref, distance))
            titles.setdefault(ref, (None, analysis.url))
    for ref, seen in images.items():
        finding = by_ref.get(ref)
        if finding is None:
            hub, _, remote_id = ref.partition(":")
            model = store.hubs.get("hub_models", hub, remote_id) if remote_id else None
            finding = by_ref[ref] = Finding(ref, model["name"] if model else None, model["url"] if model else titles[ref][1], 0.0)
        finding.signals.append({
            "kind": "registered-face", "field": "images", "strength": FACE_MATCH if len(seen) >= 2 else FACE_MATCH_ONE,
            "detail": f"face in {len(seen)} image(s), nearest distance {min(seen.values()):.3f} <= {SAME_PERSON_DISTANCE}",
            "images": sorted(seen), "distance": round(min(seen.values()), 4), "threshold": SAME_PERSON_DISTANCE,
        })  # fmt: skip
    for finding in by_ref.values():
        finding.score = noisy_or(s["strength"] for s in finding.signals)
    return sorted(by_ref.values(), key=lambda f: (-f.score, f.ref))[:top]
