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
            "fingerprint": f"per-module random-projection sketch {SKETCH_SIDE}x{SKETCH_SIDE} of ΔW, v{self.version}",
            "notes": list(self.notes),
        }

    # --- serialisation: magic, u32 header length, JSON header, float32 sketches -------------

    def to_bytes(self) -> bytes:
        header = json.dumps({
            "kind": self.kind, "family": self.family, "key_format": self.key_format, "names": self.names,
            "shapes": self.shapes.astype(int).tolist(), "ranks": self.ranks.astype(int).tolist(), "base": self.base,
            "notes": self.notes, "version": self.version, "side": SKETCH_SIDE,
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
            notes=header["notes"], version=header["version"], source=source,
        )  # fmt: skip


def assemble(kind: str, family: str | None, key_format: str | None, rows: list[tuple[str, tuple[int, int], int, np.ndarray]],
             base: str | None = None, notes: list[str] | None = None, source: str | None = None) -> Fingerprint:
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
        base=base, notes=list(notes or []), source=source,
    )  # fmt: skip
