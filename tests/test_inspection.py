"""Architecture recognition and metadata decoding on hand-checked key sets."""

from __future__ import annotations

import json

import pytest

from consentry.formats.tensors import TensorInfo
from consentry.inspection.architecture import recognise
from consentry.inspection.metadata import decode_metadata


def _t(name: str, *shape: int) -> TensorInfo:
    return TensorInfo(name=name, dtype="F16", shape=tuple(shape))


def _kohya_pair(module: str, rank: int, in_f: int, out_f: int) -> list[TensorInfo]:
    return [_t(f"{module}.lora_down.weight", rank, in_f), _t(f"{module}.lora_up.weight", out_f, rank), _t(f"{module}.alpha")]


def test_kohya_sd1_lora_by_cross_attention_width():
    tensors = _kohya_pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 16, 768, 320)
    tensors += _kohya_pair("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 16, 768, 768)
    arch = recognise(tensors)
    assert (arch.kind, arch.family, arch.key_format, arch.rank, arch.module_count) == ("lora", "sd1", "kohya", 16, 2)
    assert arch.best_effort


def test_kohya_sdxl_lora_sgm_block_names():
    tensors = _kohya_pair("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 32, 2048, 640)
    tensors += _kohya_pair("lora_te1_text_model_encoder_layers_0_mlp_fc1", 32, 768, 3072)
    arch = recognise(tensors)
    assert (arch.kind, arch.family, arch.rank) == ("lora", "sdxl", 32)


def test_diffusers_kohya_export_of_an_sd1_lora_is_sd1():
    """diffusers' convert_state_dict_to_kohya names any first text encoder ``lora_te1`` (its
    utils/state_dict_utils.py), SD1.5 included: the 768-wide cross-attention decides."""
    tensors = _kohya_pair("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 4, 768, 320)
    tensors += _kohya_pair("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 4, 768, 768)
    assert recognise(tensors).family == "sd1"
    text_only = _kohya_pair("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 4, 768, 768)
    assert recognise(text_only).family == "sdxl"  # nothing else to go by: kohya's SDXL naming
    with_te2 = tensors + _kohya_pair("lora_te2_text_model_encoder_layers_0_self_attn_q_proj", 4, 1280, 1280)
    assert recognise(with_te2).family == "sdxl"  # a second text encoder is SDXL's alone


def test_sdxl_lora_in_diffusers_block_names_by_width():
    tensors = _kohya_pair("lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", 8, 2048, 640)
    assert recognise(tensors).family == "sdxl"


def test_peft_flux_lora():
    tensors = [
        _t("transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight", 4, 3072),
        _t("transformer.transformer_blocks.0.attn.add_k_proj.lora_B.weight", 3072, 4),
        _t("transformer.single_transformer_blocks.3.proj_out.lora_A.weight", 4, 15360),
        _t("transformer.single_transformer_blocks.3.proj_out.lora_B.weight", 3072, 4),
    ]
    arch = recognise(tensors)
    assert (arch.kind, arch.family, arch.key_format, arch.module_count) == ("lora", "flux", "peft", 2)


def test_locon_conv_layers_are_named():
    tensors = [_t("lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight", 4, 320, 3, 3),
               _t("lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight", 320, 4, 1, 1)]  # fmt: skip
    assert recognise(tensors).variant == "LoCon (conv layers)"


@pytest.mark.parametrize("marker,variant", [("hada_w1_a", "LoHa"), ("lokr_w1", "LoKr"), ("dora_scale", "DoRA")])
def test_lycoris_variants_recognised_and_marked_unfingerprinted(marker, variant):
    arch = recognise([_t(f"lora_unet_down_blocks_0_attentions_0_proj_in.{marker}", 4, 320)])
    assert arch.kind == "lora" and variant in arch.variant and "not yet fingerprinted" in arch.variant


@pytest.mark.parametrize(
    "names,kind,family",
    [
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.final_layer_norm.weight",
          "first_stage_model.decoder.conv_in.weight"], "checkpoint", "sd1"),
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.model.ln_final.weight"], "checkpoint", "sd2"),
        (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.0.transformer.text_model.x",
          "conditioner.embedders.1.model.ln_final.weight"], "checkpoint", "sdxl"),
        (["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight"], "transformer", "flux"),
        (["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight", "quant_conv.weight"], "vae", None),
        (["text_model.encoder.layers.0.mlp.fc1.weight", "text_model.final_layer_norm.weight"], "text-encoder", None),
    ],
)  # fmt: skip
def test_full_models(names, kind, family):
    arch = recognise([_t(n, 4, 4) for n in names])
    assert (arch.kind, arch.family) == (kind, family)


def test_textual_inversion_sd1_and_sdxl():
    assert recognise([_t("emb_params", 4, 768)]).as_dict()["kind"] == "textual-inversion"
    assert recognise([_t("emb_params", 4, 768)]).family == "sd1"
    assert recognise([_t("clip_l", 2, 768), _t("clip_g", 2, 1280)]).family == "sdxl"


def test_unknown_is_said_not_guessed():
    assert recognise([_t("foo.bar", 3)]).kind == "unknown"
    assert recognise([]).kind == "unknown"


def test_kohya_metadata_decoded():
    meta = {
        "ss_output_name": "jane_v1",
        "ss_training_comment": "from her photos",
        "ss_sd_model_name": "v1-5-pruned.safetensors",
        "ss_base_model_version": "sd_v1",
        "ss_tag_frequency": json.dumps({"10_jane doe": {"jane doe": 25, "smiling": 3}, "5_style": {"smiling": 2, "red": 1}}),
        "ss_dataset_dirs": json.dumps({"10_jane doe": {"n_repeats": 10, "img_count": 25}}),
        "ss_training_started_at": "1714000000",
        "modelspec.title": "Jane",
        "modelspec.thumbnail": "data:image/png;base64," + "A" * 5000,
        "sshs_model_hash": "ABCDEF" + "0" * 58,
        "sshs_legacy_hash": "c7278b8f",
        "ssmd_display_name": "Jane",
    }
    decoded = decode_metadata(meta, autov3="abcdef" + "0" * 58)
    assert decoded.kohya["output_name"] == "jane_v1"
    assert decoded.kohya["base_model_version"] == "sd_v1"
    assert decoded.kohya["training_started_at"] == "2024-04-24T23:06:40+00:00"
    folders = {f.folder: f for f in decoded.training_folders}
    assert folders["10_jane doe"].name == "jane doe" and folders["10_jane doe"].repeats == 10
    assert folders["10_jane doe"].images == 25 and folders["5_style"].repeats == 5
    assert decoded.top_tags[:2] == [("jane doe", 25), ("smiling", 5)]
    assert decoded.modelspec["title"] == "Jane"
    assert len(decoded.modelspec["thumbnail"]) < 300
    assert decoded.embedded_hashes["sshs_model_hash"]["status"] == "match"
    assert decoded.embedded_hashes["sshs_legacy_hash"]["status"] == "not checkable"
    assert decoded.other == {"ssmd_display_name": "Jane"}


def test_sshs_mismatch_and_bad_json_reported():
    decoded = decode_metadata({"sshs_model_hash": "ab" * 32, "ss_tag_frequency": "{not json"}, autov3="11" * 32)
    assert decoded.embedded_hashes["sshs_model_hash"]["status"] == "mismatch"
    claimed = decoded.embedded_hashes["sshs_model_hash"]["claimed"]
    assert claimed == "AB" * 32  # printed as every other hash: upper-case hex
    assert decoded.problems == ["ss_tag_frequency: not valid JSON"]
