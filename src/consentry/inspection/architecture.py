"""Recognise what a model is from its tensor names and shapes — best effort, and said so.

Only names and shapes are used (never values), so this works on a header read remotely.
Each result carries the evidence that decided it, so a person can check the guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from consentry.formats.tensors import TensorInfo

# LoRA down/up pairs in the key formats in circulation.
_LORA_SUFFIXES = {
    "kohya": (".lora_down.weight", ".lora_up.weight"),
    "peft": (".lora_A.weight", ".lora_B.weight"),
    "diffusers": (".lora.down.weight", ".lora.up.weight"),
}
# LyCORIS variants: recognised, but weight fingerprints do not cover them yet.
_LYCORIS_MARKERS = {
    ".hada_w1_a": "LyCORIS LoHa",
    ".lokr_w1": "LyCORIS LoKr",
    ".lokr_w1_a": "LyCORIS LoKr",
    ".dora_scale": "DoRA",
    ".oft_blocks": "OFT",
}
# Cross-attention context width -> Stable Diffusion family.
_CONTEXT_DIM_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


@dataclass
class Architecture:
    kind: str  # lora, checkpoint, unet, vae, text-encoder, textual-inversion, unknown
    family: str | None = None  # sd1, sd2, sdxl, flux, None if not determined
    key_format: str | None = None  # kohya, peft, diffusers, ldm (original), None
    rank: int | None = None  # LoRA rank (most common)
    module_count: int | None = None  # LoRA modules (down/up pairs)
    variant: str | None = None  # e.g. "LyCORIS LoHa (not yet fingerprinted)"
    evidence: list[str] = field(default_factory=list)
    best_effort: bool = True

    def label(self) -> str:
        parts = [self.kind]
        if self.family:
            parts.append(self.family)
        if self.key_format:
            parts.append(f"{self.key_format} keys")
        if self.variant:
            parts.append(self.variant)
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "family": self.family,
            "key_format": self.key_format,
            "rank": self.rank,
            "module_count": self.module_count,
            "variant": self.variant,
            "evidence": list(self.evidence),
            "best_effort": self.best_effort,
        }


def recognise(tensors: Sequence[TensorInfo]) -> Architecture:
    """Guess the architecture. Returns kind ``unknown`` rather than guessing wildly."""
    names = [t.name for t in tensors]
    shapes = {t.name: t.shape for t in tensors}
    if not names:
        return Architecture(kind="unknown", evidence=["no tensors"])
    for recogniser in (_lora, _textual_inversion, _checkpoint, _unet, _vae, _text_encoder):
        arch = recogniser(names, shapes)
        if arch is not None:
            return arch
    return Architecture(kind="unknown", evidence=[f"{len(names)} tensors, no known naming scheme"])


def _lora(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    for marker, variant in _LYCORIS_MARKERS.items():
        hits = [n for n in names if marker in n]
        if hits:
            arch = Architecture(kind="lora", variant=f"{variant} (recognised, not yet fingerprinted)")
            arch.evidence.append(f"{len(hits)} tensors named like '*{marker}*', e.g. {hits[0]!r}")
            arch.family = _family_from_names(names, shapes) or _family_from_context(names, shapes)
            return arch
    for key_format, (down, up) in _LORA_SUFFIXES.items():
        downs = [n for n in names if n.endswith(down)]
        ups = [n for n in names if n.endswith(up)]
        if not downs or not ups:
            continue
        arch = Architecture(kind="lora", key_format=key_format, module_count=len(downs))
        arch.evidence.append(f"{len(downs)} '{down}' / {len(ups)} '{up}' tensors")
        ranks = [shapes[n][0] for n in downs if shapes[n]]
        if ranks:
            arch.rank = max(set(ranks), key=ranks.count)
        if key_format == "kohya" and any(n.startswith(("transformer.", "unet.", "text_encoder.")) for n in downs):
            arch.key_format = "diffusers (kohya-style suffixes)"
        arch.family = _family_from_names(names, shapes)
        if arch.family:
            arch.evidence.append(f"block names indicate {arch.family}")
        else:
            arch.family = _family_from_context(names, shapes)
            if arch.family:
                arch.evidence.append(f"cross-attention width indicates {arch.family}")
        if any(n.endswith((".alpha",)) for n in names):
            arch.evidence.append("per-module alpha present")
        if any(len(shapes[n]) == 4 and shapes[n][2:] != (1, 1) for n in downs):
            arch.variant = "LoCon (conv layers)"
        return arch
    return None


def _family_from_names(names: list[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """Flux and SDXL by names that only they have; names that SDXL LoRAs usually have but SD1
    exports can too (diffusers' kohya export of an SD1.5 LoRA names its text encoder
    ``lora_te1_``; LDM block names) defer to the cross-attention width when there is one."""
    joined = "\n".join(names)
    if re.search(r"(double_blocks|single_blocks|single_transformer_blocks|transformer_blocks\.\d+\.attn\.add_k_proj)", joined):
        return "flux"
    if re.search(r"(lora_te2_|text_encoder_2\.|conditioner\.embedders\.1)", joined):
        return "sdxl"
    if re.search(r"(lora_unet_input_blocks_|lora_unet_output_blocks_|lora_unet_middle_block_|lora_te1_)", joined):
        return _family_from_context(names, shapes) or "sdxl"
    return None


def _family_from_context(names: list[str], shapes: dict[str, tuple[int, ...]]) -> str | None:
    """SD1 / SD2 / SDXL by the width of the cross-attention key projection."""
    for name in names:
        if re.search(r"attn2[._]to_k", name) and shapes.get(name):
            shape = shapes[name]
            width = shape[-1] if len(shape) >= 2 else None
            if width in _CONTEXT_DIM_FAMILY:
                return _CONTEXT_DIM_FAMILY[width]
    return None


def _textual_inversion(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    if len(names) > 4:
        return None
    keyset = set(names)
    if keyset & {"emb_params"} or any(n.startswith("string_to_param") for n in names):
        name = next(n for n in names if n == "emb_params" or n.startswith("string_to_param"))
        width = shapes[name][-1] if shapes[name] else None
        family = {768: "sd1", 1024: "sd2"}.get(width)
        return Architecture(kind="textual-inversion", family=family, evidence=[f"embedding tensor {name!r} {shapes[name]}"])
    if keyset == {"clip_l", "clip_g"}:
        return Architecture(kind="textual-inversion", family="sdxl", evidence=["clip_l + clip_g embedding tensors"])
    return None


def _checkpoint(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    has_unet = any(n.startswith("model.diffusion_model.") for n in names)
    flux_bare = any(n.startswith("double_blocks.") for n in names) and any(n.startswith("single_blocks.") for n in names)
    if not (has_unet or flux_bare):
        return None
    arch = Architecture(kind="checkpoint", key_format="ldm")
    if flux_bare or any(n.startswith("model.diffusion_model.double_blocks.") for n in names):
        arch.family = "flux"
        arch.evidence.append("double_blocks/single_blocks transformer")
        arch.kind = "checkpoint" if any(n.startswith(("text_encoders.", "vae.")) for n in names) else "transformer"
        return arch
    parts = ["UNet (model.diffusion_model.*)"]
    if any(n.startswith("conditioner.embedders.1.") for n in names):
        arch.family = "sdxl"
        parts.append("two text encoders (conditioner.embedders.*)")
    elif any(n.startswith("cond_stage_model.model.") for n in names):
        arch.family = "sd2"
        parts.append("OpenCLIP text encoder (cond_stage_model.model.*)")
    elif any(n.startswith("cond_stage_model.transformer.") for n in names):
        arch.family = _family_from_context(names, shapes) or "sd1"
        parts.append("CLIP text encoder (cond_stage_model.transformer.*)")
    else:
        arch.family = _family_from_context(names, shapes)
        arch.kind = "unet"
    if any(n.startswith("first_stage_model.") for n in names):
        parts.append("VAE (first_stage_model.*)")
    arch.evidence.extend(parts)
    return arch


def _unet(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    if any(n.startswith("conv_in.") for n in names) and any(n.startswith("down_blocks.") for n in names) and any(
        n.startswith("time_embedding.") for n in names
    ):
        family = _family_from_context(names, shapes)
        return Architecture(kind="unet", family=family, key_format="diffusers", evidence=["diffusers UNet2DConditionModel names"])
    if any(n.startswith("transformer_blocks.") for n in names) and any(n.startswith("single_transformer_blocks.") for n in names):
        return Architecture(kind="transformer", family="flux", key_format="diffusers", evidence=["diffusers FluxTransformer2DModel names"])
    return None


def _vae(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    enc = any(n.startswith("encoder.") for n in names)
    dec = any(n.startswith("decoder.") for n in names)
    if not (enc and dec):
        return None
    if any(n.startswith("encoder.block.") for n in names):
        return None  # T5 encoder, not a VAE
    key_format = "diffusers" if any(n.startswith("encoder.down_blocks.") for n in names) else "ldm"
    return Architecture(kind="vae", key_format=key_format, evidence=["encoder.* and decoder.* tensors"])


def _text_encoder(names: list[str], shapes: dict[str, tuple[int, ...]]) -> Architecture | None:
    if any(n.startswith(("text_model.encoder.layers.", "transformer.text_model.")) for n in names):
        return Architecture(kind="text-encoder", evidence=["CLIP text_model.encoder.layers.*"])
    if any(n.startswith("encoder.block.") for n in names) and any("SelfAttention" in n for n in names):
        return Architecture(kind="text-encoder", evidence=["T5 encoder.block.*.SelfAttention"])
    return None
