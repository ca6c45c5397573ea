"""Speed of weight fingerprints (issue 3).

1. Fingerprinting a synthetic 144 MB SD1.5 LoRA (kohya keys and shapes of a rank-128 fp16 LoRA
   on the UNet attention blocks and the CLIP text encoder) on one core. Goal: under 1 s.
2. ``similar`` end to end over a store of 1,000,000 fingerprints: store open, index open (a
   memory-mapped usearch view of the cache), search and re-scoring the shortlist from the stored
   sketches, median and p99 (goal: median under 50 ms); index build time and memory.

3. A ~6 GB SDXL-shaped checkpoint (LDM names, fp16) fingerprinted against its base: time and
   peak memory (tensors are streamed one at a time; the whole model is never loaded).

Run: python bench/fingerprint_speed.py [--vectors 1000000] [--queries 200] [--store-dir DIR] [--checkpoint] [--skip-similar]
(the 1,000,000-fingerprint store takes ~9 minutes to build on 2 cores; --store-dir keeps it for reruns)
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


def _pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_similar(count: int, fp, workdir: Path, queries: int = 200, planted: int = 30) -> None:
    """``similar`` end to end over a store of ``count`` fingerprints, after the query file is
    fingerprinted: open the store, open the index (a memory-mapped view of the cache), search,
    re-score the shortlist from the stored sketches. Timed twice: as a one-shot CLI call (the
    index opened for the query) and in a process that keeps the index open (`scan` over many
    files, the HTTP service, bank matching).

    Every row is a real ``fingerprints`` row (sketch blob + vector). ``planted`` rows are noisy
    copies of the full SD1.5 query fingerprint (264 modules, ~280 KB each), so a planted query's
    re-scored candidates are all SD1.5-sized: the worst case. The other rows carry a one-module
    sketch (what they carry does not matter to the index, and a full sketch each would need
    ~280 GB at 1M) and random unit vectors. ``workdir`` is reused when it already holds a store
    of ``count`` rows and its index (``--store-dir``)."""
    os.environ["XDG_CACHE_HOME"] = str(workdir / "cache")  # the index cache of this run only
    from consentry import vectors
    from consentry.fingerprints.index import cache_path, index_for_store, nearest, new_index, search
    from consentry.fingerprints.model import Fingerprint, assemble
    from consentry.store import Store

    rng = np.random.default_rng(1)
    db_path = workdir / "similar.sqlite"
    filled = build = None
    rss_build = 0.0
    with Store.open(db_path) as store:
        have = store.fingerprints.count()
    if have != count or not cache_path(str(db_path)).is_file():
        if have:
            raise SystemExit(f"{db_path} holds {have} fingerprints, not {count}: use an empty --store-dir")
        filler = assemble("lora", fp.family, "kohya", [("unet_x", (320, 320), 8, rng.standard_normal((16, 16)).astype(np.float32))]).to_bytes()
        insert = ("INSERT INTO fingerprints (path, sha256, content_hash, kind, family, key_format, base_name, module_count, version,"
                  " sketch, vector, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")  # fmt: skip
        t0 = time.perf_counter()
        with Store.open(db_path) as store:
            copies = []
            for i in range(planted):
                noisy = Fingerprint(kind=fp.kind, family=fp.family, key_format=fp.key_format, names=fp.names, shapes=fp.shapes,
                                    ranks=fp.ranks, sketches=fp.sketches + rng.standard_normal(fp.sketches.shape).astype(np.float32)
                                    * np.float32(0.3 * np.abs(fp.sketches).mean()))  # fmt: skip
                copies.append((f"planted:{i}", None, None, "lora", fp.family, "kohya", None, noisy.module_count, noisy.version,
                               noisy.to_bytes(), noisy.vector().astype("<f4").tobytes(), "2026-01-01T00:00:00Z"))  # fmt: skip
            with store.db.transaction():
                store.db.executemany(insert, copies)
            batch = 50_000
            for start in range(0, count - planted, batch):
                n = min(batch, count - planted - start)
                v = rng.standard_normal((n, VECTOR_DIM), dtype=np.float32)
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                rows = [(f"synthetic:{start + i}", None, None, "lora", fp.family, "kohya", None, 1, fp.version, filler,
                         v[i].astype("<f4").tobytes(), "2026-01-01T00:00:00Z") for i in range(n)]  # fmt: skip
                with store.db.transaction():
                    store.db.executemany(insert, rows)
            filled = time.perf_counter() - t0
            rss0 = rss_mib()
            t0 = time.perf_counter()
            index_for_store(store)  # first call: builds the index from the store and saves the cache
            build = time.perf_counter() - t0
            rss_build = rss_mib() - rss0
    index_file = cache_path(str(db_path))
    db_size = db_path.stat().st_size

    loads = []
    for _ in range(3):
        t0 = time.perf_counter()
        whole = new_index()
        whole.load(str(index_file))
        loads.append(time.perf_counter() - t0)
    in_memory = whole.memory_usage
    del whole

    random_query = assemble("lora", fp.family, "kohya", [("unet_x", (320, 320), 8, rng.standard_normal((16, 16)).astype(np.float32))])
    names = ("store open", "index open (view)", "search k=30 (view)", "re-score", "one-shot, planted", "one-shot, random",
             "kept open, planted", "kept open, random")  # fmt: skip
    phases: dict[str, list[float]] = {k: [] for k in names}
    found_first = 0
    for i in range(queries):
        planted_query = i % 2 == 0
        query = fp if planted_query else random_query
        kind = "planted" if planted_query else "random"
        vectors.forget_opened()  # as in a new CLI process
        t0 = time.perf_counter()
        with Store.open(db_path) as store:
            t1 = time.perf_counter()
            index = index_for_store(store)
            t2 = time.perf_counter()
            rows = nearest(store, query, top=10)  # index already open: max(id) check, search, re-score
            t3 = time.perf_counter()
            search(index, query.vector(), 30)
            t4 = time.perf_counter()
        phases["store open"].append(t1 - t0)
        phases["index open (view)"].append(t2 - t1)
        phases["search k=30 (view)"].append(t4 - t3)
        phases["re-score"].append(max(0.0, (t3 - t2) - (t4 - t3)))
        phases[f"one-shot, {kind}"].append(t3 - t0)
        phases[f"kept open, {kind}"].append(t3 - t2)
        if planted_query:
            found_first += bool(rows) and rows[0]["path"].startswith("planted:") and rows[0]["verdict"] == "same"
    print()
    print(f"## similar end to end: store of {count:,} fingerprints (SQLite, {db_size / 2**30:.2f} GiB), usearch HNSW (cosine, i8, M=16)")
    if build is not None:
        print(f"store filled in {filled:.0f} s; index built from the store in {build:.1f} s on {os.cpu_count()} threads "
              f"({count / build:,.0f} vectors/s), process RSS +{rss_build:.0f} MiB while building")  # fmt: skip
    print(f"index file {index_file.stat().st_size / 2**20:.0f} MiB; Index.load of it (instead of a view): median "
          f"{statistics.median(loads) * 1000:.0f} ms, {in_memory / 2**20:.0f} MiB in memory")  # fmt: skip
    print(f"{queries} queries, half the SD1.5 query ({planted} planted near-copies, so the 10 re-scored candidates are SD1.5-sized), "
          f"half a random one; warm page cache; the query file's fingerprint (0.2 s above) and process start are not included:")  # fmt: skip
    for name in names:
        times = phases[name]
        print(f"  {name:<20} median {statistics.median(times) * 1000:7.2f} ms   p99 {_pct(times, 0.99) * 1000:7.2f} ms")
    for label in ("one-shot", "kept open"):
        both = phases[f"{label}, planted"] + phases[f"{label}, random"]
        median = statistics.median(both)
        print(f"  {label + ', all':<20} median {median * 1000:7.2f} ms   p99 {_pct(both, 0.99) * 1000:7.2f} ms   "
              f"goal median < 50 ms: {'met' if median < 0.05 else 'NOT met'}")  # fmt: skip
    print(f"planted copy listed first with verdict same: {found_first}/{(queries + 1) // 2}")
    print(f"RSS of this process after the queries: {rss_mib():.0f} MiB (views map the index; pages are read on demand)")


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
    parser.add_argument("--vectors", type=int, default=1_000_000, help="fingerprints in the synthetic store")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--store-dir", help="keep the synthetic store and its index here and reuse them on the next run")
    parser.add_argument("--checkpoint", action="store_true", help="also the ~6 GB SDXL-shaped checkpoint (writes 12 GB to $TMPDIR)")
    parser.add_argument("--skip-similar", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fp = bench_fingerprint(Path(tmp))
        if args.checkpoint:
            bench_checkpoint(Path(tmp))
        if not args.skip_similar:
            store_dir = Path(args.store_dir) if args.store_dir else Path(tmp)
            store_dir.mkdir(parents=True, exist_ok=True)
            bench_similar(args.vectors, fp, store_dir, queries=args.queries)
    print(f"\npeak RSS of this run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
