"""The combined, explainable likeness verdict: does a model reproduce a real person, and which
registered one? Every signal is listed with where it was found, its value and its strength.

Scoring (calibrated in ``bench/likeness_eval.py``; see the README's table):

* For each registered person, the evidence that names them — their name, an alias or a handle
  in the uploader's text or inside the file, and their face in the previews — is combined as a
  noisy-OR of the signals' strengths: ``1 - Π(1 - sᵢ)``. A face match is ``FACE_MATCH`` when at
  least two previews show them, ``FACE_MATCH_ONE`` for one.
* That the model reproduces *some* real person combines the generic signals (a person's name,
  real-person words, a handle, one identity dominating the previews) with the strongest
  registered-person score.
* Generic text cues count ``FICTION_FACTOR`` as much when the text speaks of a style, a concept
  or a fictional character ("Lara Croft", "Neon Noir Style"); registered-person evidence is
  never weakened.
* A preview that is a copy of one of a registered person's intake photos (PDQ: the Hamming
  distance between one of the preview's 8 dihedral hashes -- itself, turned, mirrored -- and a
  hash of the photo is at most ``PDQ_MATCH_DISTANCE`` of 256 bits, ThreatExchange's threshold;
  neither hash of quality under 50) counts ``PDQ_MATCH``: the model's page shows the person's
  own photo, or one re-cropped, re-encoded, flipped or turned.
* Verdicts: ``PERSON_MIN`` or more for a registered person → that person; else ``REAL_MIN`` →
  likely a real person; ``POSSIBLE_MIN`` → possibly; below → no sign.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from consentry.likeness.sources import Subject
from consentry.likeness.text import KnownPerson, NameMatcher, TextSignal
from consentry.store.images import StoredAnalysis

PERSON_MIN = 0.7
REAL_MIN = 0.5
POSSIBLE_MIN = 0.25
FACE_MATCH = 0.95  # two or more previews show a registered person's face
# One preview alone: "possibly" (a registered face in one image of a mixed gallery is worth a look,
# not a verdict); with any other evidence naming the person, or in two previews, it is enough.
FACE_MATCH_ONE = 0.45
DOMINANT = 0.6  # one identity in at least DOMINANT_SHARE of three or more previews with faces
DOMINANT_PAIR = 0.4  # the same face in both of two previews
DOMINANT_SHARE = 0.6
PDQ_MATCH = 0.9  # a preview is a (turned, mirrored, re-encoded) copy of a registered person's photo
PDQ_MATCH_DISTANCE = 31  # bits of 256: ThreatExchange's PDQ match threshold (consentry.images.pdq.MATCH_THRESHOLD)
PDQ_MIN_QUALITY = 50  # hashes of less detailed images are not compared (Meta's guidance)
FICTION_FACTOR = 0.3  # generic text cues count this much when the text speaks of a style or a fictional character
_WEAKENED = ("person-name", "realism-cue", "real-person-cue", "handle-title")

REGISTERED, LIKELY, POSSIBLE, NO_SIGN = ("reproduces a registered person", "likely a real person",
                                         "possibly a real person", "no sign of a real person")  # fmt: skip


@dataclass(frozen=True)
class RegisteredPerson:
    """What matching needs of a registered person (from the registry, which logs the read)."""

    person_id: str
    display_name: str
    names: tuple[str, ...]  # display name, aliases, other spellings
    handles: tuple[str, ...] = ()
    embeddings: tuple[np.ndarray, ...] = ()
    pdq: tuple[str, ...] = ()  # PDQ hashes of the intake photos (64 hex each)


@dataclass
class PersonResult:
    person_id: str
    display_name: str
    score: float
    signals: list[dict[str, Any]]


@dataclass
class FaceEvidence:
    previews: int  # analysed
    with_faces: int
    faces: int
    dominant_images: int  # previews showing the most frequent identity
    dominant_share: float | None
    unreadable: list[dict[str, str]] = field(default_factory=list)
    nsfw: list[dict[str, Any]] = field(default_factory=list)  # per preview: our score and the hub's level


@dataclass
class LikenessReport:
    ref: str
    title: str
    verdict: str
    score: float  # how likely the model reproduces a real person, 0-1
    people: list[PersonResult]
    signals: list[dict[str, Any]]  # the generic ones (the per-person ones are under people)
    faces: FaceEvidence | None
    hub_nsfw_level: int | None
    thresholds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def noisy_or(strengths: Iterable[float]) -> float:
    out = 1.0
    for s in strengths:
        out *= 1.0 - max(0.0, min(1.0, s))
    return round(1.0 - out, 4)


def thresholds() -> dict[str, float | None]:
    try:  # the image signals need the `likeness` extra; the text signals do not
        from consentry.images.faces import SAME_PERSON_DISTANCE
    except ImportError:
        SAME_PERSON_DISTANCE = None
    return {"person": PERSON_MIN, "likely": REAL_MIN, "possible": POSSIBLE_MIN, "face_distance": SAME_PERSON_DISTANCE,
            "dominant_share": DOMINANT_SHARE, "pdq_distance": PDQ_MATCH_DISTANCE}  # fmt: skip


class Assessor:
    """Assess many models against the same registered people (names prepared once)."""

    def __init__(self, people: Sequence[RegisteredPerson] = ()) -> None:
        self.people = {p.person_id: p for p in people}
        self.matcher = NameMatcher(KnownPerson(p.person_id, p.names, p.handles) for p in people)

    def assess(self, subject: Subject, analyses: Sequence[StoredAnalysis] = ()) -> LikenessReport:
        text = self.matcher.signals(subject.fields)
        per_person: dict[str, list[dict[str, Any]]] = {}
        generic: list[dict[str, Any]] = []
        for s in text:
            (per_person.setdefault(s.person_id, []) if s.person_id else generic).append(_text_dict(s))
        if any(s["kind"] == "fiction-or-style" for s in generic):
            for s in generic:
                if s["kind"] in _WEAKENED:
                    s["strength"] = round(s["strength"] * FICTION_FACTOR, 4)
                    s["detail"] += f" (x{FICTION_FACTOR}: the text speaks of a style or a fictional character)"
        faces = None
        if analyses:
            levels = {preview.ref: preview.hub_nsfw_level for preview in subject.previews}
            faces, face_generic, face_people = self._faces(analyses, levels)
            generic += face_generic
            for person_id, signal in face_people.items():
                per_person.setdefault(person_id, []).append(signal)
            for person_id, signal in self._photo_copies(analyses).items():
                per_person.setdefault(person_id, []).append(signal)
        people = sorted((PersonResult(pid, self.people[pid].display_name, noisy_or(s["strength"] for s in sigs), sigs)
                         for pid, sigs in per_person.items() if pid in self.people), key=lambda r: -r.score)  # fmt: skip
        best = people[0].score if people else 0.0
        score = noisy_or([best] + [s["strength"] for s in generic])
        if best >= PERSON_MIN:
            verdict = f"{REGISTERED}: {people[0].display_name}"
        elif score >= REAL_MIN:
            verdict = LIKELY
        elif score >= POSSIBLE_MIN:
            verdict = POSSIBLE
        else:
            verdict = NO_SIGN
        notes = [] if subject.previews else ["no preview images: image signals not used"]
        return LikenessReport(subject.ref, subject.title, verdict, score, people, generic, faces, subject.hub_nsfw_level,
                              thresholds(), notes + list(subject.notes))  # fmt: skip

    def _faces(self, analyses: Sequence[StoredAnalysis],
               hub_levels: dict[str, int | None]) -> tuple[FaceEvidence, list[dict], dict[str, dict]]:  # fmt: skip
        from consentry.images.faces import SAME_PERSON_DISTANCE

        faced = [a for a in analyses if a.faces]
        evidence = FaceEvidence(previews=len(analyses), with_faces=len(faced), faces=sum(len(a.faces) for a in analyses),
                                dominant_images=0, dominant_share=None)  # fmt: skip
        evidence.unreadable = [{"ref": a.ref, "problem": a.problem} for a in analyses if a.problem]
        evidence.nsfw = [{"ref": a.ref, "nsfw": a.nsfw, "hub_nsfw_level": hub_levels.get(a.ref)} for a in analyses if a.nsfw is not None]
        generic: list[dict] = []
        if faced:
            images, _cluster = dominant_identity([[f.embedding for f in a.faces] for a in faced], SAME_PERSON_DISTANCE)
            evidence.dominant_images, evidence.dominant_share = images, round(images / len(faced), 3)
            strength = 0.0
            if len(faced) >= 3 and images / len(faced) >= DOMINANT_SHARE:
                strength = DOMINANT
            elif len(faced) == 2 and images == 2:
                strength = DOMINANT_PAIR
            if strength:
                generic.append({"kind": "dominant-identity", "field": "previews", "strength": strength,
                                "detail": f"one face in {images} of {len(faced)} previews with faces "
                                          f"(distance <= {SAME_PERSON_DISTANCE}; share >= {DOMINANT_SHARE})"})  # fmt: skip
        people: dict[str, dict] = {}
        for person in self.people.values():
            if not person.embeddings:
                continue
            refs = np.stack(person.embeddings)
            hits, best, agreeing = [], None, 0
            for a in faced:
                for f in a.faces:
                    d = np.linalg.norm(refs - f.embedding[None, :], axis=1)
                    if d.min() <= SAME_PERSON_DISTANCE:
                        hits.append(a.ref)
                        agreeing = max(agreeing, int((d <= SAME_PERSON_DISTANCE).sum()))
                    best = float(d.min()) if best is None else min(best, float(d.min()))
            images = len(set(hits))
            if images:
                people[person.person_id] = {
                    "kind": "registered-face", "field": "previews", "strength": FACE_MATCH if images >= 2 else FACE_MATCH_ONE,
                    "detail": f"face in {images} preview(s), nearest distance {best:.3f} <= {SAME_PERSON_DISTANCE}; "
                              f"{agreeing} of {len(refs)} reference embeddings agree",
                    "images": sorted(set(hits)), "distance": round(best, 4), "threshold": SAME_PERSON_DISTANCE,
                    "reference_embeddings_agreeing": agreeing, "reference_embeddings": len(refs),
                }  # fmt: skip
        return evidence, generic, people


    def _photo_copies(self, analyses: Sequence[StoredAnalysis]) -> dict[str, dict]:
        """Per registered person with PDQ hashes: the previews that are copies of their photos."""
        out: dict[str, dict] = {}
        for person in self.people.values():
            if not person.pdq:
                continue
            hits: dict[str, tuple[int, int]] = {}  # preview ref -> (distance, dihedral variant)
            for a in analyses:
                if not a.pdq or (a.pdq_quality is not None and a.pdq_quality < PDQ_MIN_QUALITY):
                    continue
                best = pdq_distance(a.pdq_dihedral or [a.pdq], person.pdq)
                if best[0] <= PDQ_MATCH_DISTANCE:
                    hits[a.ref] = best
            if hits:
                from consentry.banks.pdq_matching import AS_SEEN

                distance, variant = min(hits.values())
                upright_only = sum(1 for a in analyses if a.pdq and not a.pdq_dihedral)
                out[person.person_id] = {
                    "kind": "registered-photo", "field": "previews", "strength": PDQ_MATCH,
                    "detail": f"{len(hits)} preview(s) a copy of a reference photo: PDQ distance {distance} <= "
                              f"{PDQ_MATCH_DISTANCE} of 256 bits ({AS_SEEN[variant]})"
                              + (f"; {upright_only} preview(s) analysed before turns were hashed: upright only" if upright_only else ""),
                    "images": sorted(hits), "distance": distance, "threshold": PDQ_MATCH_DISTANCE,
                }  # fmt: skip
        return out


def pdq_distance(variants: Sequence[str], references: Sequence[str]) -> tuple[int, int]:
    """(smallest Hamming distance, index of the variant that gave it) between any of an image's
    dihedral PDQ hashes and any reference hash."""
    best = (257, 0)
    for k, variant in enumerate(variants):
        v = int(variant, 16)
        for ref in references:
            best = min(best, ((v ^ int(ref, 16)).bit_count(), k))
    return best


def dominant_identity(faces_per_image: Sequence[Sequence[np.ndarray]], threshold: float) -> tuple[int, list[int]]:
    """How many images show the most frequent identity, and which (indexes). Faces are grouped
    greedily: a face joins the first group holding a face within ``threshold`` of it."""
    groups: list[tuple[list[np.ndarray], set[int]]] = []
    for index, faces in enumerate(faces_per_image):
        for face in faces:
            for members, images in groups:
                if min(float(np.linalg.norm(m - face)) for m in members) <= threshold:
                    members.append(face)
                    images.add(index)
                    break
            else:
                groups.append(([face], {index}))
    if not groups:
        return 0, []
    members, images = max(groups, key=lambda g: len(g[1]))
    return len(images), sorted(images)


def _text_dict(s: TextSignal) -> dict[str, Any]:
    return s.as_dict()
