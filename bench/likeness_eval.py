"""The likeness evaluation: precision and recall per signal and for the combined verdict.

Three parts, all offline (the sets are built from packages and seeded generators):

1. text and in-file signals on synthetic model metadata (``consentry.likeness.evaluation``):
   registered people written every way uploaders write them, unregistered ones, hard negatives;
2. faces on the image set (``consentry.images.eval_set``): detection, same-person distances,
   identification against a registry of the subjects' originals, lfw_subset;
3. the combined verdict on synthetic models whose previews are those images: a "LORA" whose
   previews show registered subject A, one showing unregistered subject B (one identity
   dominating), one with three different faces, style models without faces, and text-only cases.

    python bench/likeness_eval.py [--no-lfw]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from consentry.images.eval_set import AUGMENTATIONS, augment, evaluate_faces, subject_photos
from consentry.likeness.assess import REGISTERED, Assessor, RegisteredPerson
from consentry.likeness.evaluation import SignalScore, evaluate_text, people
from consentry.likeness.sources import Preview, Subject
from consentry.store.images import StoredAnalysis, StoredFace


def row(s: SignalScore) -> str:
    return f"| {s.name} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.3f} | {s.recall:.3f} |"


def text_part() -> None:
    result, _ = evaluate_text(seed=0, per_variant=25)
    print(f"## 1. text and in-file signals ({result.cases} synthetic models)\n")
    print("| signal: says 'a real person' on its own | TP | FP | FN | precision | recall |\n|---|---|---|---|---|---|")
    for s in result.signals.values():
        print(row(s))
    print(row(result.verdict_real))
    print(row(result.verdict_person))
    print("\n| how the case was written | right |\n|---|---|")
    for variant, (ok, n) in sorted(result.by_variant.items()):
        print(f"| {variant} | {ok}/{n} |")


def analyses(images: list[np.ndarray]) -> list[StoredAnalysis]:
    from consentry.images.analysis import analyse_image

    out = []
    for i, rgb in enumerate(images):
        a = analyse_image(rgb, name=f"img{i}")
        faces = [StoredFace(j, f.box, f.score, f.embedding) for j, f in enumerate(a.faces)]
        out.append(StoredAnalysis(i, f"img{i}", None, None, None, None, a.width, a.height, a.faces_total, a.nsfw, a.pdq,
                                  a.pdq_quality, a.problem, "", faces))  # fmt: skip
    return out


def combined_part() -> None:
    from consentry.images.faces import detect_faces

    photos = subject_photos()
    registry = people() + [RegisteredPerson("subject-A", "Subject A", ("Subject A",), (),
                                            (detect_faces(photos["A"])[0].embedding,))]  # fmt: skip
    assessor = Assessor(registry)
    flat = [np.full((256, 256, 3), v, np.uint8) for v in (30, 90, 150, 210)]
    looks = [a for a in AUGMENTATIONS if a != "original"]
    cases = []  # (title fields, previews, truth: real person?, truth person id)
    for k in range(4):
        cases.append(([("title", "LORA")], [augment(photos["A"], looks[(k + i) % len(looks)]) for i in range(4)], True, "subject-A"))
        cases.append(([("title", "Test model")], [augment(photos["B"], looks[(k + i) % len(looks)]) for i in range(4)], True, None))
        cases.append(([("title", "Mixed gallery")], [augment(photos[s], looks[k]) for s in ("A", "B", "C")] + [flat[k]], False, None))
        cases.append(([("title", "Ink Wash Style"), ("tags", "style")], [augment(f, "jpeg q30") for f in flat], False, None))
        cases.append(([("title", "lora-v1")], [], False, None))
    real, person = SignalScore("verdict: a real person"), SignalScore("verdict: the right registered person")
    faces_signal, dominant_signal = SignalScore("registered-face"), SignalScore("dominant-identity")
    for fields, images, is_real, person_id in cases:
        analysed = analyses(images)
        report = assessor.assess(Subject(ref="case", title=fields[0][1], fields=fields,
                                         previews=[Preview(ref=a.ref) for a in analysed]), analysed)  # fmt: skip
        named = report.people[0].person_id if report.verdict.startswith(REGISTERED) else None
        real.add(report.score >= 0.5, is_real)
        if person_id or named:
            person.add(named == person_id and named is not None, person_id is not None)
        kinds = {s["kind"] for s in report.signals} | {s["kind"] for p in report.people for s in p.signals}
        faces_signal.add("registered-face" in kinds, person_id is not None)
        dominant_signal.add("dominant-identity" in kinds, is_real)
    print(f"\n## 3. the combined verdict on models with previews ({len(cases)} models)\n")
    print("| signal / verdict | TP | FP | FN | precision | recall |\n|---|---|---|---|---|---|")
    for s in (faces_signal, dominant_signal, real, person):
        print(row(s))


def face_part(lfw: bool) -> None:
    e = evaluate_faces(lfw_pairs=lfw)
    d, i = e.detection, e.identity
    print(f"\n## 2. faces ({d.images} images)\n")
    print(f"- detection (an image with a face found): precision {d.precision:.3f}, recall {d.recall:.3f} "
          f"(TP {d.true_positives}, FP {d.false_positives}, FN {d.false_negatives}, TN {d.true_negatives}); by group: "
          + ", ".join(f"{g} {v['detected']}/{v['images']}" for g, v in d.by_group.items()))  # fmt: skip
    print(f"- same subject distances: {i.same.min:.3f}-{i.same.max:.3f} (median {i.same.median:.3f}, {i.same.pairs} pairs); "
          f"different subjects: {i.different.min:.3f}-{i.different.max:.3f} (median {i.different.median:.3f}, {i.different.pairs} pairs)")
    print(f"- at the threshold {i.threshold}: pair precision {i.pair_precision:.3f}, recall {i.pair_recall:.3f}; "
          f"identification against the subjects' originals: precision {i.identification_precision:.3f}, "
          f"recall {i.identification_recall:.3f}; lfw faces matching a subject: {i.lfw_faces_matching_a_subject}")  # fmt: skip
    if i.lfw_pairs_under:
        print("- lfw_subset pairs under each threshold: " + ", ".join(f"{k}: {v:.2%}" for k, v in i.lfw_pairs_under.items()))
    for caveat in e.caveats:
        print(f"- caveat: {caveat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-lfw", action="store_true", help="skip embedding the lfw_subset faces (about 8 s)")
    args = parser.parse_args()
    started = time.perf_counter()
    text_part()
    face_part(not args.no_lfw)
    combined_part()
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
