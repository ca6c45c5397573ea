"""`person find`: everything in the store that reproduces one registered person, ranked.

Text: the crawled models whose title, description, tags, trigger words or file headers (training
folders, output name, ...) name the person — a cheap SQL prefilter on the start of each name
token (which tolerates misspellings past the fourth letter and finds names in other scripts when
the registry holds that spelling), then the same matcher as ``likeness`` on the candidates.
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


def _prefixes(person: RegisteredPerson) -> list[str]:
    """The first letters of every name token, as written, transliterated, and in lower, title and
    upper case: SQLite folds case for ASCII only and PostgreSQL's LIKE not at all."""
    out = set()
    for name in (*person.names, *person.handles):
        tokens = name.lstrip("@").replace("_", " ").replace(".", " ").split() + fold(name).split()
        for token in tokens:
            if len(token) >= PREFIX:
                start = token[:PREFIX]
                out.update({start.lower(), start.capitalize(), start.upper()})
    return sorted(out)


def text_candidates(store, person: RegisteredPerson) -> list[tuple[str, str]]:
    """(hub, remote id) of models whose text or file headers contain the start of a name token."""
    prefixes = _prefixes(person)
    if not prefixes:
        return []
    found: set[tuple[str, str]] = set()
    likes = " OR ".join("name LIKE ? OR description LIKE ? OR tags LIKE ?" for _ in prefixes)
    args = [f"%{p}%" for p in prefixes for _ in range(3)]
    for r in store.db.query(f"SELECT hub, remote_id FROM hub_models WHERE {likes}", args):
        found.add((r["hub"], r["remote_id"]))
    likes = " OR ".join("trained_words LIKE ?" for _ in prefixes)
    for r in store.db.query(f"SELECT hub, model_remote_id FROM hub_versions WHERE {likes}", [f"%{p}%" for p in prefixes]):
        found.add((r["hub"], r["model_remote_id"]))
    likes = " OR ".join("metadata_json LIKE ?" for _ in prefixes)
    for r in store.db.query(f"SELECT hub, model_remote_id FROM hub_files WHERE metadata_json IS NOT NULL AND ({likes})",
                            [f"%{p}%" for p in prefixes]):  # fmt: skip
        if r["model_remote_id"]:
            found.add((r["hub"], r["model_remote_id"]))
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
