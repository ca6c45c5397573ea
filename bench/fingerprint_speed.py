"""Speed of weight fingerprints (issue 3).

1. Fingerprinting a synthetic 144 MB SD1.5 LoRA (kohya keys and shapes of a rank-128 fp16 LoRA
   on the UNet attention blocks and the CLIP text encoder) on one core. Goal: under 1 s.
2. ``similar`` over 1,000,000 synthetic fingerprint vectors in a usearch HNSW index: build time,
   memory, median query time (goal under 50 ms), plus re-scoring the shortlist from stored sketches.

3. A ~6 GB SDXL-shaped checkpoint (LDM names, fp16) fingerprinted against its base: time and
   peak memory (tensors are streamed one at a time; the whole model is never loaded).

Run: python bench/fingerprint_speed.py [--vectors 1000000] [--checkpoint] [--skip-similar]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # "on one core": before numpy loads BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from consentry.fingerprints import compare, fingerprint_file
from consentry.fingerprints.sketch import VECTOR_DIM, projection


def sd15_modules() -> list[tuple[str, int, int, bool]]:
    """(kohya module name, out, in, is 1x1 conv) for every layer kohya's LoRA trains on SD1.5."""
    mods = []
    blocks = [(f"down_blocks_{b}_attentions_{a}", c) for b, c in ((0, 320), (1, 640), (2, 1280)) for a in (0, 1)]
    blocks += [("mid_block_attentions_0", 1280)]
    blocks += [(f"up_blocks_{b}_attentions_{a}", c) for b, c in ((1, 1280), (2, 640), (3, 320)) for a in (0, 1, 2)]
    for block, c in blocks:
        p = f"lora_unet_{block}"
        mods.append((f"{p}_proj_in", c, c, True))
        mods.append((f"{p}_proj_out", c, c, True))
        t = f"{p}_transformer_blocks_0"
        for name, out, inp in (("attn1_to_q", c, c), ("attn1_to_k", c, c), ("attn1_to_v", c, c), ("attn1_to_out_0", c, c),
                               ("attn2_to_q", c, c), ("attn2_to_k", c, 768), ("attn2_to_v", c, 768), ("attn2_to_out_0", c, c),
                               ("ff_net_0_proj", 8 * c, c), ("ff_net_2", c, 4 * c)):  # fmt: skip
            mods.append((f"{t}_{name}", out, inp, False))
    for layer in range(12):
        p = f"lora_te_text_model_encoder_layers_{layer}"
        for name, out, inp in (("self_attn_q_proj", 768, 768), ("self_attn_k_proj", 768, 768), ("self_attn_v_proj", 768, 768),
                               ("self_attn_out_proj", 768, 768), ("mlp_fc1", 3072, 768), ("mlp_fc2", 768, 3072)):  # fmt: skip
            mods.append((f"{p}_{name}", out, inp, False))
    return mods


def build_sd15_lora(path: Path, rank: int = 128) -> int:
    rng = np.random.default_rng(0)
    tensors = {}
    for name, out, inp, conv in sd15_modules():
        down = (rng.standard_normal((rank, inp), dtype=np.float32) * 0.02).astype(np.float16)
        up = (rng.standard_normal((out, rank), dtype=np.float32) * 0.002).astype(np.float16)
        tensors[f"{name}.lora_down.weight"] = down.reshape(rank, inp, 1, 1) if conv else down
        tensors[f"{name}.lora_up.weight"] = up.reshape(out, rank, 1, 1) if conv else up
        tensors[f"{name}.alpha"] = np.array(rank / 2, dtype=np.float16)
    save_file(tensors, str(path), metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(rank / 2)})
    return path.stat().st_size


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_fingerprint(workdir: Path) -> None:
    path = workdir / "sd15_rank128.safetensors"
    size = build_sd15_lora(path)
    with open(path, "rb") as fh:  # warm the page cache: we time fingerprinting, not the disk
        while fh.read(1 << 24):
            pass
    t0 = time.perf_counter()
    fp = fingerprint_file(path)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        fp = fingerprint_file(path)
        warm.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    projection.cache_clear()
    for _ in range(1):
        fingerprint_file(path)
    uncached = time.perf_counter() - t0
    print("## fingerprint a synthetic SD1.5 LoRA (kohya keys, rank 128, fp16), one BLAS thread")
    print(f"file: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB), {fp.module_count} modules")
    print(f"first call in process (projections generated): {cold:.3f} s")
    print(f"projections regenerated again:                 {uncached:.3f} s")
    print(f"warm (median of 5):                             {statistics.median(warm):.3f} s   goal < 1 s")
    t0 = time.perf_counter()
    n = 200
    for _ in range(n):
        compare(fp, fp)
    print(f"compare two SD1.5 fingerprints from sketches:   {(time.perf_counter() - t0) / n * 1000:.2f} ms")
    print(f"stored fingerprint: {len(fp.to_bytes()) / 1024:.0f} KiB sketches + {VECTOR_DIM * 4} B vector")
    return fp


def bench_similar(count: int, fp) -> None:
    from consentry.fingerprints.index import new_index, search

    rng = np.random.default_rng(1)
    before = rss_mib()
    index = new_index()
    batch = 100_000
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        v = rng.standard_normal((n, VECTOR_DIM), dtype=np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        index.add(np.arange(start, start + n, dtype=np.uint64), v, threads=os.cpu_count() or 1)
    build = time.perf_counter() - t0
    after = rss_mib()
    query = fp.vector()
    index.add(np.array([count], dtype=np.uint64), query[None, :])
    times = []
    hits = 0
    for i in range(200):
        q = query if i % 2 == 0 else rng.standard_normal(VECTOR_DIM).astype(np.float32)
        t0 = time.perf_counter()
        found = search(index, q, 30)
        times.append(time.perf_counter() - t0)
        if i % 2 == 0:
            hits += found[0][0] == count
    times.sort()
    print()
    print(f"## similar: usearch HNSW (cosine, i8, M=16) over {count:,} synthetic {VECTOR_DIM}-d vectors")
    print(f"build: {build:.1f} s on {os.cpu_count()} threads ({count / build:,.0f} vectors/s)")
    print(f"memory: index {index.memory_usage / 2**20:.0f} MiB (usearch), process RSS +{after - before:.0f} MiB")
    print(f"query (k=30): median {statistics.median(times) * 1000:.2f} ms, p99 {times[int(len(times) * 0.99) - 1] * 1000:.2f} ms  goal median < 50 ms")
    print(f"planted copy found first: {hits}/100")
    t0 = time.perf_counter()
    for _ in range(30):
        compare(fp, fp)
    print(f"re-scoring a 30-candidate shortlist from SD1.5 sketches: {(time.perf_counter() - t0) * 1000:.1f} ms")


def sdxl_tensors() -> list[tuple[str, tuple[int, ...]]]:
    """The big matrices of SDXL in LDM/SGM names: UNet transformer blocks and both text encoders
    (OpenCLIP with its fused in_proj), about 2.9 B parameters."""
    out = []
    def block(prefix: str, c: int) -> None:
        for name, shape in (("attn1.to_q", (c, c)), ("attn1.to_k", (c, c)), ("attn1.to_v", (c, c)), ("attn1.to_out.0", (c, c)),
                            ("attn2.to_q", (c, c)), ("attn2.to_k", (c, 2048)), ("attn2.to_v", (c, 2048)), ("attn2.to_out.0", (c, c)),
                            ("ff.net.0.proj", (8 * c, c)), ("ff.net.2", (c, 4 * c))):  # fmt: skip
            out.append((f"{prefix}.{name}.weight", shape))
    unet = "model.diffusion_model."
    levels = [("input_blocks.4.1", 640, 2), ("input_blocks.5.1", 640, 2), ("input_blocks.7.1", 1280, 10), ("input_blocks.8.1", 1280, 10),
              ("middle_block.1", 1280, 10), ("output_blocks.0.1", 1280, 10), ("output_blocks.1.1", 1280, 10), ("output_blocks.2.1", 1280, 10),
              ("output_blocks.3.1", 640, 2), ("output_blocks.4.1", 640, 2), ("output_blocks.5.1", 640, 2)]  # fmt: skip
    for name, c, depth in levels:
        out += [(f"{unet}{name}.proj_in.weight", (c, c)), (f"{unet}{name}.proj_out.weight", (c, c))]
        for i in range(depth):
            block(f"{unet}{name}.transformer_blocks.{i}", c)
    for i in range(12):
        p = f"conditioner.embedders.0.transformer.text_model.encoder.layers.{i}"
        out += [(f"{p}.self_attn.{n}.weight", (768, 768)) for n in ("q_proj", "k_proj", "v_proj", "out_proj")]
        out += [(f"{p}.mlp.fc1.weight", (3072, 768)), (f"{p}.mlp.fc2.weight", (768, 3072))]
    for i in range(32):
        p = f"conditioner.embedders.1.model.transformer.resblocks.{i}"
        out += [(f"{p}.attn.in_proj_weight", (3 * 1280, 1280)), (f"{p}.attn.out_proj.weight", (1280, 1280)),
                (f"{p}.mlp.c_fc.weight", (5120, 1280)), (f"{p}.mlp.c_proj.weight", (1280, 5120))]
    return out


def write_streaming(path: Path, tensors: list[tuple[str, tuple[int, ...]]], make) -> int:
    """A safetensors file written tensor by tensor (never the whole model in memory)."""
    import json
    import struct

    header, offset = {}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for i, (name, shape) in enumerate(tensors):
            fh.write(make(i, name, shape).astype("<f2").tobytes())
    return path.stat().st_size


def bench_checkpoint(workdir: Path) -> None:
    tensors = sdxl_tensors()

    def base_tensor(i: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.random.default_rng(i).standard_normal(shape, dtype=np.float32) * 0.02

    def tuned_tensor(i: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
        w = base_tensor(i, name, shape)
        if "attn" in name and i % 2 == 0:  # a rank-32 LoRA merged into half the attention layers
            rng = np.random.default_rng(10_000 + i)
            w += (rng.standard_normal((shape[0], 32), dtype=np.float32) * 1e-3) @ rng.standard_normal((32, shape[1]), dtype=np.float32)
        return w

    base, tuned = workdir / "sdxl_base.safetensors", workdir / "sdxl_tuned.safetensors"
    t0 = time.perf_counter()
    size = write_streaming(base, tensors, base_tensor)
    write_streaming(tuned, tensors, tuned_tensor)
    made = time.perf_counter() - t0
    rss0 = rss_mib()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    fp = fingerprint_file(tuned, base=base, base_name="sdxl-base")
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"## checkpoint against its base: SDXL-shaped, {size / 1e9:.2f} GB fp16 each, {len(tensors)} matrices (files built in {made:.0f} s)")
    print(f"fingerprint: {took:.1f} s ({2 * size / took / 1e9:.2f} GB/s read over both files), one BLAS thread; "
          f"{fp.module_count} changed modules of {len(tensors) + 64} (OpenCLIP in_proj split into q/k/v)")
    print(f"memory: RSS before {rss0:.0f} MiB, peak {max(peak, peak0):.0f} MiB (largest tensor pair in float32 + projections)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--checkpoint", action="store_true", help="also the ~6 GB SDXL-shaped checkpoint (writes 12 GB to $TMPDIR)")
    parser.add_argument("--skip-similar", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp = bench_fingerprint(Path(tmp))
        if args.checkpoint:
            bench_checkpoint(Path(tmp))
    if not args.skip_similar:
        bench_similar(args.vectors, fp)
    print(f"\npeak RSS of this run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
