"""The Fingerprint object and its compact, pickle-free serialisation."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from consentry.fingerprints.errors import FingerprintError
from consentry.fingerprints.sketch import SKETCH_SIDE, SKETCH_VERSION, model_vector

_MAGIC = b"CFP1"
KIND_LORA = "lora"
KIND_DELTA = "checkpoint-delta"

# Largest plausible ‖W − W₀‖ / ‖W₀‖ (Frobenius, over the compared matrices of one component) between
# a model and its real base. Merging a LoRA into an SD-sized model moves weights by a few per cent
# (‖ΔW‖/‖W₀‖ ≈ 0.03 is the usual order; an estimate, not measured here); full fine-tunes (Adam at
# 1e-6–1e-5) stay around that to ~0.1 (also an estimate). The one measurement here is the worst
# case: bench/fingerprint_robustness.py's tiny models, where a rank-8 LoRA trained at lr 2e-3 is
# proportionally huge, merged at 1.0, measure median 0.17 and max 0.24 over 100 merges. Two weight
# sets that do not share a base differ by about √2 ≈ 1.41 (independent, equal norms; that bench's
# wrong base: 1.43) and still by 0.71 when their weights have cosine 0.75. 0.5 is cos(W, W₀) ≈ 0.875
# at equal norms: 2× above the strongest merge measured, ~3× below a wrong base. A model retrained
# that far from a base (a Pony or Illustrious against SDXL) has a base of its own: register that one.
BASE_DIFFERENCE_LIMIT = 0.5


@dataclass
class Fingerprint:
    """Per-module sketches of a model's weight delta (a LoRA's ΔW, or a checkpoint minus its base)."""

    kind: str  # "lora" or "checkpoint-delta"
    family: str | None
    key_format: str | None
    names: list[str]  # canonical module names, sorted
    shapes: np.ndarray  # (n, 2) rows, flattened columns of each module's ΔW
    sketches: np.ndarray  # (n, P, P) float32
    ranks: np.ndarray  # (n,) LoRA rank, 0 for dense deltas
    base: str | None = None  # registered base model name (checkpoint deltas)
    relative_difference: float | None = None  # ‖W − W₀‖/‖W₀‖ over the compared matrices (checkpoint deltas)
    notes: list[str] = field(default_factory=list)
    version: int = SKETCH_VERSION
    source: str | None = None
    _directions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def directions(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k singular vectors and values of every module's sketch (cached: ``similar``
        compares one query with many stored fingerprints)."""
        if self._directions is None or self._directions[1].shape[1] != k:
            u, s, vt = np.linalg.svd(self.sketches.astype(np.float64))
            self._directions = (u[:, :, :k], s[:, :k], vt[:, :k, :])
        return self._directions

    @property
    def module_count(self) -> int:
        return len(self.names)

    def vector(self) -> np.ndarray:
        """Unit D-vector for the nearest-neighbour index."""
        return model_vector(self.names, self.sketches)

    def index_of(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def summary(self) -> dict[str, Any]:
        ranks = [int(r) for r in self.ranks if r]
        return {
            "kind": self.kind,
            "family": self.family,
            "key_format": self.key_format,
            "module_count": self.module_count,
            "rank": max(set(ranks), key=ranks.count) if ranks else None,
            "base": self.base,
            "relative_difference": self.relative_difference,
            "fingerprint": f"per-module random-projection sketch {SKETCH_SIDE}x{SKETCH_SIDE} of ΔW, v{self.version}",
            "notes": list(self.notes),
        }

    # --- serialisation: magic, u32 header length, JSON header, float32 sketches -------------

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "kind": self.kind, "family": self.family, "key_format": self.key_format, "names": self.names,
            "shapes": self.shapes.astype(int).tolist(), "ranks": self.ranks.astype(int).tolist(), "base": self.base,
            "relative_difference": self.relative_difference, "notes": self.notes, "version": self.version, "side": SKETCH_SIDE,
        }).encode()  # fmt: skip
        body = np.ascontiguousarray(self.sketches, dtype="<f4").tobytes()
        return _MAGIC + struct.pack("<I", len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes, source: str | None = None) -> "Fingerprint":
        if data[:4] != _MAGIC:
            raise FingerprintError("stored fingerprint is not in a known format")
        (n,) = struct.unpack("<I", data[4:8])
        header = json.loads(data[8 : 8 + n])
        side = header["side"]
        count = len(header["names"])
        sketches = np.frombuffer(data[8 + n :], dtype="<f4").reshape(count, side, side).copy()
        return cls(
            kind=header["kind"], family=header["family"], key_format=header["key_format"], names=header["names"],
            shapes=np.asarray(header["shapes"], dtype=np.int64).reshape(count, 2),
            ranks=np.asarray(header["ranks"], dtype=np.int64), sketches=sketches, base=header["base"],
            relative_difference=header.get("relative_difference"), notes=header["notes"], version=header["version"], source=source,
        )  # fmt: skip


def assemble(kind: str, family: str | None, key_format: str | None, rows: list[tuple[str, tuple[int, int], int, np.ndarray]],
             base: str | None = None, notes: list[str] | None = None, source: str | None = None,
             relative_difference: float | None = None) -> Fingerprint:
    """Build a Fingerprint from (name, shape, rank, sketch) rows; refuses duplicates and NaN/inf."""
    rows = sorted(rows, key=lambda r: r[0])
    for (a, *_), (b, *_) in zip(rows, rows[1:]):
        if a == b:
            raise FingerprintError(f"module {a} appears twice under different keys (mixed key formats in one file?)")
    for name, _shape, _rank, sk in rows:
        if not np.isfinite(sk).all():
            raise FingerprintError(f"module {name}: NaN or infinite weights")
    side = SKETCH_SIDE
    return Fingerprint(
        kind=kind, family=family, key_format=key_format, names=[r[0] for r in rows],
        shapes=np.asarray([r[1] for r in rows], dtype=np.int64).reshape(len(rows), 2),
        ranks=np.asarray([r[2] for r in rows], dtype=np.int64),
        sketches=np.asarray([r[3] for r in rows], dtype=np.float32).reshape(len(rows), side, side),
        base=base, notes=list(notes or []), source=source, relative_difference=relative_difference,
    )  # fmt: skip


def join_fingerprints(prints: list[Fingerprint], source: str | None = None) -> Fingerprint:
    """One fingerprint for a model saved as several files, one per component (PEFT writes one
    adapter per model: ``unet/adapter_model.safetensors`` and ``text_encoder/adapter_model.safetensors``).
    Refuses a module present in two parts and parts of different families or kinds."""
    if not prints:
        raise FingerprintError("nothing to join")
    kinds = {fp.kind for fp in prints}
    families = {fp.family for fp in prints if fp.family}
    if len(kinds) > 1 or len(families) > 1 or len({fp.version for fp in prints}) > 1:
        raise FingerprintError(f"cannot join fingerprints of different kinds or families ({sorted(kinds)}, {sorted(families)})")
    rows = [(name, tuple(fp.shapes[i]), int(fp.ranks[i]), fp.sketches[i]) for fp in prints for i, name in enumerate(fp.names)]
    notes = [note for fp in prints for note in fp.notes]
    formats = "+".join(sorted({fp.key_format for fp in prints if fp.key_format}))
    return assemble(prints[0].kind, families.pop() if families else None, formats or None, rows, base=prints[0].base,
                    notes=notes, source=source)  # fmt: skip
