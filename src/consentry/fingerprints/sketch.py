"""Random-projection sketches of weight deltas: ``S = Gᵀ·ΔW·H`` with fixed, seeded Gaussians.

Why this sketch: it is *linear* in ΔW, so a LoRA is sketched from its factors without building ΔW
(``(GᵀB)(AH)``, cost ``P·(out+in)·rank``), re-factorisations ``B·Q, Q⁻¹·A`` give the same sketch,
a merge ``W₀ + c·ΔW`` sketches to ``c·S``, and a sum of LoRAs to the sum of their sketches. Inner
products of sketches estimate inner products of the ΔWs (Johnson-Lindenstrauss), so cosines and
merge coefficients are read off sketches alone. G and H depend only on the matrix dimension and a
fixed seed, so every file, format and machine gets the same projection for the same module.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

SKETCH_SIDE = 16  # P: each module becomes a P×P matrix (256 numbers)
VECTOR_DIM = 256  # D: length of the whole-model vector used by the nearest-neighbour index
SKETCH_VERSION = 1


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=512)
def projection(dim: int, role: str) -> np.ndarray:
    """The fixed ``dim × P`` Gaussian for one side (``out`` or ``in``), entries N(0, 1/P) so that
    sketches keep ‖ΔW‖ in expectation."""
    rng = np.random.default_rng(_seed(f"consentry-fingerprint-v{SKETCH_VERSION}:{role}:{dim}"))
    g = rng.standard_normal((dim, SKETCH_SIDE), dtype=np.float32)
    g *= np.float32(1.0 / np.sqrt(SKETCH_SIDE))
    g.setflags(write=False)
    return g


def sketch_factors(up: np.ndarray, down: np.ndarray, scale: float) -> np.ndarray:
    """Sketch of ``scale · up @ down`` (up: out×r, down: r×in) without forming the product."""
    with np.errstate(all="ignore"):  # NaN/inf weights are reported by the caller, by module
        left = projection(up.shape[0], "out").T @ up  # P×r
        right = down @ projection(down.shape[1], "in")  # r×P
        return (left @ right) * np.float32(scale)


def sketch_dense(delta: np.ndarray) -> np.ndarray:
    """Sketch of a dense out×in delta (checkpoints): ``(GᵀΔ)H``."""
    with np.errstate(all="ignore"):
        return (projection(delta.shape[0], "out").T @ delta) @ projection(delta.shape[1], "in")


@lru_cache(maxsize=65536)
def _slots(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_seed(f"consentry-fingerprint-slots-v{SKETCH_VERSION}:{name}"))
    index = rng.integers(0, VECTOR_DIM, SKETCH_SIDE * SKETCH_SIDE)
    sign = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), SKETCH_SIDE * SKETCH_SIDE)
    return index, sign


def model_vector(names: list[str], sketches: np.ndarray) -> np.ndarray:
    """One unit-length D-vector for the whole model: every module's sketch feature-hashed into D
    slots (count sketch), so inner products of vectors estimate the global ⟨ΔW, ΔW'⟩ over shared
    modules whatever set of modules each model has. Used only to shortlist for ``similar``."""
    vec = np.zeros(VECTOR_DIM, dtype=np.float64)
    for name, sk in zip(names, sketches):
        index, sign = _slots(name)
        vec += np.bincount(index, weights=sign * sk.ravel(), minlength=VECTOR_DIM)
    norm = np.linalg.norm(vec)
    return (vec / norm if norm > 0 else vec).astype(np.float32)
