"""Benchmark: fingerprint a full checkpoint on a hub from byte ranges, against a full download.

A synthetic SD1.5-shaped checkpoint (LDM names, the 16 attention levels of the UNet at real
widths, a CLIP-L text encoder; ~1 GB at --depth 2, fp16) is served by the fake Hugging Face on
127.0.0.1 with Range support, with two derivatives: a fine-tune (every matrix moved a little)
and a likeness LoRA merged in at 0.8. Each is fingerprinted remotely against the local base,
and the figures are printed against the baseline, a full download of the file:

* bytes fetched / file size (goal: under 5%), and time;
* the verdict of the sampled fingerprint against the full local one (fine-tune: `same`), and of
  the LoRA against the sampled merge (`contains`, with the merge coefficient).

    python bench/remote_fingerprint.py [--depth 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from consentry.demo.lora_variants import write_safetensors
from consentry.fingerprints import compare, fingerprint_file
from consentry.formats import read_manifest
from consentry.hubs.fakes.huggingface import HfWorld, make_app
from consentry.hubs.fakes.serving import FakeServer
from consentry.hubs.remote import RemoteSafetensors, fingerprint_remote

# (LDM level, diffusers name kohya's SD1 LoRAs use for it, width)
LEVELS = [("input_blocks.1.1", "down_blocks.0.attentions.0", 320), ("input_blocks.2.1", "down_blocks.0.attentions.1", 320),
          ("input_blocks.4.1", "down_blocks.1.attentions.0", 640), ("input_blocks.5.1", "down_blocks.1.attentions.1", 640),
          ("input_blocks.7.1", "down_blocks.2.attentions.0", 1280), ("input_blocks.8.1", "down_blocks.2.attentions.1", 1280),
          ("middle_block.1", "mid_block.attentions.0", 1280),
          ("output_blocks.3.1", "up_blocks.1.attentions.0", 1280), ("output_blocks.4.1", "up_blocks.1.attentions.1", 1280),
          ("output_blocks.5.1", "up_blocks.1.attentions.2", 1280), ("output_blocks.6.1", "up_blocks.2.attentions.0", 640),
          ("output_blocks.7.1", "up_blocks.2.attentions.1", 640), ("output_blocks.8.1", "up_blocks.2.attentions.2", 640),
          ("output_blocks.9.1", "up_blocks.3.attentions.0", 320), ("output_blocks.10.1", "up_blocks.3.attentions.1", 320),
          ("output_blocks.11.1", "up_blocks.3.attentions.2", 320)]  # fmt: skip
DIFFUSERS = {ldm: name for ldm, name, _w in LEVELS}


def shapes(depth: int) -> dict[str, tuple[int, int]]:
    out = {}
    for level, _diffusers, w in LEVELS:
        for d in range(depth):
            pre = f"model.diffusion_model.{level}.transformer_blocks.{d}."
            for name, shape in (("attn1.to_q", (w, w)), ("attn1.to_k", (w, w)), ("attn1.to_v", (w, w)), ("attn1.to_out.0", (w, w)),
                                ("attn2.to_q", (w, w)), ("attn2.to_k", (w, 768)), ("attn2.to_v", (w, 768)),
                                ("attn2.to_out.0", (w, w)), ("ff.net.0.proj", (8 * w, w)), ("ff.net.2", (w, 4 * w))):  # fmt: skip
                out[pre + name + ".weight"] = shape
        out[f"model.diffusion_model.{level}.proj_in.weight"] = (w, w)
        out[f"model.diffusion_model.{level}.proj_out.weight"] = (w, w)
    for layer in range(12):
        pre = f"cond_stage_model.transformer.text_model.encoder.layers.{layer}."
        for name, shape in (("self_attn.q_proj", (768, 768)), ("self_attn.k_proj", (768, 768)), ("self_attn.v_proj", (768, 768)),
                            ("self_attn.out_proj", (768, 768)), ("mlp.fc1", (3072, 768)), ("mlp.fc2", (768, 3072))):  # fmt: skip
            out[pre + name + ".weight"] = shape
    return out


def lora_modules(all_shapes: dict[str, tuple[int, int]]) -> list[str]:
    """What kohya trains by default: every attention projection of the UNet and the text encoder."""
    return [k for k in all_shapes if any(p in k for p in ("attn1.", "attn2.", "self_attn."))]


def build(root: Path, depth: int) -> tuple[Path, Path, Path, Path]:
    rng = np.random.default_rng(0)
    table = shapes(depth)
    base = {k: (rng.standard_normal(s, dtype=np.float32) * 0.05).astype(np.float16) for k, s in table.items()}
    paths = root / "base.safetensors", root / "finetune.safetensors", root / "merged.safetensors", root / "lora.safetensors"
    write_safetensors(base, paths[0])
    tuned = {}
    for k, w in base.items():
        u, v = rng.standard_normal((w.shape[0], 8), dtype=np.float32), rng.standard_normal((8, w.shape[1]), dtype=np.float32)
        tuned[k] = (w.astype(np.float32) + (u @ v) * 0.001).astype(np.float16)  # ~6% of the weights
    write_safetensors(tuned, paths[1])
    del tuned
    lora, merged = {}, dict(base)
    for k in lora_modules(table):
        out_f, in_f = table[k]
        up = (rng.standard_normal((out_f, 8)) * 0.01).astype(np.float32)
        down = (rng.standard_normal((8, in_f)) / np.sqrt(in_f)).astype(np.float32)
        name = k.removesuffix(".weight")
        if name.startswith("cond_stage_model"):
            key = "lora_te_" + name.removeprefix("cond_stage_model.transformer.").replace(".", "_")
        else:
            ldm = name.removeprefix("model.diffusion_model.")
            level = next(level for level in DIFFUSERS if ldm.startswith(level + "."))
            key = "lora_unet_" + (DIFFUSERS[level] + ldm[len(level):]).replace(".", "_")
        lora[f"{key}.lora_up.weight"], lora[f"{key}.lora_down.weight"] = up, down
        lora[f"{key}.alpha"] = np.array(8.0, dtype=np.float32)
        merged[k] = (base[k].astype(np.float32) + 0.8 * up @ down).astype(np.float16)
    write_safetensors(merged, paths[2])
    write_safetensors(lora, paths[3])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2, help="transformer blocks per attention level (2 gives ~1 GB)")
    parser.add_argument("--budget", type=float, default=0.04, help="share of the file a sample may fetch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        base, tuned, merged, lora = build(root / "files", args.depth)
        print(f"built base, fine-tune, merge ({tuned.stat().st_size / 1e9:.2f} GB each, "
              f"{len(read_manifest(base).tensors)} tensors) in {time.perf_counter() - started:.0f} s")  # fmt: skip
        world = HfWorld(root=root / "hub")
        for name, path in (("fine-tune", tuned), ("merge", merged)):
            world.add_file(world.add_repo(f"someone/{name}"), "model.safetensors", copy_of=path)
        base_manifest = read_manifest(base)
        with FakeServer(make_app(world)) as hub:
            with RemoteSafetensors(f"{hub.url}/someone/fine-tune/resolve/main/model.safetensors") as remote:
                remote.open()
                header = remote.bytes_fetched
                t0 = time.perf_counter()
                result = fingerprint_remote(remote, base=base_manifest, base_name="base", budget=args.budget)
                remote_s = time.perf_counter() - t0
            size = result.size
            print(f"header only: {header:,} bytes = {header / size:.4%} of the file (a full download: {size:,} bytes)")
            t0 = time.perf_counter()
            full = fingerprint_file(tuned, base=base, base_name="base")
            local_s = time.perf_counter() - t0
            verdict = compare(result.fingerprint, full)
            print(f"fine-tune, remote fingerprint: {result.bytes_fetched:,} bytes = {result.fraction:.2%} of the file "
                  f"(goal < 5%; ratio to a full download {result.fraction:.3f}), {result.tensors_read}/{result.tensors_total} "
                  f"tensors, {remote_s:.2f} s; local full fingerprint {local_s:.2f} s")  # fmt: skip
            print(f"  sampled vs full fingerprint: {verdict.verdict} (identity {verdict.identity:.4f}, "
                  f"{verdict.common_modules} modules compared)")  # fmt: skip
            with RemoteSafetensors(f"{hub.url}/someone/merge/resolve/main/model.safetensors") as remote:
                t0 = time.perf_counter()
                merge = fingerprint_remote(remote, base=base_manifest, base_name="base", budget=args.budget)
                merge_s = time.perf_counter() - t0
            found = compare(fingerprint_file(lora), merge.fingerprint)
            if found.containment is None:
                print(f"merge: {found.verdict}: {found.reason}")
                return
            print(f"merge, remote fingerprint: {merge.bytes_fetched:,} bytes = {merge.fraction:.2%}, {merge_s:.2f} s; "
                  f"the LoRA against it: {found.verdict} (containment {found.containment:.3f}, coefficient "
                  f"{found.coefficient:.3f}, {found.common_modules} of the LoRA's {found.a_modules} modules in the sample)")  # fmt: skip


if __name__ == "__main__":
    main()
