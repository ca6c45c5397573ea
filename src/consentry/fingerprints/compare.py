"""Compare two fingerprints: is B a copy of A, derived from A, or does B contain A (a merge)?

Scores (all over the modules both models have, computed from sketches only):

* identity — cosine of the whole ΔW (Σ⟨ΔA,ΔB⟩ / ‖ΔA‖‖ΔB‖); scale-free, so alpha or strength
  changes do not move it; 1 for renamed, re-factorised or re-cast copies.
* containment — the same cosine restricted to A's top singular directions in every module: B's
  other content (LoRAs merged beside A) mostly falls outside them, A's own part does not.
* coefficient — least-squares c in ΔB ≈ c·ΔA along those directions: the merge weight (kohya's
  default up/down merge gives ratio², an alpha rescale gives the scale factor).
* coverage — share of A's modules present in B (``energy_coverage``: share of A's ‖ΔW‖²).

A checkpoint given as A and a LoRA as B is compared the other way round (is the LoRA merged into
the checkpoint?): ``swapped`` is then true, the scores are of B against A, and a ``contains``
verdict reads "A contains B". Notes of both fingerprints are carried into the comparison.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from consentry.fingerprints.model import BASE_DIFFERENCE_LIMIT, KIND_DELTA, KIND_LORA, Fingerprint
from consentry.fingerprints.sketch import SKETCH_SIDE

SAME, DERIVED, CONTAINS, UNRELATED, COULD_NOT = "same", "derived", "contains", "unrelated", "could not compare"
# "contains" from a few modules is chance: unrelated LoRAs sharing one module name reached the
# containment threshold in 5 of 60 pairs; a merged LoRA shares dozens (a sampled checkpoint: 40+)
MIN_CONTAINS_MODULES = 4
_TOP_DIRECTIONS = 4  # singular directions of A kept per module for containment


@dataclass(frozen=True)
class Thresholds:
    """Calibrated by ``bench/fingerprint_robustness.py`` (negatives: independently trained LoRAs)."""

    same: float = 0.97  # identity at or above: a copy (format, dtype, re-factorisation, alpha)
    derived: float = 0.45  # identity at or above: derived (resized, further trained, A dominating a merge)
    contains: float = 0.30  # containment at or above, with identity >= detect: A is merged into B
    detect: float = 0.08  # identity floor for any positive verdict
    full_coverage: float = 0.9  # share of A's modules (and of its ‖ΔW‖²) B must have for "same"


DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class Comparison:
    verdict: str
    reason: str
    identity: float | None = None
    containment: float | None = None
    coefficient: float | None = None
    coverage: float | None = None
    energy_coverage: float | None = None
    b_energy_coverage: float | None = None  # share of B's ‖ΔW‖² in the modules it shares with A
    norm_ratio: float | None = None
    identity_z: float | None = None
    common_modules: int = 0
    a_modules: int = 0
    b_modules: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)
    agree_most: list[dict[str, Any]] = field(default_factory=list)
    agree_least: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    swapped: bool = False  # A was a checkpoint and B a LoRA: scores are of B (the LoRA) within A

    @property
    def related(self) -> bool:
        return self.verdict in (SAME, DERIVED, CONTAINS)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def could_not_compare(reason: str, **extra: Any) -> Comparison:
    return Comparison(verdict=COULD_NOT, reason=reason, thresholds=asdict(DEFAULT_THRESHOLDS), **extra)


def compare(a: Fingerprint, b: Fingerprint, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Comparison:
    """Is B a copy or derivative of A, or is A merged into B? Never a silent "unrelated": anything
    that prevents a comparison gives verdict ``could not compare`` with the reason."""
    if a.kind == KIND_DELTA and b.kind == KIND_LORA:  # "does this checkpoint contain that LoRA?", asked backwards
        result = _compare(b, a, thresholds, labels=("B", "A"))
        result.swapped = True
        result.notes.insert(0, "A is a checkpoint and B a LoRA: compared as whether B is merged into A "
                               "(scores, coverage and module counts are of B against A)")  # fmt: skip
        if result.verdict == CONTAINS:
            result.reason = "A contains B: " + result.reason
        return result
    return _compare(a, b, thresholds, labels=("A", "B"))


def _compare(a: Fingerprint, b: Fingerprint, thresholds: Thresholds, labels: tuple[str, str]) -> Comparison:
    la, lb = labels
    notes = [f"{label}: {note}" for label, fp in ((la, a), (lb, b)) for note in fp.notes]
    counts = {"a_modules": a.module_count, "b_modules": b.module_count, "notes": notes}
    if a.version != b.version:
        return could_not_compare(f"fingerprint versions differ (v{a.version} vs v{b.version}): recompute one", **counts)
    for label, fp in ((la, a), (lb, b)):
        if fp.kind == KIND_DELTA and fp.relative_difference is not None and not fp.relative_difference <= BASE_DIFFERENCE_LIMIT:
            return could_not_compare(f"{label}: base {fp.base} does not look like this model's base "
                                     f"(relative difference {fp.relative_difference:.3g} > {BASE_DIFFERENCE_LIMIT})", **counts)  # fmt: skip
    if a.family and b.family and a.family != b.family:
        return could_not_compare(f"different architectures: {la} is {a.family}, {lb} is {b.family}", **counts)
    b_index = b.index_of()
    pairs = [(i, b_index[name]) for i, name in enumerate(a.names) if name in b_index]
    if not pairs:
        return could_not_compare(f"no module in common ({la}: {_components(a)}; {lb}: {_components(b)})", **counts)
    pa, pb = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    fits = (a.shapes[pa] == b.shapes[pb]).all(axis=1)  # vectorised: `similar` compares one query with many
    if not fits.all():
        i, j = pa[~fits][0], pb[~fits][0]
        notes.append(f"{int((~fits).sum())} shared modules differ in shape, e.g. {a.names[i]} {_shape(a.shapes[i])} vs {_shape(b.shapes[j])}")
    if not fits.any():
        return could_not_compare(f"every shared module differs in shape ({notes[-1]})", **counts)
    ia, ib = pa[fits], pb[fits]
    sa, sb = a.sketches[ia].astype(np.float64), b.sketches[ib].astype(np.float64)
    na, nb = (sa * sa).sum(axis=(1, 2)), (sb * sb).sum(axis=(1, 2))
    total_a = float((a.sketches.astype(np.float64) ** 2).sum())
    total_b = float((b.sketches.astype(np.float64) ** 2).sum())
    if total_a == 0 or na.sum() == 0:
        return could_not_compare(f"{la} has no weight delta in the shared modules (an untrained or all-zero LoRA?)", **counts)
    if nb.sum() == 0:
        return could_not_compare(f"{lb} has no weight delta in the shared modules", **counts)
    dots = (sa * sb).sum(axis=(1, 2))
    identity = float(dots.sum() / np.sqrt(na.sum() * nb.sum()))
    sigma = float(np.sqrt((na * nb).sum()) / SKETCH_SIDE / np.sqrt(na.sum() * nb.sum()))
    u, s, vt = a.directions(_TOP_DIRECTIONS)
    containment, coefficient = _containment(u[ia], s[ia], vt[ia], sb)
    result = Comparison(
        verdict=UNRELATED, reason="", identity=identity, containment=containment, coefficient=coefficient,
        coverage=len(ia) / a.module_count, energy_coverage=float(na.sum() / total_a),
        b_energy_coverage=float(nb.sum() / total_b) if total_b else None,
        norm_ratio=float(np.sqrt(nb.sum() / na.sum())), identity_z=identity / sigma if sigma else None,
        common_modules=len(ia), thresholds=asdict(thresholds), **counts,
    )  # fmt: skip
    _agreement(result, [a.names[i] for i in ia], dots, na, nb)
    result.verdict, result.reason = _verdict(result, a, b, thresholds, labels)
    return result


def _containment(u: np.ndarray, s: np.ndarray, vt: np.ndarray, sb: np.ndarray) -> tuple[float, float]:
    """B projected on A's top singular directions per module; cosine there and the coefficient."""
    keep = s > s[:, :1] * 1e-4  # directions A really has (a rank-1 LoRA has one)
    pa = s * keep
    pb = np.matmul(np.matmul(u.transpose(0, 2, 1), sb), vt.transpose(0, 2, 1))  # k×k block per module
    pb = pb * keep[:, :, None] * keep[:, None, :]
    dot = float((pa * np.diagonal(pb, axis1=1, axis2=2)).sum())
    norm_a = float((pa * pa).sum())
    norm_b = float((pb * pb).sum())
    if norm_a == 0 or norm_b == 0:
        return 0.0, 0.0
    return dot / np.sqrt(norm_a * norm_b), dot / norm_a


def _verdict(r: Comparison, a: Fingerprint, b: Fingerprint, t: Thresholds, labels: tuple[str, str]) -> tuple[str, str]:
    la, lb = labels
    ident, cont = r.identity or 0.0, r.containment or 0.0
    merged_into_model = b.kind == KIND_DELTA and a.kind == KIND_LORA
    if merged_into_model and ident >= t.detect and (cont >= t.contains or ident >= t.derived):
        return CONTAINS, f"{la}'s delta is in {lb}'s difference from its base with coefficient {r.coefficient:.3f}"
    full = min(r.coverage or 0, r.energy_coverage or 0) >= t.full_coverage
    # B = A plus modules A lacks (A joined with another LoRA): a copy of A inside B, not "same"
    b_has_more = b.kind == KIND_LORA and (r.b_energy_coverage if r.b_energy_coverage is not None else 1) < t.full_coverage
    if ident >= t.same and full and b_has_more:
        return CONTAINS, (f"all of {la}'s delta is in {lb} (identity {ident:.3f} on the shared modules), but "
                          f"{1 - r.b_energy_coverage:.0%} of {lb}'s delta is in {b.module_count - r.common_modules} "
                          f"module(s) {la} lacks: {la} joined with other weights, coefficient {r.coefficient:.3f}")  # fmt: skip
    if ident >= t.same and full:
        scale = "" if abs((r.norm_ratio or 1) - 1) < 0.02 else f" (scaled by {r.norm_ratio:.3f}: alpha or strength changed)"
        return SAME, f"same weight delta{scale}"
    if ident >= t.same:
        return DERIVED, (f"same weights on the shared modules, but {lb} has only {r.coverage:.0%} of {la}'s modules "
                         f"({r.energy_coverage:.0%} of its delta)")  # fmt: skip
    if ident >= t.derived:
        return DERIVED, f"most of {lb}'s delta is {la}'s (identity {ident:.3f} >= {t.derived}): resized, further trained or lightly merged"
    if ident <= -t.derived:  # -A applied at weight -1 is A: a trick to pass as unrelated
        return DERIVED, (f"{lb} is {la} with its sign flipped (identity {ident:.3f} <= -{t.derived}): "
                         "used at a negative weight it is the same delta")  # fmt: skip
    if ident >= t.detect and cont >= t.contains:
        if r.common_modules < min(MIN_CONTAINS_MODULES, a.module_count):
            return UNRELATED, (f"containment {cont:.3f} on only {r.common_modules} shared module(s): fewer than "
                               f"{MIN_CONTAINS_MODULES}, too few to tell a merge from chance")  # fmt: skip
        return CONTAINS, f"{la} is a component of {lb} (containment {cont:.3f} >= {t.contains}, coefficient {r.coefficient:.3f})"
    return UNRELATED, f"identity {ident:.3f} < {t.detect} or containment {cont:.3f} < {t.contains}"


def _agreement(result: Comparison, names: list[str], dots: np.ndarray, na: np.ndarray, nb: np.ndarray, top: int = 5) -> None:
    share = na / na.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((na > 0) & (nb > 0), dots / np.sqrt(na * nb), 0.0)
    notable = np.flatnonzero(share >= 0.25 / len(names)) if len(names) > 1 else np.arange(len(names))
    order = notable[np.argsort(-cos[notable])]
    row = lambda i: {"module": names[i], "cosine": round(float(cos[i]), 4), "share_of_a": round(float(share[i]), 4)}  # noqa: E731
    result.agree_most = [row(i) for i in order[:top]]
    result.agree_least = [row(i) for i in order[::-1][:top]]


def _shape(shape: np.ndarray) -> tuple[int, ...]:
    return tuple(int(n) for n in shape)  # (32, 48), not (np.int64(32), np.int64(48))


def _components(fp: Fingerprint) -> str:
    parts = sorted({name.split("_", 1)[0] for name in fp.names})
    return ", ".join(parts) + f", {fp.module_count} modules"
