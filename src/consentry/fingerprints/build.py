"""Fingerprint a model file: a LoRA from its factors, a checkpoint as its difference from a base."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from consentry.fingerprints.arrays import read_array
from consentry.fingerprints.errors import FingerprintError
from consentry.fingerprints.lora import MAX_RANK, LoraLayout, find_lora, module_scale
from consentry.fingerprints.model import KIND_DELTA, KIND_LORA, Fingerprint, assemble
from consentry.fingerprints.naming import Part, canonical
from consentry.fingerprints.sketch import sketch_dense, sketch_factors
from consentry.formats import read_manifest
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import Manifest, TensorInfo
from consentry.inspection.architecture import recognise

_FULL_KINDS = ("checkpoint", "unet", "transformer", "text-encoder")


def fingerprint_file(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                     base_name: str | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Fingerprint:  # fmt: skip
    """Fingerprint one file. ``base`` (a path) is needed for full checkpoints."""
    manifest = read_manifest(path, limits)
    base_manifest = read_manifest(base, limits) if base is not None else None
    fp = fingerprint_manifest(manifest, base_manifest, base_name=base_name or (Path(base).name if base else None))
    fp.source = str(path)
    return fp


def fingerprint_manifest(manifest: Manifest, base: Manifest | None = None, base_name: str | None = None) -> Fingerprint:
    arch = recognise(manifest.tensors)
    layout = find_lora(manifest)
    if layout is not None:
        return _lora_fingerprint(manifest, layout, arch.family)
    if arch.kind in _FULL_KINDS:
        if base is None:
            raise FingerprintError(
                f"{arch.label()}: a full model is fingerprinted as its difference from its base model; "
                "register the base (`consentry base add NAME FILE`) and pass --base NAME"
            )
        return _delta_fingerprint(manifest, base, arch.family, base_name)
    raise FingerprintError(f"unknown architecture ({arch.label()}): neither a LoRA nor a model consentry can fingerprint")


# --- LoRAs ------------------------------------------------------------------------------------


def _lora_fingerprint(manifest: Manifest, layout: LoraLayout, family: str | None) -> Fingerprint:
    rows = []
    for raw, module in layout.modules.items():
        if module.down is None or module.up is None:
            missing = "up (B)" if module.up is None else "down (A)"
            raise FingerprintError(f"module {raw}: {missing} factor missing")
        down, up = read_array(manifest, module.down), read_array(manifest, module.up)
        rank = down.shape[0] if down.ndim else 0
        if rank == 0 or down.size == 0 or up.size == 0:
            raise FingerprintError(f"module {raw}: zero-rank LoRA (down {module.down.shape}, up {module.up.shape})")
        down2 = down.reshape(rank, -1)
        up2 = up.reshape(up.shape[0], -1)
        if up2.shape[1] != rank:
            raise FingerprintError(f"module {raw}: shape mismatch, down {module.down.shape} vs up {module.up.shape}")
        if rank > min(up2.shape[0], down2.shape[1]) or rank > MAX_RANK:
            raise FingerprintError(f"module {raw}: absurd rank {rank} for a {up2.shape[0]}x{down2.shape[1]} layer")
        alpha = None
        if module.alpha is not None:
            a = read_array(manifest, module.alpha).ravel()
            if a.size != 1 or not np.isfinite(a[0]):
                raise FingerprintError(f"module {raw}: alpha is not one finite number")
            alpha = float(a[0])
        scale = module_scale(module, rank, alpha)
        for part in canonical(raw, up2.shape[0]):
            u = up2[part.rows[0] : part.rows[1]] if part.rows else up2
            rows.append((part.name, (u.shape[0], down2.shape[1]), rank, sketch_factors(u, down2, scale)))
    return assemble(KIND_LORA, family, layout.key_format, rows, notes=layout.notes)


# --- full checkpoints minus their base ---------------------------------------------------------


def _matrix_parts(t: TensorInfo) -> list[Part]:
    """Canonical parts of a weight matrix in a full model (biases, norms, scalars are skipped)."""
    if len(t.shape) not in (2, 4) or t.dtype not in ("F32", "F16", "BF16", "F64"):
        return []
    name = t.name.replace("/", ".")
    if name.endswith(".weight"):
        module = name[: -len(".weight")]
    elif name.endswith("in_proj_weight"):
        module = name[: -len("_weight")]
    else:
        return []
    return canonical(module, t.shape[0])


def _delta_fingerprint(manifest: Manifest, base: Manifest, family: str | None, base_name: str | None) -> Fingerprint:
    base_parts: dict[str, tuple[TensorInfo, Part]] = {}
    for t in base.tensors:
        for part in _matrix_parts(t):
            base_parts[part.name] = (t, part)
    rows, unchanged, missing, mismatched = [], 0, 0, []
    for t in manifest.tensors:
        parts = _matrix_parts(t)
        if not parts:
            continue
        value: np.ndarray | None = None
        cached: tuple[str, np.ndarray] | None = None
        for part in parts:
            entry = base_parts.get(part.name)
            if entry is None:
                missing += 1
                continue
            bt, bpart = entry
            if value is None:
                value = read_array(manifest, t).reshape(t.shape[0], -1)
            if cached is None or cached[0] != bt.name:
                cached = (bt.name, read_array(base, bt).reshape(bt.shape[0], -1))
            mine = value[part.rows[0] : part.rows[1]] if part.rows else value
            theirs = cached[1][bpart.rows[0] : bpart.rows[1]] if bpart.rows else cached[1]
            if mine.shape != theirs.shape:
                mismatched.append(f"{part.name} {mine.shape} vs base {theirs.shape}")
                continue
            delta = mine - theirs
            if not np.isfinite(delta).all():
                raise FingerprintError(f"module {part.name}: NaN or infinite weights")
            if not delta.any():
                unchanged += 1
                continue
            rows.append((part.name, delta.shape, 0, sketch_dense(delta)))
    if mismatched and not rows:
        raise FingerprintError(f"base {base_name or base.path} does not fit: {len(mismatched)} modules differ in shape, e.g. {mismatched[0]}")
    if not rows:
        raise FingerprintError(
            "no module differs from the base" if unchanged else f"no module in common with base {base_name or base.path}"
        )
    notes = [f"{unchanged} modules identical to the base", f"{missing} matrices not in the base"]
    if mismatched:
        notes.append(f"{len(mismatched)} modules differ in shape from the base, e.g. {mismatched[0]}")
    return assemble(KIND_DELTA, family, "ldm/diffusers", rows, base=base_name, notes=notes)
