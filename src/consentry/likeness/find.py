"""`person find`: everything in the store that reproduces one registered person, ranked.

Text: the crawled models whose title, description, tags, trigger words or file headers (training
folders, output name, ...) name the person; the local files ``consentry index`` stored whose name
or training metadata (kohya folders, ``ss_output_name``, ``ss_tag_frequency``, ``modelspec.title``)
does; and the crawled images whose generation prompt or resource names do (listed under their
model, with the images named). One prefilter for all: a cheap SQL ``LIKE`` on the start of each
name token in the records' folded search text (ASCII, lower case: a name in another script or
with accents is found; misspellings past the fourth letter pass), then the same matcher as
``likeness`` on the candidates.
Faces: each reference embedding is looked up in the face index (:mod:`.face_index`) of every
analysed image, paging until the distance threshold is passed (a cap, if reached, is said).
Photos: the PDQ hashes of the person's intake photos against every analysed image's 8 dihedral
hashes (a copy turned or mirrored is found). Each finding's evidence is combined as in
:mod:`.assess`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from consentry.likeness.assess import (FACE_MATCH, FACE_MATCH_ONE, PDQ_MATCH, PDQ_MATCH_DISTANCE, PDQ_MIN_QUALITY,
                                      RegisteredPerson, noisy_or)  # fmt: skip
from consentry.likeness.sources import hub_subject, stored_file_subject
from consentry.likeness.text import KnownPerson, NameMatcher, fold
from consentry.store.hubs import image_text_fields
from consentry.store.records import from_json

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


def _prefilter(person: RegisteredPerson) -> tuple[str, list[str]] | None:
    """The SQL condition on ``search_text`` and its arguments (None: nothing to look for)."""
    patterns = _patterns(person)
    if not patterns:
        return None
    return " OR ".join("search_text LIKE ?" for _ in patterns), [f"%{p}%" for p in patterns]


def text_candidates(store, person: RegisteredPerson) -> list[tuple[str, str]]:
    """(hub, remote id) of models whose folded text or file headers contain a pattern."""
    where = _prefilter(person)
    if where is None:
        return []
    likes, args = where
    store.hubs.fill_search_text()  # rows crawled before the search text existed (once)
    found: set[tuple[str, str]] = set()
    for table, key in (("hub_models", "remote_id"), ("hub_versions", "model_remote_id"), ("hub_files", "model_remote_id")):
        for r in store.db.query(f"SELECT hub, {key} AS model FROM {table} WHERE {likes}", args):
            if r["model"]:
                found.add((r["hub"], r["model"]))
    return sorted(found)


def _file_findings(store, person: RegisteredPerson, matcher: NameMatcher) -> list[Finding]:
    """Indexed local files whose name or training metadata names the person."""
    where = _prefilter(person)
    if where is None:
        return []
    likes, args = where
    store.fill_file_search_text()  # files indexed before the search text existed (once)
    out = []
    for row in store.db.query(f"SELECT path, metadata_json FROM files WHERE {likes} ORDER BY path", args):
        subject = stored_file_subject(row)
        signals = [s.as_dict() for s in matcher.signals(subject.fields) if s.person_id == person.person_id]
        if signals:
            out.append(Finding(subject.ref, Path(subject.ref).name, None, 0.0, signals))
    return out


def _image_signals(store, person: RegisteredPerson, matcher: NameMatcher) -> dict[str, list[dict[str, Any]]]:
    """Crawled images whose prompt or resource names name the person: per finding reference
    (the image's model, else the image), one signal per kind and field, listing the images."""
    where = _prefilter(person)
    if where is None:
        return {}
    likes, args = where
    out: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for row in store.db.query(f"SELECT hub, remote_id, model_remote_id, meta FROM hub_images WHERE {likes} ORDER BY hub, remote_id",
                              args):  # fmt: skip
        image_ref = f"hub:{row['hub']}:{row['remote_id']}"
        ref = f"{row['hub']}:{row['model_remote_id']}" if row["model_remote_id"] else image_ref
        for s in matcher.signals(image_text_fields(from_json(row["meta"], None))):
            if s.person_id != person.person_id:
                continue
            kept = out.setdefault(ref, {}).setdefault((s.kind, s.field), {**s.as_dict(), "images": []})
            if s.strength > kept["strength"]:
                kept.update({**s.as_dict(), "images": kept["images"]})
            kept["images"].append(image_ref)
    return {ref: list(signals.values()) for ref, signals in out.items()}


def _finding_for(store, by_ref: dict[str, Finding], ref: str, url: str | None = None) -> Finding:
    """The finding for ``ref`` (a crawled model "<hub>:<id>", or an image), made when new."""
    finding = by_ref.get(ref)
    if finding is None:
        hub, _, remote_id = ref.partition(":")
        model = store.hubs.get("hub_models", hub, remote_id) if remote_id and hub != "hub" else None
        finding = by_ref[ref] = Finding(ref, model["name"] if model else None, model["url"] if model else url, 0.0)
    return finding


def _photo_copies(store, person: RegisteredPerson, batch: int = 20000) -> dict[str, dict[str, int]]:
    """Analysed images that are copies of the person's intake photos (PDQ, as in
    :meth:`.assess.Assessor._photo_copies`): per finding reference, {image ref: distance}. A flat
    vectorised scan of every analysed image's dihedral hashes (XOR and popcount on 64-bit words)."""
    import numpy as np

    refs = np.frombuffer(bytes.fromhex("".join(person.pdq)), dtype=">u8").reshape(-1, 4).astype(np.uint64)
    out: dict[str, dict[str, int]] = {}
    last = 0
    while True:
        rows = store.db.query("SELECT id, ref, hub, model_remote_id, pdq, pdq_dihedral FROM image_analyses WHERE id > ? AND pdq IS NOT NULL"
                              " AND (pdq_quality IS NULL OR pdq_quality >= ?) ORDER BY id LIMIT ?", (last, PDQ_MIN_QUALITY, batch))  # fmt: skip
        if not rows:
            return out
        last = rows[-1]["id"]
        variants = [(r["pdq_dihedral"] or r["pdq"]).split() for r in rows]
        width = max(len(v) for v in variants)
        hexes = "".join("".join(v + [v[0]] * (width - len(v))) for v in variants)  # the upright hash fills in
        words = np.frombuffer(bytes.fromhex(hexes), dtype=">u8").reshape(len(rows), width, 1, 4).astype(np.uint64)
        distance = np.bitwise_count(words ^ refs[None, None, :, :]).sum(axis=3).min(axis=(1, 2))
        for i in np.nonzero(distance <= PDQ_MATCH_DISTANCE)[0]:
            r = rows[int(i)]
            key = f"{r['hub']}:{r['model_remote_id']}" if r["model_remote_id"] else r["ref"]
            out.setdefault(key, {})[r["ref"]] = int(distance[i])


def find_person(store, person: RegisteredPerson, *, top: int = 100, notes: list[str] | None = None) -> list[Finding]:
    """What in the store names or shows ``person``, strongest first, at most ``top``. What the
    caller should know about the search (a cap reached) is appended to ``notes``."""
    from consentry.images.faces import SAME_PERSON_DISTANCE
    from consentry.likeness import face_index

    notes = notes if notes is not None else []

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
    for finding in _file_findings(store, person, matcher):
        by_ref[finding.ref] = finding
    for ref, signals in _image_signals(store, person, matcher).items():
        _finding_for(store, by_ref, ref).signals.extend(signals)
    images: dict[str, dict[str, float]] = {}  # model ref -> {image ref: nearest distance}
    titles: dict[str, tuple[str | None, str | None]] = {}
    for embedding in person.embeddings:
        cap = face_index.MAX_HITS
        near, capped = face_index.faces_near(store, embedding, SAME_PERSON_DISTANCE, max_hits=cap)
        note = f"a reference face is near {cap} or more stored faces: only the nearest {cap} were looked at, so images may be missing"
        if capped and note not in notes:
            notes.append(note)
        found = store.images.faces_by_id([face_id for face_id, _d in near])
        for face_id, distance in near:
            analysis, _face = found[face_id]
            ref = f"{analysis.hub}:{analysis.model_remote_id}" if analysis.model_remote_id else analysis.ref
            seen = images.setdefault(ref, {})
            seen[analysis.ref] = min(distance, seen.get(analysis.ref, distance))
            titles.setdefault(ref, (None, analysis.url))
    for ref, seen in images.items():
        finding = _finding_for(store, by_ref, ref, titles[ref][1])
        finding.signals.append({
            "kind": "registered-face", "field": "images", "strength": FACE_MATCH if len(seen) >= 2 else FACE_MATCH_ONE,
            "detail": f"face in {len(seen)} image(s), nearest distance {min(seen.values()):.3f} <= {SAME_PERSON_DISTANCE}",
            "images": sorted(seen), "distance": round(min(seen.values()), 4), "threshold": SAME_PERSON_DISTANCE,
        })  # fmt: skip
    for ref, seen in (_photo_copies(store, person) if person.pdq else {}).items():
        _finding_for(store, by_ref, ref).signals.append({
            "kind": "registered-photo", "field": "images", "strength": PDQ_MATCH,
            "detail": f"{len(seen)} image(s) a copy of a reference photo (turned or mirrored counts): PDQ distance "
                      f"{min(seen.values())} <= {PDQ_MATCH_DISTANCE} of 256 bits",
            "images": sorted(seen), "distance": min(seen.values()), "threshold": PDQ_MATCH_DISTANCE,
        })  # fmt: skip
    for finding in by_ref.values():
        finding.score = noisy_or(s["strength"] for s in finding.signals)
    ranked = sorted(by_ref.values(), key=lambda f: (-f.score, f.ref))
    if len(ranked) > top:
        notes.append(f"{len(ranked)} findings, the {top} strongest shown (--top)")
    return ranked[:top]
