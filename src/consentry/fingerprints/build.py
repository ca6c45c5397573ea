"""Fingerprint a model file: a LoRA from its factors, a checkpoint as its difference from a base."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from consentry.fingerprints.arrays import FLOAT_DTYPES, read_array
from consentry.fingerprints.errors import FingerprintError
from consentry.fingerprints.lora import MAX_RANK, LoraLayout, find_lora, module_scale
from consentry.fingerprints.model import BASE_DIFFERENCE_LIMIT, KIND_DELTA, KIND_LORA, Fingerprint, assemble
from consentry.fingerprints.naming import Part, canonical
from consentry.fingerprints.sketch import sketch_dense, sketch_factors
from consentry.formats import read_manifest
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import Manifest, TensorInfo
from consentry.inspection.architecture import recognise

_FULL_KINDS = ("checkpoint", "unet", "transformer", "text-encoder")
_FLOAT_DTYPES = FLOAT_DTYPES


def fingerprint_file(path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
                     base_name: str | None = None, limits: ReadLimits = DEFAULT_LIMITS) -> Fingerprint:  # fmt: skip
    """Fingerprint one file. ``base`` (a path) is needed for full checkpoints."""
    manifest = read_manifest(path, limits)
    base_manifest = read_manifest(base, limits) if base is not None else None
    fp = fingerprint_manifest(manifest, base_manifest, base_name=base_name or (Path(base).name if base else None),
                              component=folder_component(path))  # fmt: skip
    fp.source = str(path)
    return fp


# diffusers' pipeline folder names: a PEFT adapter saved in one names its model only by it
_FOLDER_COMPONENTS = {"unet": "unet_", "transformer": "unet_", "text_encoder": "te1_", "text_encoder_2": "te2_"}


def folder_component(path: str | os.PathLike[str]) -> str | None:
    """``…/text_encoder_2/adapter_model.safetensors`` → ``"te2_"``; None for any other place."""
    return _FOLDER_COMPONENTS.get(Path(path).parent.name)


def fingerprint_manifest(manifest: Manifest, base: Manifest | None = None, base_name: str | None = None,
                         component: str | None = None) -> Fingerprint:  # fmt: skip
    arch = recognise(manifest.tensors)
    layout = find_lora(manifest)
    if layout is not None:
        return _lora_fingerprint(manifest, layout, arch.family, component)
    if arch.kind in _FULL_KINDS:
        if base is None:
            raise FingerprintError(
                f"{arch.label()}: a full model is fingerprinted as its difference from its base model; "
                "register the base (`consentry base add NAME FILE`) and pass --base NAME"
            )
        return _delta_fingerprint(manifest, base, arch.family, base_name)
    raise FingerprintError(f"unknown architecture ({arch.label()}): neither a LoRA nor a model consentry can fingerprint")


# --- LoRAs ------------------------------------------------------------------------------------


def _lora_fingerprint(manifest: Manifest, layout: LoraLayout, family: str | None, component: str | None = None) -> Fingerprint:
    rows, zero_alpha = [], 0
    for raw, module in layout.modules.items():
        if module.down is None or module.up is None:
            missing = "up (B)" if module.up is None else "down (A)"
            raise FingerprintError(f"module {raw}: {missing} factor missing")
        for factor in (module.down, module.up):
            if factor.dtype not in _FLOAT_DTYPES:
                if factor.dtype.startswith(("I", "U")):
                    raise FingerprintError(f"module {raw}: integer-quantised factors are not fingerprinted yet ({factor.name} is {factor.dtype})")
                raise FingerprintError(f"module {raw}: {factor.dtype} factors ({factor.name}) are not fingerprinted yet "
                                       f"({', '.join(_FLOAT_DTYPES)} are)")  # fmt: skip
        down, up = read_array(manifest, module.down), read_array(manifest, module.up)
        rank = down.shape[0] if down.ndim else 0
        if rank == 0 or down.size == 0 or up.size == 0:
            raise FingerprintError(f"module {raw}: zero-rank LoRA (down {module.down.shape}, up {module.up.shape})")
        down2 = down.reshape(rank, -1)
        up2 = up.reshape(up.shape[0], -1)
        if up2.shape[1] != rank:
            raise FingerprintError(f"module {raw}: shape mismatch, down {module.down.shape} vs up {module.up.shape}")
        if rank > MAX_RANK:  # above the layer's width is legal: a concatenation merge sums the ranks
            raise FingerprintError(f"module {raw}: absurd rank {rank} for a {up2.shape[0]}x{down2.shape[1]} layer "
                                   f"(more than {MAX_RANK})")  # fmt: skip
        alpha = None
        if module.alpha is not None:
            a = read_array(manifest, module.alpha).ravel()
            if a.size != 1 or not np.isfinite(a[0]):
                raise FingerprintError(f"module {raw}: alpha is not one finite number")
            alpha = float(a[0])
            zero_alpha += alpha == 0
        scale = module_scale(module, rank, alpha)
        for part in canonical(raw, up2.shape[0], component):
            u = up2[part.rows[0] : part.rows[1]] if part.rows else up2
            rows.append((part.name, (u.shape[0], down2.shape[1]), rank, sketch_factors(u, down2, scale)))
    notes = list(layout.notes)
    if zero_alpha:
        notes.append(f"{zero_alpha} modules have alpha 0: read as alpha = rank, as kohya sd-scripts does")
    return assemble(KIND_LORA, family, layout.key_format, rows, notes=notes)


# --- full checkpoints minus their base ---------------------------------------------------------


def _matrix_parts(t: TensorInfo) -> list[Part]:
    """Canonical parts of a weight matrix in a full model (biases, norms, scalars are skipped)."""
    if len(t.shape) not in (2, 4) or t.dtype not in _FLOAT_DTYPES:
        return []
    name = t.name.replace("/", ".")
    if name.endswith(".weight"):
        module = name[: -len(".weight")]
    elif name.endswith("in_proj_weight"):
        module = name[: -len("_weight")]
    else:
        return []
    return canonical(module, t.shape[0])


def _component(name: str) -> str:
    return name.split("_", 1)[0]  # unet, te1, te2 (canonical names)


def _delta_fingerprint(manifest: Manifest, base: Manifest, family: str | None, base_name: str | None,
                       max_difference: float = BASE_DIFFERENCE_LIMIT) -> Fingerprint:  # fmt: skip
    """Sketch ``W − W₀`` module by module. Also measures ‖W − W₀‖/‖W₀‖ per component: above
    ``max_difference`` the base is not this model's base (its "delta" would be a whole model,
    and every comparison a silent "unrelated"), so that component is refused, with the number."""
    base_parts: dict[str, tuple[TensorInfo, Part]] = {}
    for t in base.tensors:
        for part in _matrix_parts(t):
            base_parts[part.name] = (t, part)
    rows, unchanged, missing, mismatched = [], 0, 0, []
    diff_sq: dict[str, float] = {}
    base_sq: dict[str, float] = {}
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
            component = _component(part.name)
            flat_base, flat_delta = theirs.ravel(), delta.ravel()
            base_sq[component] = base_sq.get(component, 0.0) + float(np.dot(flat_base, flat_base))
            diff_sq[component] = diff_sq.get(component, 0.0) + float(np.dot(flat_delta, flat_delta))
            if not delta.any():
                unchanged += 1
                continue
            rows.append((part.name, delta.shape, 0, sketch_dense(delta)))
    label = base_name or base.path
    if mismatched and not rows:
        raise FingerprintError(f"base {label} does not fit: {len(mismatched)} modules differ in shape, e.g. {mismatched[0]}")
    if not rows:
        raise FingerprintError("no module differs from the base" if unchanged else f"no module in common with base {label}")
    by_component = {c: _relative(diff_sq[c], base_sq[c]) for c in diff_sq}
    total = _relative(sum(diff_sq.values()), sum(base_sq.values()))
    far = {c: r for c, r in by_component.items() if r > max_difference}
    if far and len(far) == len(by_component):
        raise FingerprintError(
            f"base {label} does not look like this model's base (relative difference {total:.3g} > {max_difference}: "
            f"‖W − W₀‖/‖W₀‖ of fine-tunes and merges stays far below it); register this model's real base and pass --base"
        )  # fmt: skip
    notes = [f"{unchanged} modules identical to the base", f"{missing} matrices not in the base"]
    if mismatched:
        notes.append(f"{len(mismatched)} modules differ in shape from the base, e.g. {mismatched[0]}")
    if far:
        dropped = sum(1 for r in rows if _component(r[0]) in far)
        rows = [r for r in rows if _component(r[0]) not in far]
        notes.append(
            "not compared: " + ", ".join(f"{c} (relative difference {r:.3g} > {max_difference})" for c, r in sorted(far.items()))
            + f": base {label} does not look like the base of that part ({dropped} modules left out)"
        )  # fmt: skip
        if not rows:
            raise FingerprintError(f"no module differs from the base except in parts where base {label} does not fit ({notes[-1]})")
        kept = [c for c in by_component if c not in far]
        total = _relative(sum(diff_sq[c] for c in kept), sum(base_sq[c] for c in kept))
    notes.append(f"relative difference from base {label}: {total:.4g} (‖W − W₀‖/‖W₀‖; a real base stays below {max_difference})")
    return assemble(KIND_DELTA, family, "ldm/diffusers", rows, base=base_name, notes=notes, relative_difference=total)


def _relative(diff_sq: float, base_sq: float) -> float:
    return float(np.sqrt(diff_sq / base_sq)) if base_sq > 0 else (0.0 if diff_sq == 0 else float("inf"))
