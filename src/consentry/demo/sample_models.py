"""Write a folder of small model files that shows what consentry does with real cases.

The person named here is fictional. The folder holds: a likeness LoRA as first uploaded (kohya
training metadata naming its subject), its re-upload renamed "LORA" with the metadata
stripped (different SHA256, same AutoV3 and content_hash), an unrelated LoRA, a pickle that
would run a shell command if loaded with pickle, a truncated safetensors file, and a text file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

FICTIONAL_PERSON = "Mira Castellan"

# SD1.x UNet cross-attention and text-encoder projections, kohya key names.
_MODULES = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k": (320, 768),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v": (320, 768),
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q": (1280, 1280),
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_out_0": (320, 320),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768),
    "lora_te_text_model_encoder_layers_11_mlp_fc1": (3072, 768),
}

# A shell command spelled as pickle opcodes: GLOBAL posix.system, the argument, REDUCE.
# consentry's reader refuses it by name; pickle.load would run it. Never load this file.
_PICKLE_PAYLOAD = b"\x80\x02cposix\nsystem\nq\x00X\x13\x00\x00\x00echo demo-payload-ranq\x01\x85q\x02Rq\x03."


def lora_tensors(seed: int, rank: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for module, (out_features, in_features) in _MODULES.items():
        tensors[f"{module}.lora_down.weight"] = (rng.standard_normal((rank, in_features)) * 0.02).astype(np.float16)
        tensors[f"{module}.lora_up.weight"] = (rng.standard_normal((out_features, rank)) * 0.02).astype(np.float16)
        tensors[f"{module}.alpha"] = np.array(rank / 2, dtype=np.float16)
    return tensors


def kohya_metadata(person_folder: str, output_name: str) -> dict[str, str]:
    tags = {person_folder: {person_folder.split("_", 1)[1]: 40, "1girl": 31, "smiling": 12, "portrait": 9}}
    return {
        "ss_output_name": output_name,
        "ss_base_model_version": "sd_v1",
        "ss_sd_model_name": "v1-5-pruned-emaonly.safetensors",
        "ss_network_module": "networks.lora",
        "ss_network_dim": "8",
        "ss_network_alpha": "4.0",
        "ss_training_comment": "trained from her instagram",
        "ss_tag_frequency": json.dumps(tags),
        "ss_dataset_dirs": json.dumps({person_folder: {"n_repeats": 10, "img_count": 40}}),
        "ss_training_started_at": "1714000000",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": "stable-diffusion-v1/lora",
        "modelspec.title": output_name,
    }


def write_demo_folder(root: Path) -> dict[str, Path]:
    """Write the demo files under ``root``; returns the interesting paths by role."""
    (root / "civitai-deleted").mkdir(parents=True, exist_ok=True)
    (root / "mirror").mkdir(parents=True, exist_ok=True)
    (root / "uploads").mkdir(parents=True, exist_ok=True)
    likeness = lora_tensors(seed=7)
    paths = {
        "original": root / "civitai-deleted" / "mira_castellan_v2.safetensors",
        "reupload": root / "mirror" / "LORA.safetensors",
        "unrelated": root / "uploads" / "watercolor_style.safetensors",
        "pickle": root / "uploads" / "test_model.ckpt",
        "truncated": root / "uploads" / "broken.safetensors",
        "text": root / "uploads" / "README.txt",
    }
    save_file(likeness, str(paths["original"]), metadata=kohya_metadata("10_mira castellan", "mira_castellan_v2"))
    save_file(likeness, str(paths["reupload"]), metadata={"format": "pt"})
    save_file(lora_tensors(seed=99), str(paths["unrelated"]), metadata={"ss_output_name": "watercolor_style"})
    paths["pickle"].write_bytes(_PICKLE_PAYLOAD)
    good = paths["unrelated"].read_bytes()
    paths["truncated"].write_bytes(good[: len(good) // 2])
    paths["text"].write_text("not a model\n")
    return paths
