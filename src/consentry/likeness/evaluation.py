"""The offline evaluation set for the text and in-file signals, and the scoring of them.

Synthetic model metadata, seeded: likeness LoRAs of fictional people — some registered, some
not — written the ways uploaders write them (the name in the title, only in the trigger words,
misspelt, in another script, as a handle, hidden behind a title like "LORA" while the kohya
training folder or output name inside the file names the person), and hard negatives: styles,
concepts, fictional characters, capitalised two-word titles that are not names ("Neon Noir",
"Blade Runner"), and metadata without names. Every case carries its truth: whether it shows a
real person and which registered one. Everyone named here is fictional.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from consentry.likeness.assess import POSSIBLE, Assessor, LikenessReport, RegisteredPerson
from consentry.likeness.sources import Subject

REGISTERED = [("reg-1", "Mira Castellan", ("Мира Кастеллан",), ("@mira.cas",)),
              ("reg-2", "Ilse Verhoeven", (), ("@ilsev_official",)),
              ("reg-3", "Katya Marchetti", ("Катя Марчетти", "Katia Marchetti"), ()),
              ("reg-4", "Nella Okafor", (), ("@nellaokafor",))]  # fmt: skip
UNREGISTERED = ["Anouk Lindqvist", "Liora Halloran", "Selma Drozdova", "Yusuf Pereira", "Dario Nakamura", "Orla Brennan",
                "Tamsin Achterberg", "Paloma Reyes"]  # fmt: skip
STYLES = ["Neon Noir", "Ink Wash", "Retro Anime", "Cinematic Film", "Watercolor Dreams", "Pixel Art", "Isometric Rooms",
          "Blade Runner", "Studio Ghibli", "Dark Fantasy", "Castle Interiors", "Vintage Cars", "Tiny Robots", "Cyber Jacket",
          "Botanical Poster", "Art Nouveau", "Film Grain", "Golden Hour", "Low Poly", "Paper Cutout"]  # fmt: skip
CHARACTERS = ["Pocahontas - Disney", "Sailor Moon", "Geralt", "Lara Croft", "Princess Zelda", "Kratos", "Master Chief"]


@dataclass
class Case:
    subject: Subject
    real_person: bool
    person_id: str | None  # the registered person it reproduces, if any
    variant: str  # how the case was written


def people() -> list[RegisteredPerson]:
    return [RegisteredPerson(pid, name, (name, *aliases), handles) for pid, name, aliases, handles in REGISTERED]


def _kohya(folder: str, output: str) -> list[tuple[str, str]]:
    return [("training folder", folder), ("output name", output), ("caption tags", f"{folder.split('_', 1)[-1]}, 1girl, smiling")]


def cases(seed: int = 0, per_variant: int = 12) -> list[Case]:
    rng = random.Random(seed)
    out: list[Case] = []

    def add(variant: str, real: bool, pid: str | None, fields: list[tuple[str, str]]) -> None:
        out.append(Case(Subject(ref=f"{variant}-{len(out)}", title=fields[0][1] if fields else "", fields=fields), real, pid, variant))

    for _ in range(per_variant):
        pid, name, aliases, handles = rng.choice(REGISTERED)
        first, last = name.split()
        joined = (first + last).lower()
        add("registered: name in title", True, pid, [("title", f"{name} - {rng.choice(['realistic', 'SDXL', 'v2', 'likeness'])}")])
        add("registered: only trigger words", True, pid, [("title", f"{rng.choice(['Portrait', 'Realistic'])} LoRA v{rng.randint(1, 4)}"),
                                                          ("trigger words", f"{joined[:7]}, {name.lower()}")])
        add("registered: title hides it, folder names her", True, pid,
            [("title", rng.choice(["LORA", "Test model", "lora-v1", "model"]))] + _kohya(f"10_{joined}", "last"))
        add("registered: output name only", True, pid, [("title", "LORA"), ("output name", f"{first.lower()}_{last.lower()}_v1")])
        add("registered: misspelt", True, pid, [("title", f"{first} {last[:-2] + last[-1]} realistic")])
        if aliases:
            add("registered: other script", True, pid, [("title", f"{aliases[0]} SDXL")])
        if handles:
            add("registered: handle in description", True, pid, [("title", "Realistic girl"),
                                                                ("description", f"trained on photos from {handles[0]}")])
        other = rng.choice(UNREGISTERED)
        add("unregistered: name in title", True, None, [("title", f"{other} - realistic")])
        add("unregistered: folder names her", True, None, [("title", "LORA")] + _kohya(f"12_{other.lower()}", other.replace(" ", "_")))
        add("unregistered: celebrity cue", True, None, [("title", f"{rng.choice(['Famous actress', 'Instagram influencer', 'Streamer girl'])} v1"),
                                                         ("tags", "celebrity, woman, realistic")])
        style = rng.choice(STYLES)
        add("negative: style", False, None, [("title", f"{style} Style"), ("tags", "style, art"), ("trigger words", style.lower())])
        add("negative: style with kohya metadata", False, None,
            [("title", f"{style} LoRA")] + _kohya(f"20_{style.lower().replace(' ', '')}", style.lower().replace(" ", "_")))
        add("negative: fictional character", False, None, [("title", rng.choice(CHARACTERS)), ("tags", "character, anime")])
        add("negative: no metadata", False, None, [("title", rng.choice(["LORA", "Test model", "lora-v1"]))])
    return out


@dataclass
class SignalScore:
    name: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def add(self, predicted: bool, truth: bool) -> None:
        if predicted and truth:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1


@dataclass
class TextEvaluation:
    cases: int
    signals: dict[str, SignalScore] = field(default_factory=dict)  # "real person" by each signal kind alone
    verdict_real: SignalScore = field(default_factory=lambda: SignalScore("verdict: a real person (likely or registered)"))
    verdict_person: SignalScore = field(default_factory=lambda: SignalScore("verdict: the right registered person"))
    by_variant: dict[str, tuple[int, int]] = field(default_factory=dict)  # variant -> (right, total)


def evaluate_text(seed: int = 0, per_variant: int = 12, *, assessor: Assessor | None = None,
                  sample: Sequence[Case] | None = None) -> tuple[TextEvaluation, list[tuple[Case, LikenessReport]]]:  # fmt: skip
    assessor = assessor or Assessor(people())
    items = list(sample or cases(seed, per_variant))
    result = TextEvaluation(cases=len(items))
    reports = []
    kinds = ("registered-name", "registered-name-fuzzy", "registered-handle", "person-name", "real-person-cue", "handle-title")
    for kind in kinds:
        result.signals[kind] = SignalScore(kind)
    for case in items:
        report = assessor.assess(case.subject)
        reports.append((case, report))
        fired = {s["kind"] for s in report.signals} | {s["kind"] for p in report.people for s in p.signals}
        for kind in kinds:
            result.signals[kind].add(kind in fired, case.real_person)
        says_real = report.verdict not in (POSSIBLE, "no sign of a real person") and report.score >= 0.5
        result.verdict_real.add(says_real, case.real_person)
        named = report.people[0].person_id if report.people and report.verdict.startswith("reproduces") else None
        if case.person_id or named:
            result.verdict_person.add(named == case.person_id and named is not None, case.person_id is not None)
        right = (named == case.person_id) and (says_real == case.real_person)
        ok, total = result.by_variant.get(case.variant, (0, 0))
        result.by_variant[case.variant] = (ok + right, total + 1)
    return result, reports
