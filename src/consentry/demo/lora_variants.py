"""Small SD1.5-shaped LoRAs and the ways re-uploaders change them, in numpy: saved in kohya or
PEFT/diffusers keys, cast to fp16, resized by SVD (as kohya's resize_lora does), or merged into
a checkpoint (as kohya's merge_lora does). For the demo world only: the tests build their own
files independently, and bench/fingerprint_robustness.py uses the real diffusers/peft code."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_DTYPES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def write_safetensors(tensors: dict[str, np.ndarray], path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file with its header keys in sorted order, so the same tensors and metadata
    always give the same bytes (safetensors' own writer orders metadata by a hash map: the demo
    world's SHA-256s would change from run to run). Arrays are written in C order."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path

# (diffusers module path, LDM checkpoint path, out features, in features): real SD1.5 shapes.
MODULES = (
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q", "input_blocks.1.1.transformer_blocks.0.attn1.to_q", 320, 320),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k", "input_blocks.1.1.transformer_blocks.0.attn2.to_k", 320, 768),
    ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v", "input_blocks.1.1.transformer_blocks.0.attn2.to_v", 320, 768),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", "input_blocks.4.1.transformer_blocks.0.attn1.to_out.0", 640, 640),
    ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "input_blocks.4.1.transformer_blocks.0.attn2.to_k", 640, 768),
    ("mid_block.attentions.0.transformer_blocks.0.attn1.to_q", "middle_block.1.transformer_blocks.0.attn1.to_q", 1280, 1280),
    ("mid_block.attentions.0.transformer_blocks.0.attn2.to_v", "middle_block.1.transformer_blocks.0.attn2.to_v", 1280, 768),
    ("up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_q", "output_blocks.5.1.transformer_blocks.0.attn2.to_q", 1280, 1280),
    ("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0", "output_blocks.11.1.transformer_blocks.0.attn2.to_out.0", 320, 320),
    ("text_encoder:text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
    ("text_encoder:text_model.encoder.layers.11.mlp.fc1", "text_model.encoder.layers.11.mlp.fc1", 3072, 768),
)  # fmt: skip
RANK = 8


@dataclass
class Lora:
    """module path -> (up, down, alpha); ΔW = up @ down · alpha / rank."""

    factors: dict[str, tuple[np.ndarray, np.ndarray, float]]

    def delta(self, module: str) -> np.ndarray:
        up, down, alpha = self.factors[module]
        return (alpha / down.shape[0]) * up.astype(np.float64) @ down.astype(np.float64)


def make_lora(seed: int, rank: int = RANK) -> Lora:
    """Factors with a decaying spectrum, like a trained LoRA's."""
    rng = np.random.default_rng(seed)
    factors = {}
    for path, _ldm, out, inp in MODULES:
        up = rng.standard_normal((out, rank)) * (0.75 ** np.arange(rank)) * 0.01
        down = rng.standard_normal((rank, inp)) / np.sqrt(inp)
        factors[path] = (up.astype(np.float32), down.astype(np.float32), float(rank / 2))
    return Lora(factors)


def save_lora(lora: Lora, path: Path, *, fmt: str = "kohya", dtype=np.float16, metadata: dict[str, str] | None = None) -> Path:
    """kohya keys (``lora_unet_…``, ``.alpha`` tensors) or PEFT/diffusers keys (``unet.….lora_A``,
    alpha in ``lora_adapter_metadata`` as diffusers writes it)."""
    tensors: dict[str, np.ndarray] = {}
    for module, (up, down, alpha) in lora.factors.items():
        component, _, rest = module.rpartition(":")
        if fmt == "kohya":
            key = ("lora_te_" if component else "lora_unet_") + rest.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = down.astype(dtype)
            tensors[f"{key}.lora_up.weight"] = up.astype(dtype)
            tensors[f"{key}.alpha"] = np.array(alpha, dtype=np.float32)
        elif fmt == "peft":
            key = f"{component or 'unet'}.{rest}"
            tensors[f"{key}.lora_A.weight"] = down.astype(dtype)
            tensors[f"{key}.lora_B.weight"] = up.astype(dtype)
        else:
            raise ValueError(fmt)
    meta = dict(metadata or {})
    if fmt == "peft":
        up, down, alpha = next(iter(lora.factors.values()))
        rank = down.shape[0]
        meta["lora_adapter_metadata"] = json.dumps({"unet.lora_alpha": alpha, "unet.r": rank,
                                                    "text_encoder.lora_alpha": alpha, "text_encoder.r": rank})  # fmt: skip
    return write_safetensors(tensors, path, meta)


def resize(lora: Lora, rank: int) -> Lora:
    """kohya resize_lora: SVD of ΔW, keep the top ``rank`` directions, alpha = rank. ΔW is low
    rank, so its SVD comes from QR of the factors and the SVD of a small core (same result)."""
    out = {}
    for module, (up, down, alpha) in lora.factors.items():
        qu, ru = np.linalg.qr(up.astype(np.float64))
        qd, rd = np.linalg.qr(down.astype(np.float64).T)
        u, s, vt = np.linalg.svd((alpha / down.shape[0]) * ru @ rd.T)
        new_up = (qu @ u[:, :rank]) * s[:rank]
        new_down = (qd @ vt[:rank].T).T
        out[module] = (new_up.astype(np.float32), new_down.astype(np.float32), float(rank))
    return Lora(out)


def _ldm_key(module: str) -> str:
    ldm = next(m[1] for m in MODULES if m[0] == module)
    prefix = "cond_stage_model.transformer." if module.startswith("text_encoder:") else "model.diffusion_model."
    return prefix + ldm + ".weight"


def base_weights(seed: int = 1234) -> dict[str, np.ndarray]:
    """An LDM-named SD1.5-style checkpoint holding the modules the demo LoRAs touch."""
    rng = np.random.default_rng(seed)
    weights = {}
    for module, _ldm, out, inp in MODULES:
        key = _ldm_key(module)
        weights[key] = (rng.standard_normal((out, inp)) * 0.05).astype(np.float16)
        weights[key[: -len(".weight")] + ".bias"] = np.zeros(out, dtype=np.float16)
    return weights


def merge_into(base: dict[str, np.ndarray], lora: Lora, ratio: float, path: Path) -> Path:
    """kohya merge_lora.merge_to_sd_model: W ← W + ratio · ΔW, stored in fp16."""
    merged = {k: v.astype(np.float64) for k, v in base.items()}
    for module in lora.factors:
        merged[_ldm_key(module)] += ratio * lora.delta(module)
    return write_safetensors({k: v.astype(np.float16) for k, v in merged.items()}, path)
