"""Text signals: does a model's text name a real person, and which registered one?

The text comes from what the uploader wrote (title, description, trigger words, tags) and from
what the training run left inside the file (kohya training folder names ``<repeats>_<name>``,
``ss_output_name``, ``ss_training_comment``, caption tags, ``modelspec.title``) — the latter
survive when a re-upload is renamed "LORA". Every signal says which field, what text, how it
matched and how strong that is.

Matching a registered person: each name and alias is compared after transliteration to ASCII
(anyascii: "Катя Марчетти" → "Katia Marchetti") and case folding, as a whole phrase, with
separators removed (kohya folders write "miracastellan" or "mira_castellan"), and fuzzily
(rapidfuzz; ``FUZZY_MIN`` for a misspelt name, e.g. "Mira Castelan"). Handles match with or
without "@". Without a registry the generic cues still speak: a two-word capitalised name in
the title or a training folder, words such as celebrity/actress/influencer/IRL, a title made of
a social-media handle.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

from anyascii import anyascii
from rapidfuzz import fuzz

from consentry.textfold import fold

FUZZY_MIN = 88  # rapidfuzz ratio (0-100) for a fuzzy name match: one or two letters off in a full name
JOINED_MIN_LENGTH = 8  # a name written without separators must be this long to count (short ones collide)

# Strength of each kind of evidence (0-1): how much it says on its own that the text names a person.
STRENGTH = {
    "registered-name": 0.9,  # the full name or an alias of a registered person, exactly
    "registered-name-fuzzy": 0.75,
    "registered-handle": 0.85,
    "person-name": 0.35,  # a capitalised "Firstname Lastname" that is not a known non-name phrase
    "real-person-cue": 0.3,  # celebrity, actress, influencer, IRL, "real person", lookalike ...
    "handle-title": 0.3,  # the model is named after a social-media handle
    "realism-cue": 0.25,  # realistic, photorealistic, photo, portrait: a person or a photo style
    "fiction-or-style": 0.0,  # style, character, anime, cartoon...: weakens the generic cues (see likeness.assess)
}

# Where each field comes from: the uploader's words, or the file's own training metadata.
UPLOADER_FIELDS = ("title", "description", "trigger words", "tags")
FILE_FIELDS = ("training folder", "output name", "training comment", "caption tags", "modelspec title")

_CUES = re.compile(
    r"\b(celebrit(y|ies)|actress|actor|influencer|instagram(mer)?|insta|onlyfans|tiktok(er)?|youtuber|streamer|"
    r"twitch|cosplayer|singer|idol|pornstar|porn star|e-?girl|irl|in real life|real person|real people|"
    r"lookalike|look-alike|likeness|famous|tv host|news anchor|newscaster|model of (her|him))\b",
    re.IGNORECASE,
)
_REALISM = re.compile(r"\b(realistic|photo-?realistic|photo(graph)?|portrait|real|hyper-?real(istic)?|raw photo)\b",
                      re.IGNORECASE)
_FICTION_OR_STYLE = re.compile(r"\b(style|styles|art ?style|concept|character|anime|manga|cartoon|game|video ?game|disney|"
                               r"pokemon|vtuber|fictional|oc|original character|fantasy|landscape|background|object|"
                               r"clothing|outfit|pose|slider|tool)\b", re.IGNORECASE)
_HANDLE = re.compile(r"(?<![\w@])@([A-Za-z0-9_.]{3,30})\b")
_CAPITALISED_PAIR = re.compile(r"\b([A-Z][a-z]{2,})[ _-]([A-Z][a-z]{2,})\b")
# Capitalised pairs that are not people's names (styles, concepts, model jargon).
_NOT_NAMES = {
    "lora", "locon", "lycoris", "style", "styles", "anime", "realistic", "photo", "photorealistic", "portrait",
    "cinematic", "film", "pixel", "art", "ink", "wash", "retro", "neon", "noir", "watercolor", "isometric",
    "rooms", "tiny", "robots", "cyber", "jacket", "botanical", "poster", "castle", "interiors", "vintage", "cars",
    "armor", "concept", "character", "detail", "details", "tweaker", "slider", "pony", "flux", "sdxl", "model",
    "checkpoint", "merge", "mix", "test", "version", "final", "beta", "alpha", "base", "lighting", "light",
    "dark", "fantasy", "landscape", "city", "street", "night", "day", "studio", "quality", "high", "ultra",
    "super", "mega", "epic", "dream", "shaper", "real", "vision", "deliberate", "juggernaut", "illustrious",
    "krea", "stable", "diffusion", "negative", "embedding", "textual", "inversion", "woman", "women", "man",
    "men", "girl", "girls", "boy", "boys", "lady", "hair", "eyes", "skin", "body", "face", "clothing", "outfit",
    "dress", "uniform", "new", "old", "big", "small", "cute", "sexy", "hot", "nsfw", "sfw",
}  # fmt: skip


@dataclass(frozen=True)
class KnownPerson:
    """What the text matcher needs of a registered person (from the registry; never stored here)."""

    person_id: str
    names: tuple[str, ...]  # display name first, then aliases and other spellings
    handles: tuple[str, ...] = ()


@dataclass
class TextSignal:
    kind: str  # a key of STRENGTH
    field: str  # which field: one of UPLOADER_FIELDS or FILE_FIELDS
    text: str  # the text that matched, as found
    detail: str  # how it matched
    strength: float
    person_id: str | None = None

    @property
    def inside_file(self) -> bool:
        return self.field in FILE_FIELDS

    def as_dict(self) -> dict:
        return {**asdict(self), "inside_file": self.inside_file}


@dataclass
class _Prepared:
    person: KnownPerson
    names: list[tuple[str, str, str]] = field(default_factory=list)  # (original, folded, folded without spaces)
    handles: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)  # (original, pattern in lower-case ASCII)


class NameMatcher:
    """Text signals for many models against the same people (names are prepared once)."""

    def __init__(self, people: Iterable[KnownPerson] = ()) -> None:
        self._people = [self._prepare(person) for person in people]

    @staticmethod
    def _prepare(person: KnownPerson) -> _Prepared:
        p = _Prepared(person)
        for name in person.names:
            folded = fold(name)
            if folded:
                p.names.append((name, folded, folded.replace(" ", "")))
        for handle in person.handles:
            bare = anyascii(handle).lower().lstrip("@")
            if len(bare) >= 4:
                p.handles.append((handle, re.compile(rf"(?<![a-z0-9_.])@?{re.escape(bare)}(?![a-z0-9_])")))
        return p

    def signals(self, fields: Sequence[tuple[str, str]]) -> list[TextSignal]:
        """Every signal in ``fields`` ((field name, text) pairs), strongest first."""
        found: list[TextSignal] = []
        for name, text in fields:
            if text:
                found += self._registered(name, text)
                found += _generic(name, text)
        return _dedupe(sorted(found, key=lambda s: -s.strength))

    def _registered(self, field_name: str, text: str) -> list[TextSignal]:
        folded = fold(text)
        if not folded:
            return []
        padded, joined, words = f" {folded} ", folded.replace(" ", ""), folded.split()
        lower = anyascii(text).lower()
        out = []
        for p in self._people:
            hit = None
            for original, name, name_joined in p.names:
                if f" {name} " in padded:
                    hit = ("registered-name", f"name or alias {original!r} as a phrase")
                    break
                if len(name_joined) >= JOINED_MIN_LENGTH and name_joined in joined:
                    hit = ("registered-name", f"name or alias {original!r} written without separators")
                    break
                n = len(name.split())
                windows = (" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1)))
                best = max((fuzz.ratio(name, w) for w in windows), default=0)
                if hit is None and len(name) >= JOINED_MIN_LENGTH and best >= FUZZY_MIN:
                    hit = ("registered-name-fuzzy", f"name or alias {original!r}, fuzzy {best:.0f} >= {FUZZY_MIN}")
            for original, pattern in p.handles:
                if hit is None and pattern.search(lower):
                    hit = ("registered-handle", f"handle {original!r}")
            if hit:
                kind, detail = hit
                out.append(TextSignal(kind, field_name, text[:200], detail, STRENGTH[kind], p.person.person_id))
        return out


def text_signals(fields: Sequence[tuple[str, str]], people: Iterable[KnownPerson] = ()) -> list[TextSignal]:
    """Every signal in ``fields`` against ``people``, strongest first (see :class:`NameMatcher`)."""
    return NameMatcher(people).signals(fields)


def _generic(field_name: str, text: str) -> list[TextSignal]:
    out = []
    for m in _CUES.finditer(text):
        out.append(TextSignal("real-person-cue", field_name, m.group(0), "real-person word", STRENGTH["real-person-cue"]))
        break
    if field_name in UPLOADER_FIELDS:
        m = _REALISM.search(text)
        if m:
            out.append(TextSignal("realism-cue", field_name, m.group(0), "realism word", STRENGTH["realism-cue"]))
        m = _FICTION_OR_STYLE.search(text)
        if m:
            out.append(TextSignal("fiction-or-style", field_name, m.group(0), "a style, concept or fictional-character word",
                                  STRENGTH["fiction-or-style"]))  # fmt: skip
    if field_name in ("title", "training folder", "output name", "modelspec title"):
        plain = anyascii(text)
        for m in _CAPITALISED_PAIR.finditer(plain.replace("_", " ").title() if field_name != "title" else plain):
            first, last = m.group(1), m.group(2)
            if first.lower() not in _NOT_NAMES and last.lower() not in _NOT_NAMES:
                out.append(TextSignal("person-name", field_name, m.group(0), "looks like a first and last name",
                                      STRENGTH["person-name"]))  # fmt: skip
                break
        if field_name == "title":
            for m in _HANDLE.finditer(text):
                out.append(TextSignal("handle-title", field_name, m.group(0), "a social-media handle", STRENGTH["handle-title"]))
                break
    return out


def _dedupe(signals: list[TextSignal]) -> list[TextSignal]:
    """One signal per (kind, field, person), the strongest."""
    seen, out = set(), []
    for s in signals:
        key = (s.kind, s.field, s.person_id)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out
