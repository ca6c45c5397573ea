"""Robustness of weight fingerprints against real conversions (issue 3), measured.

Builds a tiny diffusers UNet2DConditionModel and CLIP text encoder from configs (no download),
trains LoRAs on them with peft (each on its own random "photos"), saves them with diffusers'
``save_lora_weights``, makes every variant from the issue with the real libraries where they
have a function for it (diffusers ``convert_state_dict_to_kohya`` / ``convert_state_dict_to_diffusers``
/ ``_convert_non_diffusers_lora_to_diffusers``, peft ``get_peft_model_state_dict`` / ``merge_and_unload``)
and kohya's resize / merge maths otherwise, then reports the recall of SHA256, AutoV3,
content_hash and the fingerprint for each, and false positives over all pairs of independently
trained LoRAs. Needs the ``eval`` extra: pip install -e '.[eval]'.

Run: python bench/fingerprint_robustness.py [--loras 50] [--positives 50] [--steps 30] [--keep]
(about 15 minutes on 2 cores; every row gets one variant per positive LoRA, so >= 50 each by default)
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' "Loading weights" / "Writing model shards" bars
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import argparse
import copy
import itertools
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers  # noqa: E402
from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_diffusers, convert_state_dict_to_kohya  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from consentry.fingerprints import DEFAULT_THRESHOLDS, compare, fingerprint_file, join_fingerprints  # noqa: E402
from consentry.fingerprints.model import BASE_DIFFERENCE_LIMIT  # noqa: E402
from consentry.identity.identify import identify  # noqa: E402

RANK, ALPHA = 8, 16
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


# --- models and training --------------------------------------------------------------------------


def base_models(seed: int = 0) -> tuple[UNet2DConditionModel, CLIPTextModel]:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
    )  # fmt: skip
    te = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      vocab_size=1000, max_position_embeddings=77, bos_token_id=0, eos_token_id=2))  # fmt: skip
    return unet, te


class Trainer:
    """LoRA training on random data: each LoRA has its own "photos" (data seed) and init seed."""

    def __init__(self) -> None:
        self.unet, self.te = base_models()
        self.unet_base = copy.deepcopy(self.unet.state_dict())
        self.te_base = copy.deepcopy(self.te.state_dict())

    def fresh(self, init_seed: int):
        unet, te = base_models()
        unet.load_state_dict(self.unet_base)
        te.load_state_dict(self.te_base)
        torch.manual_seed(init_seed)
        unet.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
        te.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TE_TARGETS, init_lora_weights="gaussian"))
        with torch.no_grad():  # gaussian init puts B at zero too; B=0 is the training start
            for model in (unet, te):
                for name, p in model.named_parameters():
                    if "lora_B" in name:
                        p.zero_()
        return unet, te

    @staticmethod
    def train(unet, te, data_seed: int, steps: int) -> None:
        g = torch.Generator().manual_seed(data_seed)
        latents, tokens, targets = torch.randn(8, 4, 8, 8, generator=g), torch.randint(3, 1000, (8, 12), generator=g), torch.randn(8, 4, 8, 8, generator=g)
        params = [p for p in list(unet.parameters()) + list(te.parameters()) if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=2e-3)
        for _ in range(steps):
            i = torch.randint(0, 8, (4,), generator=g)
            t = torch.randint(0, 1000, (4,), generator=g)
            loss = ((unet(latents[i], t, te(tokens[i])[0]).sample - targets[i]) ** 2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()


def lora_layers(unet, te) -> tuple[dict, dict]:
    return (convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
            convert_state_dict_to_diffusers(get_peft_model_state_dict(te)))  # fmt: skip


def save_diffusers(unet, te, folder: Path) -> Path:
    u, t = lora_layers(unet, te)
    StableDiffusionPipeline.save_lora_weights(
        str(folder), unet_lora_layers=u, text_encoder_lora_layers=t,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=te.peft_config["default"].to_dict(),
    )  # fmt: skip
    return folder / "pytorch_lora_weights.safetensors"


# --- variants ---------------------------------------------------------------------------------------


def kohya_of(path: Path) -> dict:
    """diffusers' own PEFT -> kohya export (alpha written as the rank: lora_alpha is lost)."""
    return convert_state_dict_to_kohya(convert_all_state_dict_to_peft(load_file(str(path))))


def factors(unet, te) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Every module's (up, down, alpha) under kohya names (as kohya's trainer and peft's
    convert_peft_sd_lora_to_kohya_ss.py write them: alpha = lora_alpha). Not from diffusers'
    kohya export: for a save_lora_weights file it leaves attention keys as `..._to_q_lora.down.weight`
    without alpha (diffusers 0.42), which kohya loaders would not apply."""
    out = {}
    for prefix, model in (("lora_unet_", unet), ("lora_te1_", te)):
        sd = get_peft_model_state_dict(model)
        for key, value in sd.items():
            if key.endswith(".lora_A.weight"):
                m = key[: -len(".lora_A.weight")]
                out[prefix + m.replace(".", "_")] = (sd[m + ".lora_B.weight"].float(), value.float(), float(ALPHA))
    return out


def to_kohya(mods: dict) -> dict:
    sd = {}
    for m, (up, down, alpha) in mods.items():
        sd[m + ".lora_up.weight"], sd[m + ".lora_down.weight"], sd[m + ".alpha"] = up.contiguous(), down.contiguous(), torch.tensor(alpha)
    return sd


def delta(up: torch.Tensor, down: torch.Tensor, alpha: float) -> torch.Tensor:
    return (alpha / down.shape[0]) * up.flatten(1) @ down.flatten(1)


def refactor(mods: dict, seed: int, permute: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, (up, down, alpha) in mods.items():
        r = down.shape[0]
        q = torch.randperm(r, generator=g) if permute else None
        if permute:
            out[m] = (up[:, q], down[q], alpha)
        else:
            mat = torch.randn(r, r, generator=g, dtype=torch.float64) + 3 * torch.eye(r, dtype=torch.float64)
            inv = torch.linalg.inv(mat)
            out[m] = ((up.flatten(1).double() @ mat).float().reshape(up.shape), (inv @ down.flatten(1).double()).float().reshape(down.shape), alpha)
    return out


def resize(mods: dict, new_rank: int) -> dict:
    """kohya networks/resize_lora.py: SVD of ΔW, lora_up = U·S, lora_down = Vh, alpha = new_rank."""
    out = {}
    for m, (up, down, alpha) in mods.items():
        u, s, vh = torch.linalg.svd(delta(up, down, alpha).double(), full_matrices=False)
        new_up = (u[:, :new_rank] * s[:new_rank]).float()
        new_down = vh[:new_rank].float()
        out[m] = (new_up.reshape(up.shape[0], new_rank, *up.shape[2:]), new_down.reshape(new_rank, *down.shape[1:]), float(new_rank))
    return out


def svd_merge(parts: list[tuple[dict, float]], new_rank: int | None) -> dict:
    """kohya networks/svd_merge_lora.py: ΔW = Σ ratio·ΔWᵢ, SVD to new_rank, U/Vh clamped at the 0.99 quantile.
    ``new_rank=None`` keeps every direction (lossless, like ``merge_lora --concat``)."""
    out = {}
    for m in parts[0][0]:
        present = [(mods[m], ratio) for mods, ratio in parts if m in mods]
        total = sum(ratio * delta(*f) for f, ratio in present).double()
        up0, down0, _ = present[0][0]
        u, s, vh = torch.linalg.svd(total, full_matrices=False)
        rank = min(new_rank or len(present) * down0.shape[0], s.shape[0])
        u, vh = u[:, :rank] * s[:rank], vh[:rank]
        if new_rank is not None:
            hi = torch.quantile(torch.cat([u.flatten(), vh.flatten()]).abs().float(), 0.99).double()
            u, vh = u.clamp(-hi, hi), vh.clamp(-hi, hi)
        out[m] = (u.float().reshape(up0.shape[0], rank, *up0.shape[2:]), vh.float().reshape(rank, *down0.shape[1:]), float(rank))
    return out


def kohya_default_merge(parts: list[tuple[dict, float]]) -> dict:
    """kohya networks/merge_lora.py merge_lora_models (no --concat): ups summed, downs summed,
    each scaled by sqrt(alpha/base_alpha)·ratio... with equal alphas: sqrt(ratio) on each side."""
    out = {}
    for m in parts[0][0]:
        ups = sum(mods[m][0] * ratio**0.5 for mods, ratio in parts if m in mods)
        downs = sum(mods[m][1] * ratio**0.5 for mods, ratio in parts if m in mods)
        out[m] = (ups, downs, parts[0][0][m][2])
    return out


def merge_checkpoint(unet, te, ratio: float, use_peft: bool) -> dict:
    """The model with the LoRA merged in, as one file: UNet keys (diffusers names) + text_encoder.*"""
    unet, te = copy.deepcopy(unet), copy.deepcopy(te)
    if use_peft and ratio == 1.0:  # peft's own merge
        for model in (unet, te):
            for module in model.modules():
                if hasattr(module, "merge") and hasattr(module, "lora_A"):
                    module.merge()
    else:
        for model in (unet, te):
            for module in model.modules():
                if hasattr(module, "lora_A") and "default" in module.lora_A:
                    base = module.get_base_layer()
                    d = module.get_delta_weight("default")
                    with torch.no_grad():
                        base.weight += ratio * d
    sd = {}
    for prefix, model in (("", unet), ("text_encoder.", te)):
        for key, value in model.state_dict().items():
            if "lora_" in key:
                continue
            sd[prefix + key.replace(".base_layer", "")] = value.detach().to(torch.float16).contiguous()
    return sd


# --- the run ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loras", type=int, default=50)
    ap.add_argument("--positives", type=int, default=50, help="LoRAs that get every variant (<= --loras)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep", action="store_true", help="keep the generated model files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="consentry-fp-eval-"))
    trainer = Trainer()

    # The registered base, in the precision such bases are distributed in.
    base_path = work / "tiny-sd-fp16.safetensors"
    unet0, te0 = trainer.fresh(0)
    save_file(merge_checkpoint(unet0, te0, 0.0, use_peft=False), str(base_path))
    # Another model of the same architecture (other init): a wrong base must give "could not compare".
    wrong_base = work / "other-tiny-sd-fp16.safetensors"
    save_file(merge_checkpoint(*base_models(seed=1), 0.0, use_peft=False), str(wrong_base))

    models, files = [], []
    for i in range(args.loras):
        unet, te = trainer.fresh(1000 + i)
        trainer.train(unet, te, data_seed=5000 + i, steps=args.steps)
        folder = work / f"lora{i:02d}"
        files.append(save_diffusers(unet, te, folder))
        models.append((unet, te))
    print(f"trained {args.loras} LoRAs ({args.steps} steps each) in {time.time() - started:.0f} s", flush=True)

    prints = [fingerprint_file(p) for p in files]
    kohya_mods = [factors(unet, te) for unet, te in models]

    rows: dict[str, list[dict]] = defaultdict(list)
    groups: dict[str, str] = {}

    def record(name: str, group: str, original: Path, variant: Path, base: Path | None = None, extra: str = "",
               a_print=None) -> None:  # fmt: skip
        """One positive: A is ``original`` (or ``a_print``, a fingerprint of it), B the variant file."""
        groups[name] = group
        a_id, b_id = identify(original), identify(variant)
        fa = a_print if a_print is not None else prints[files.index(original)]
        try:
            fb = fingerprint_file(variant, base=base, base_name=base.stem if base else None)
            result = compare(fa, fb)
        except Exception as exc:  # a FingerprintError is a "could not compare"; anything else is a bug, shown
            from consentry.errors import ConsentryError
            from consentry.fingerprints.compare import could_not_compare

            if not isinstance(exc, ConsentryError):
                raise
            fb, result = None, could_not_compare(str(exc))
        ha, hb = (a_id.hashes.as_dict() if a_id.hashes else {}), (b_id.hashes.as_dict() if b_id.hashes else {})
        rows[name].append({
            "sha256": ha.get("sha256") is not None and ha.get("sha256") == hb.get("sha256"),
            "autov3": ha.get("autov3") is not None and ha.get("autov3") == hb.get("autov3"),
            "content": a_id.content_hash is not None and a_id.content_hash == b_id.content_hash,
            "verdict": result.verdict, "identity": result.identity, "containment": result.containment,
            "coefficient": result.coefficient, "extra": extra, "reason": result.reason,
            "relative": fb.relative_difference if fb is not None else None,
        })  # fmt: skip

    g = torch.Generator().manual_seed(42)
    skipped: set[str] = set()
    for k in range(args.positives):
        if k and k % 10 == 0:
            print(f"  {k} of {args.positives} positives done ({time.time() - started:.0f} s)", flush=True)
        src, (unet, te), mods = files[k], models[k], kohya_mods[k]
        d = work / f"var{k:02d}"
        d.mkdir()
        original = load_file(str(src))
        # lossless: key formats, alpha, metadata, container
        kohya = kohya_of(src)
        save_file(kohya, str(d / "kohya.safetensors"))
        record("kohya keys (diffusers convert_state_dict_to_kohya; alpha := rank)", "lossless", src, d / "kohya.safetensors")
        native = d / "kohya_native.safetensors"
        save_file(to_kohya(mods), str(native))
        record("kohya keys (kohya trainer naming, alpha = lora_alpha)", "lossless", src, native)
        # kohya -> diffusers with diffusers' own reader of kohya files (what load_lora_weights runs)
        converted, alphas = StableDiffusionPipeline.lora_state_dict(str(native))
        save_file({key: v.contiguous() for key, v in converted.items()}, str(d / "kohya2diff_sd.safetensors"))
        record("kohya -> diffusers (StableDiffusionPipeline.lora_state_dict, saved as converted; alphas not in the file)", "lossless",
               src, d / "kohya2diff_sd.safetensors")  # fmt: skip
        u4, t4 = base_models()
        u4.load_state_dict(trainer.unet_base)
        t4.load_state_dict(trainer.te_base)
        StableDiffusionPipeline.load_lora_into_unet(converted, alphas, u4, adapter_name="default")
        StableDiffusionPipeline.load_lora_into_text_encoder(converted, alphas, t4, adapter_name="default")
        record("kohya -> diffusers (lora_state_dict + load_lora_into_unet/_text_encoder, then save_lora_weights)", "lossless",
               src, save_diffusers(u4, t4, d / "kohya2diff"))  # fmt: skip
        try:
            back, _alphas = _convert_non_diffusers_lora_to_diffusers(dict(kohya))
            save_file(back, str(d / "kohya2diff.safetensors"))
            record("diffusers' kohya export -> diffusers (_convert_non_diffusers_lora_to_diffusers)", "lossless", src, d / "kohya2diff.safetensors")
        except ValueError as exc:  # diffusers 0.42 cannot read back its own kohya export of attention keys
            skipped.add(f"diffusers' own kohya export read back by _convert_non_diffusers_lora_to_diffusers: diffusers raised "
                        f"{str(exc).splitlines()[0]} (the kohya-trainer-named file converts: rows above)")  # fmt: skip
        old = {("unet." + key): v for key, v in convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)).items()}
        old.update({("text_encoder." + key): v for key, v in get_peft_model_state_dict(te).items()})
        old = {key.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v for key, v in old.items()}
        save_file(old, str(d / "old_diffusers.safetensors"))
        record("old diffusers keys (lora.down / lora.up)", "lossless", src, d / "old_diffusers.safetensors")
        # PEFT: one adapter per model, as PeftModel.save_pretrained writes them (base_model.model.* keys,
        # adapter_config.json beside); the text encoder's by transformers' own save_pretrained.
        (d / "peft" / "unet").mkdir(parents=True)
        save_file({"base_model.model." + key: v for key, v in get_peft_model_state_dict(unet).items()}, str(d / "peft" / "unet" / "adapter_model.safetensors"))
        (d / "peft" / "unet" / "adapter_config.json").write_text(json.dumps(unet.peft_config["default"].to_dict(), default=list))
        te.save_pretrained(str(d / "peft" / "text_encoder"))
        peft_unet, peft_te = d / "peft" / "unet" / "adapter_model.safetensors", d / "peft" / "text_encoder" / "adapter_model.safetensors"
        record("diffusers -> PEFT UNet adapter file alone", "subset", src, peft_unet)
        peft_print = join_fingerprints([fingerprint_file(peft_unet), fingerprint_file(peft_te)])
        groups["diffusers -> PEFT (UNet + text-encoder adapters, fingerprints joined)"] = "lossless"
        r = compare(prints[k], peft_print)
        rows["diffusers -> PEFT (UNet + text-encoder adapters, fingerprints joined)"].append({
            "sha256": False, "autov3": False, "content": False, "verdict": r.verdict, "identity": r.identity,
            "containment": r.containment, "coefficient": r.coefficient, "extra": "", "reason": r.reason, "relative": None})  # fmt: skip
        # PEFT -> others: A is the PEFT export, B what the libraries make of it
        peft_kohya = convert_state_dict_to_kohya({**{"unet." + key: v for key, v in get_peft_model_state_dict(unet).items()},
                                                  **{"text_encoder." + key: v for key, v in get_peft_model_state_dict(te).items()}})  # fmt: skip
        save_file(peft_kohya, str(d / "peft2kohya.safetensors"))
        record("PEFT -> kohya (convert_state_dict_to_kohya on the PEFT state dicts)", "lossless", peft_unet, d / "peft2kohya.safetensors", a_print=peft_print)
        record("PEFT -> diffusers (save_lora_weights)", "lossless", peft_unet, src, a_print=peft_print)
        record("PEFT -> kohya trainer naming", "lossless", peft_unet, native, a_print=peft_print)
        rescaled = {key: (v * 2 if key.endswith(".alpha") else v) for key, v in kohya.items()}
        save_file(rescaled, str(d / "alpha2.safetensors"))
        record("every .alpha tensor of the kohya file doubled (uneven across modules: not a uniform rescale)", "lossless", src, d / "alpha2.safetensors")
        save_file(original, str(d / "nometa.safetensors"))
        record("header metadata stripped", "lossless", src, d / "nometa.safetensors")
        save_file(original, str(d / "meta.safetensors"), metadata={"ss_output_name": "someone_else", "format": "pt", "lora_adapter_metadata": "{}"})
        record("header metadata rewritten", "lossless", src, d / "meta.safetensors")
        torch.save(original, d / "model.ckpt")
        record(".safetensors -> .ckpt (torch.save)", "lossless", src, d / "model.ckpt")
        from_ckpt = torch.load(d / "model.ckpt", weights_only=True)  # the .ckpt just written, read back by torch
        save_file({key: v.contiguous() for key, v in from_ckpt.items()}, str(d / "from_ckpt.safetensors"), metadata={"format": "pt"})
        record(".ckpt -> .safetensors (torch.load(weights_only=True), save_file)", "lossless", src, d / "from_ckpt.safetensors")
        # dtype and re-factorisation
        save_file({key: v.half() for key, v in original.items()}, str(d / "fp16.safetensors"))
        record("fp16 cast", "dtype", src, d / "fp16.safetensors")
        save_file({key: v.bfloat16() for key, v in original.items()}, str(d / "bf16.safetensors"))
        record("bf16 cast", "dtype", src, d / "bf16.safetensors")
        save_file(to_kohya(refactor(mods, k)), str(d / "refactor.safetensors"))
        record("re-factorised B·Q, Q⁻¹·A", "lossless", src, d / "refactor.safetensors")
        save_file(to_kohya(refactor(mods, k, permute=True)), str(d / "shuffle.safetensors"))
        record("rank dimension shuffled (merge_lora --shuffle)", "lossless", src, d / "shuffle.safetensors")
        # rank resize
        save_file(to_kohya(resize(mods, RANK // 2)), str(d / "r_half.safetensors"))
        record(f"SVD rank resize {RANK} -> {RANK // 2}", "resize", src, d / "r_half.safetensors")
        save_file(to_kohya(resize(mods, RANK // 4)), str(d / "r_quarter.safetensors"))
        record(f"SVD rank resize {RANK} -> {RANK // 4}", "resize 1/4", src, d / "r_quarter.safetensors")
        # merged into the base checkpoint, stored fp16
        save_file(merge_checkpoint(unet, te, 1.0, use_peft=True), str(d / "merged.safetensors"))
        record("merged into base checkpoint (peft merge), fp16", "merge", src, d / "merged.safetensors", base=base_path)
        save_file(merge_checkpoint(unet, te, 0.5, use_peft=False), str(d / "merged05.safetensors"))
        record("merged into base checkpoint at 0.5, fp16", "merge", src, d / "merged05.safetensors", base=base_path)
        record("NOT comparable: merged checkpoint measured against another model as base", "wrong base", src, d / "merged.safetensors",
               base=wrong_base)  # fmt: skip
        # sums with other LoRAs (drawn from every other trained LoRA)
        pool = [j for j in range(args.loras) if j != k]
        for draw in range(4):
            n_other = int(torch.randint(1, 5, (1,), generator=g))
            others = [pool[int(x)] for x in torch.randperm(len(pool), generator=g)[:n_other]]
            weight = [0.3, 0.5, 0.7, 1.0][draw]
            parts = [(mods, weight)] + [(kohya_mods[j], 0.3 + 0.7 * float(torch.rand(1, generator=g))) for j in others]
            tag = f"A at {weight}, {n_other} others"
            group = "merge >= 0.5" if weight >= 0.5 else "merge < 0.5"
            save_file(to_kohya(svd_merge(parts, None)), str(d / f"sum{draw}.safetensors"))
            record(f"sum with 1-4 LoRAs (0.3-1.0), A weight {'>= 0.5' if weight >= 0.5 else '0.3'}, lossless", group, src, d / f"sum{draw}.safetensors", extra=tag)
            save_file(to_kohya(svd_merge(parts, RANK)), str(d / f"svdsum{draw}.safetensors"))
            record(f"svd_merge_lora to rank {RANK}, A weight {'>= 0.5' if weight >= 0.5 else '0.3'}", group, src, d / f"svdsum{draw}.safetensors", extra=tag)
        other = pool[k % len(pool)]
        save_file(to_kohya(kohya_default_merge([(mods, 0.7), (kohya_mods[other], 0.7)])), str(d / "kohyamerge.safetensors"))
        record("kohya merge_lora default (ups+downs summed), 2 LoRAs at 0.7", "info", src, d / "kohyamerge.safetensors")
        # further fine-tuning on new photos
        for extra_steps in (10, 30):
            u2, t2 = copy.deepcopy(unet), copy.deepcopy(te)
            trainer.train(u2, t2, data_seed=9000 + k, steps=extra_steps)
            path = save_diffusers(u2, t2, d / f"ft{extra_steps}")
            record(f"further fine-tuning, +{extra_steps} steps on new data", "info", src, path)
        # not a copy: a new LoRA trained on the same "photos" with another seed (what weights cannot link)
        u3, t3 = trainer.fresh(7000 + k)
        trainer.train(u3, t3, data_seed=5000 + k, steps=args.steps)
        record("NOT a copy: retrained on the same data, new seed", "retrained", src, save_diffusers(u3, t3, d / "retrained"))
        # subsets of modules
        no_te = {key: v for key, v in original.items() if not key.startswith("text_encoder.")}
        save_file(no_te, str(d / "no_te.safetensors"), metadata={"format": "pt"})
        record("text encoder dropped", "subset", src, d / "no_te.safetensors")
        half = {key: v for n, key in enumerate(sorted(original)) if (n // 2) % 2 == 0 for v in [original[key]]}
        save_file(half, str(d / "half.safetensors"))
        record("half of the modules removed", "subset", src, d / "half.safetensors")

    # negatives: every pair of independently trained LoRAs
    negatives = [compare(prints[i], prints[j]) for i, j in itertools.combinations(range(args.loras), 2)]
    fps = [r for r in negatives if r.related]
    cnc = [r for r in negatives if r.verdict == "could not compare"]

    print(f"\n## fingerprint robustness ({args.positives} LoRAs x each transformation; rank {RANK}, alpha {ALPHA}, "
          f"UNet+CLIP LoRA with {prints[0].module_count} modules incl. conv; thresholds {DEFAULT_THRESHOLDS})\n")  # fmt: skip
    print("| transformation | group | n | SHA256 | AutoV3 | content_hash | fingerprint (any verdict) | 95% lower bound | verdicts | could not compare | identity (median) | containment (median) | coefficient (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    import statistics as st

    related = ("same", "derived", "contains")
    for name, items in rows.items():
        n = len(items)
        pct = lambda key: f"{100 * sum(bool(x[key]) for x in items) / n:.0f}%"  # noqa: E731
        hits = sum(x["verdict"] in related for x in items)
        verdicts = ", ".join(f"{v} {c}" for v, c in sorted(_count(x["verdict"] for x in items).items()))
        med = lambda key: f"{st.median(x[key] for x in items if x[key] is not None):.3f}" if any(x[key] is not None for x in items) else "-"  # noqa: E731
        cnc_n = sum(x["verdict"] == "could not compare" for x in items)
        print(f"| {name} | {groups[name]} | {n} | {pct('sha256')} | {pct('autov3')} | {pct('content')} | **{100 * hits / n:.0f}%** | "
              f"{100 * wilson_lower(hits, n):.1f}% | {verdicts} | {cnc_n} | {med('identity')} | {med('containment')} | {med('coefficient')} |")  # fmt: skip
    by_group: dict[str, list] = defaultdict(list)
    for name, items in rows.items():
        by_group[groups[name]].extend(items)
    print("\n| group | n | fingerprint recall | 95% lower bound | could not compare | goal | met |")
    print("|---|---|---|---|---|---|---|")
    goals = {"lossless": 0.99, "dtype": 0.99, "resize 1/4": 0.95, "merge": 0.95, "merge >= 0.5": 0.95}
    for group, items in by_group.items():
        hits = sum(x["verdict"] in related for x in items)
        rec, goal = hits / len(items), goals.get(group)
        met = "-" if goal is None else ("yes" if rec >= goal else "**no**")
        print(f"| {group} | {len(items)} | {100 * rec:.1f}% | {100 * wilson_lower(hits, len(items)):.1f}% | "
              f"{sum(x['verdict'] == 'could not compare' for x in items)} | {'-' if goal is None else f'>= {goal:.0%}'} | {met} |")  # fmt: skip
    rel = [x["relative"] for name, items in rows.items() if groups[name] == "merge" for x in items if x["relative"] is not None]
    wrong = [x for name, items in rows.items() if groups[name] == "wrong base" for x in items]
    if rel:
        print(f"\nmerged checkpoints against their base: ‖W − W₀‖/‖W₀‖ median {st.median(rel):.4f}, max {max(rel):.4f} "
              f"(limit for a real base: {BASE_DIFFERENCE_LIMIT})")  # fmt: skip
    if wrong:
        print(f"against another model as base: {sum(x['verdict'] == 'could not compare' for x in wrong)}/{len(wrong)} could not compare, "
              f"e.g. {wrong[0]['reason'][:160]}")  # fmt: skip
    idents = sorted(r.identity for r in negatives if r.identity is not None)
    conts = sorted(r.containment for r in negatives if r.containment is not None)
    print(f"\nnegatives: {len(negatives)} pairs of independently trained LoRAs: {len(fps)} false positives "
          f"({1000 * len(fps) / len(negatives):.2f} per 1,000; goal <= 1), {len(cnc)} could not compare")  # fmt: skip
    print(f"  identity   max {idents[-1]:.3f}, 99.9th pct {idents[int(0.999 * len(idents)) - 1]:.3f}, median {st.median(idents):.3f}  (detect >= {DEFAULT_THRESHOLDS.detect})")
    print(f"  containment max {conts[-1]:.3f}, 99.9th pct {conts[int(0.999 * len(conts)) - 1]:.3f}, median {st.median(conts):.3f}  (contains >= {DEFAULT_THRESHOLDS.contains})")
    for note in sorted(skipped):
        print(f"not measured: {note}")
    if args.keep:
        print(f"files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.time() - started:.0f} s")


def wilson_lower(hits: int, n: int, z: float = 1.96) -> float:
    """95% Wilson score lower bound of a proportion (hits of n)."""
    if n == 0:
        return 0.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5)
    return (centre - spread) / (1 + z * z / n)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


if __name__ == "__main__":
    main()
