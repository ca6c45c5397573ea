"""Canonical module names, so one module is named the same in kohya, diffusers, PEFT and LDM keys.

The canonical name is the diffusers module path with every ``.`` written ``_`` and the component
shortened to ``unet_`` (also Flux's ``transformer``), ``te1_`` or ``te2_`` (CLIP's ``text_model.``
dropped: transformers 5 no longer has it in module paths, older LoRAs and checkpoints do). Underscores, because
kohya already replaced the dots and cannot be undone without a vocabulary; diffusers paths, because
every converter (diffusers, peft, kohya's own SD1 trainer) speaks them. SGM/LDM block names
(SDXL kohya LoRAs, original checkpoints) and Flux's fused BFL layers are mapped onto them.

A raw name maps to a list of ``Part``: usually one, several when one stored matrix holds several
diffusers modules stacked by rows (Flux ``qkv``/``linear1``, OpenCLIP ``in_proj_weight``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """A canonical module and which rows of the stored matrix belong to it (``None``: all)."""

    name: str
    rows: tuple[int, int] | None = None


# Component prefixes, longest first: (raw prefix after '.'→'_', canonical prefix).
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("base_model_model_", ""),
    ("lora_unet_", "unet_"),
    ("lora_transformer_", "unet_"),
    ("lora_te1_", "te1_"),
    ("lora_te2_", "te2_"),
    ("lora_te_", "te1_"),
    ("model_diffusion_model_", "unet_"),
    ("diffusion_model_", "unet_"),
    ("cond_stage_model_transformer_", "te1_"),
    ("conditioner_embedders_0_transformer_", "te1_"),
    ("conditioner_embedders_1_model_", "te2_openclip_"),
    ("text_encoders_clip_l_transformer_", "te1_"),
    ("text_encoder_2_", "te2_"),
    ("text_encoder_", "te1_"),
    ("transformer_", "unet_"),
    ("unet_", "unet_"),
)
_BARE_UNET = re.compile(
    r"^(down_blocks|up_blocks|mid_block|conv_in|conv_out|conv_norm_out|time_embedding|add_embedding|input_blocks|"
    r"middle_block|output_blocks|double_blocks|single_blocks|transformer_blocks|single_transformer_blocks|"
    r"x_embedder|context_embedder|proj_out|norm_out|time_text_embed|img_in|txt_in|time_in|vector_in|final_layer)_"
)
# LDM ResBlock internals -> diffusers ResnetBlock2D.
_RESNET = {"in_layers_2": "conv1", "out_layers_3": "conv2", "emb_layers_1": "time_emb_proj", "skip_connection": "conv_shortcut",
           "in_layers_0": "norm1", "out_layers_0": "norm2"}  # fmt: skip
_LDM_TOP = {"time_embed_0": "time_embedding_linear_1", "time_embed_2": "time_embedding_linear_2",
            "label_emb_0_0": "add_embedding_linear_1", "label_emb_0_2": "add_embedding_linear_2",
            "out_0": "conv_norm_out", "out_2": "conv_out", "input_blocks_0_0": "conv_in"}  # fmt: skip
LAYERS_PER_BLOCK = 2  # SD1, SD2 and SDXL all use two resnets per UNet level


def canonical(raw_module: str, out_features: int | None = None, component: str | None = None) -> list[Part]:
    """Canonical parts of one module path (no ``.weight`` / LoRA suffix). ``out_features`` is the
    stored matrix's row count, needed to split fused Flux and OpenCLIP layers. ``component``
    (``te2_``…) names the model a bare adapter belongs to when only its folder says so (PEFT
    saves ``text_encoder_2/adapter_model.safetensors`` with CLIP's own module paths)."""
    name = raw_module.replace(".", "_")
    for raw, canon in _PREFIXES:
        if raw == "transformer_" and name.startswith("transformer_blocks_"):
            continue  # a bare Flux block (PEFT on the transformer), not the `transformer.` component
        if name.startswith(raw):
            name = canon + name[len(raw):]
            if raw != "base_model_model_":
                break
    if not name.startswith(("unet_", "te1_", "te2_")):
        if _BARE_UNET.match(name):
            name = "unet_" + name
        elif name.startswith(("text_model_", "encoder_layers_")):  # a bare CLIP text-encoder adapter
            name = (component if component in ("te1_", "te2_") else "te1_") + name
        else:
            return [Part(name)]
    name = name.replace("_processor_", "_").replace("_lora_linear_layer", "")
    # Old diffusers attention-processor keys (``to_q_lora``, ``to_out_lora``; what diffusers'
    # kohya reader ``lora_state_dict`` still emits): ``to_out`` is ``to_out.0`` in the UNet, and
    # the text encoder's ``to_q``/``to_out`` are CLIP's ``q_proj``/``out_proj`` (diffusers'
    # DIFFUSERS_OLD_TO_PEFT / UNET_TO_DIFFUSERS maps).
    if name.startswith(("te1_", "te2_")):
        name = re.sub(r"_self_attn_to_(q|k|v)$", r"_self_attn_\1_proj", name)
        name = re.sub(r"_self_attn_to_out$", "_self_attn_out_proj", name)
    else:
        name = re.sub(r"_(attn\d?)_to_out$", r"_\1_to_out_0", name)
    if name.startswith(("te1_text_model_", "te2_text_model_")):  # transformers 5 drops `text_model.` in module paths
        name = name[:4] + name[len("te1_text_model_"):]
    if name.startswith("unet_"):
        body = name[len("unet_"):]
        if body in _FLUX_TOP:
            return [Part("unet_" + _FLUX_TOP[body])]
        if body.startswith(("double_blocks_", "single_blocks_")):
            return [Part("unet_" + n, rows) for n, rows in _flux_parts(body, out_features)]
        return [Part("unet_" + _sgm_to_diffusers(body))]
    if name.startswith("te2_openclip_"):
        return [Part(n, rows) for n, rows in _openclip_parts(name[len("te2_openclip_"):], out_features)]
    return [Part(name)]


# BFL/kohya Flux top-level layers to diffusers' (diffusers' lora_conversion_utils
# _convert_kohya_flux_lora_to_diffusers). final_layer_adaLN_modulation_1 is norm_out.linear with
# its scale and shift halves swapped: a different matrix, so it keeps its own name.
_FLUX_TOP = {
    "img_in": "x_embedder", "txt_in": "context_embedder", "final_layer_linear": "proj_out",
    "time_in_in_layer": "time_text_embed_timestep_embedder_linear_1",
    "time_in_out_layer": "time_text_embed_timestep_embedder_linear_2",
    "vector_in_in_layer": "time_text_embed_text_embedder_linear_1",
    "vector_in_out_layer": "time_text_embed_text_embedder_linear_2",
    "guidance_in_in_layer": "time_text_embed_guidance_embedder_linear_1",
    "guidance_in_out_layer": "time_text_embed_guidance_embedder_linear_2",
}  # fmt: skip


def _sgm_to_diffusers(body: str) -> str:
    """SGM/LDM UNet block names (``input_blocks_4_1_...``) to diffusers (``down_blocks_1_attentions_0_...``)."""
    for ldm, diff in _LDM_TOP.items():
        if body == ldm or body.startswith(ldm + "_"):
            return diff + body[len(ldm):]
    m = re.match(r"(input_blocks|output_blocks)_(\d+)_(\d+)(?:_(.*))?$", body)
    if m:
        kind, index, sub, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4) or ""
        per = LAYERS_PER_BLOCK + (1 if kind == "output_blocks" else 0)
        if kind == "input_blocks":
            if index == 0:
                return "conv_in" + ("_" + rest if rest and rest != "" else "")
            block, layer = divmod(index - 1, LAYERS_PER_BLOCK + 1)
            if layer == LAYERS_PER_BLOCK:
                return f"down_blocks_{block}_downsamplers_0_" + ("conv" if rest == "op" else rest)
            head = f"down_blocks_{block}_" + ("resnets" if sub == 0 else "attentions") + f"_{layer}"
        else:
            block, layer = divmod(index, per)
            if sub == 0:
                head = f"up_blocks_{block}_resnets_{layer}"
            elif rest == "conv":  # the upsampler: sub 1 without attention, sub 2 with
                return f"up_blocks_{block}_upsamplers_0_conv"
            else:
                head = f"up_blocks_{block}_attentions_{layer}"
        return head + ("_" + _resnet_inner(rest) if rest else "")
    m = re.match(r"middle_block_(\d+)(?:_(.*))?$", body)
    if m:
        head = {0: "mid_block_resnets_0", 1: "mid_block_attentions_0", 2: "mid_block_resnets_1"}.get(int(m.group(1)), body)
        rest = m.group(2) or ""
        return head + ("_" + _resnet_inner(rest) if rest else "")
    return body


def _resnet_inner(rest: str) -> str:
    return _RESNET.get(rest, rest)


def _split(out_features: int | None, sizes_in_units: list[int]) -> list[tuple[int, int]] | None:
    if out_features is None or out_features % sum(sizes_in_units):
        return None
    unit = out_features // sum(sizes_in_units)
    spans, start = [], 0
    for size in sizes_in_units:
        spans.append((start, start + size * unit))
        start += size * unit
    return spans


def _flux_parts(body: str, out_features: int | None) -> list[tuple[str, tuple[int, int] | None]]:
    """BFL/kohya Flux names to diffusers FluxTransformer2DModel modules, splitting fused layers by rows."""
    m = re.match(r"double_blocks_(\d+)_(img|txt)_(attn_qkv|attn_proj|mlp_0|mlp_2|mod_lin)$", body)
    if m:
        i, side, layer = m.group(1), m.group(2), m.group(3)
        base = f"transformer_blocks_{i}_"
        if layer == "attn_qkv":
            names = ["attn_to_q", "attn_to_k", "attn_to_v"] if side == "img" else ["attn_add_q_proj", "attn_add_k_proj", "attn_add_v_proj"]
            spans = _split(out_features, [1, 1, 1])
            if spans is None:
                return [(base + f"{side}_attn_qkv", None)]
            return [(base + n, s) for n, s in zip(names, spans)]
        single = {("img", "attn_proj"): "attn_to_out_0", ("txt", "attn_proj"): "attn_to_add_out",
                  ("img", "mlp_0"): "ff_net_0_proj", ("img", "mlp_2"): "ff_net_2",
                  ("txt", "mlp_0"): "ff_context_net_0_proj", ("txt", "mlp_2"): "ff_context_net_2",
                  ("img", "mod_lin"): "norm1_linear", ("txt", "mod_lin"): "norm1_context_linear"}  # fmt: skip
        return [(base + single[(side, layer)], None)]
    m = re.match(r"single_blocks_(\d+)_(linear1|linear2|modulation_lin)$", body)
    if m:
        i, layer = m.group(1), m.group(2)
        base = f"single_transformer_blocks_{i}_"
        if layer == "linear1":  # q, k, v (hidden each) then the MLP (4 x hidden)
            spans = _split(out_features, [1, 1, 1, 4])
            if spans is None:
                return [(base + "linear1", None)]
            return [(base + n, s) for n, s in zip(["attn_to_q", "attn_to_k", "attn_to_v", "proj_mlp"], spans)]
        return [(base + {"linear2": "proj_out", "modulation_lin": "norm_linear"}[layer], None)]
    return [(body, None)]


def _openclip_parts(body: str, out_features: int | None) -> list[tuple[str, tuple[int, int] | None]]:
    """SDXL's OpenCLIP text encoder (checkpoints) to the transformers CLIP names LoRAs use."""
    m = re.match(r"transformer_resblocks_(\d+)_(attn_in_proj|attn_out_proj|mlp_c_fc|mlp_c_proj)$", body)
    if not m:
        return [("te2_openclip_" + body, None)]
    base = f"te2_encoder_layers_{m.group(1)}_"
    layer = m.group(2)
    if layer == "attn_in_proj":
        spans = _split(out_features, [1, 1, 1])
        if spans is None:
            return [("te2_openclip_" + body, None)]
        return [(base + n, s) for n, s in zip(["self_attn_q_proj", "self_attn_k_proj", "self_attn_v_proj"], spans)]
    return [(base + {"attn_out_proj": "self_attn_out_proj", "mlp_c_fc": "mlp_fc1", "mlp_c_proj": "mlp_fc2"}[layer], None)]
