"""Benchmark ``hash_file`` against one plain SHA-256 pass and the one-pass-per-hash baseline.

Usage: ``python bench/hash_speed.py [--size-mib 1024] [--file F.safetensors] [--workers 2]
[--chunk-mib 2] [--repeat 3]``. Builds a real safetensors file (a handful of large F16 tensors)
in a temp dir unless ``--file`` is given, warms the page cache, then times in the same run:
(a) one plain SHA-256 pass, (b) separate passes for SHA-256, AutoV3, CRC32, BLAKE3, AutoV1,
(c) ``hash_file`` with AutoV3 and tensor digests. Peak RSS of (c) is measured in a child
process, against an idle child that only imported consentry; then the peak RSS of the real
command, ``consentry hash FILE`` (what a user runs: the CLI's imports included), and of
``consentry --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from blake3 import blake3

from consentry.formats.tensors import TensorInfo
from consentry.identity.hashes import hash_file

BUF = 1 << 20  # what A1111/kohya use; larger buffers do not make hashlib faster


def build_safetensors(path: Path, size: int, n_tensors: int = 6) -> None:
    """Write a safetensors file of about ``size`` bytes: ``n_tensors`` F16 tensors of pseudo-random data."""
    per = (size // n_tensors) // 2 * 2
    header: dict[str, object] = {"__metadata__": {"format": "pt", "ss_output_name": "bench"}}
    for i in range(n_tensors):
        header[f"model.layer{i}.weight"] = {"dtype": "F16", "shape": [per // 2], "data_offsets": [i * per, (i + 1) * per]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    block = os.urandom(8 << 20)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        left = per * n_tensors
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n


def read_safetensors_layout(path: Path) -> tuple[int, list[TensorInfo]]:
    """data_start and tensors with absolute file ranges (a tiny reader, independent of consentry's)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    start = 8 + n
    tensors = [
        TensorInfo(name, v["dtype"], tuple(v["shape"]), path, (start + v["data_offsets"][0], start + v["data_offsets"][1]))
        for name, v in header.items()
        if name != "__metadata__"
    ]
    return start, tensors


def plain_sha256(path: Path, offset: int = 0) -> str:
    h = hashlib.sha256()
    buf = bytearray(BUF)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def naive(path: Path, data_start: int) -> None:
    """One separate pass per hash, the obvious way."""
    plain_sha256(path)
    plain_sha256(path, data_start)
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(BUF):
            crc = zlib.crc32(block, crc)
    b3 = blake3()
    with open(path, "rb") as fh:
        while block := fh.read(BUF):
            b3.update(block)
    with open(path, "rb") as fh:
        fh.seek(0x100000)
        hashlib.sha256(fh.read(0x10000)).hexdigest()


def tensor_pass(path: Path, tensors: list[TensorInfo]) -> None:
    """What (c) computes beyond (b): BLAKE3 of each tensor, one more read of the data."""
    with open(path, "rb") as fh:
        for t in tensors:
            start, end = t.file_range
            fh.seek(start)
            h = blake3()
            while start < end and (block := fh.read(min(BUF, end - start))):
                h.update(block)
                start += len(block)


def timed(fns: dict[str, object], repeat: int) -> dict[str, tuple[float, float, float]]:
    """Per name: median and min wall seconds, median CPU seconds (user+system, all threads).

    Rounds are interleaved (a, b, c, a, b, c...) so a burst of load from another process
    lands on every contender alike rather than on one.
    """
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
    return {k: (statistics.median(walls[k]), min(walls[k]), statistics.median(cpus[k])) for k in fns}


_WRAPPER = (
    "import resource, subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', sys.argv[1]], check=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def child_maxrss_mib(code: str) -> float:
    """ru_maxrss (MiB) of a fresh interpreter running ``code``.

    A child's ru_maxrss starts from its parent's RSS at fork, so this bench process (which holds
    the tensor list and write buffers) would inflate it: a minimal wrapper interpreter spawns the
    child and reports RUSAGE_CHILDREN instead.
    """
    out = subprocess.run([sys.executable, "-c", _WRAPPER, code], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def command_maxrss_mib(argv: list[str]) -> float:
    """ru_maxrss (MiB) of a command run by a minimal wrapper interpreter (as for ``child_maxrss_mib``)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *argv], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, help="an existing safetensors file (default: build one)")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk-mib", type=float, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    chunk = int(args.chunk_mib * (1 << 20))

    with tempfile.TemporaryDirectory(prefix="consentry-bench-") as tmp:
        path = args.file or Path(tmp) / "bench.safetensors"
        if args.file is None:
            build_safetensors(path, args.size_mib << 20)
        size = path.stat().st_size
        data_start, tensors = read_safetensors_layout(path)
        plain_sha256(path)  # warm the page cache

        def ours():
            return hash_file(path, data_start=data_start, tensors=tensors, chunk_size=chunk, workers=args.workers)

        check = ours()
        assert check.sha256 == plain_sha256(path).upper()
        assert check.autov3 == plain_sha256(path, data_start).upper()
        assert len(check.tensor_digests) == len(tensors)

        load_before = os.getloadavg()[0]
        t = timed(
            {
                "a": lambda: plain_sha256(path),
                "b": lambda: naive(path, data_start),
                "b2": lambda: (naive(path, data_start), tensor_pass(path, tensors)),
                "c": ours,
            },
            args.repeat,
        )
        a, b, b2, c = t["a"], t["b"], t["b2"], t["c"]
        load_after = os.getloadavg()[0]

        idle = child_maxrss_mib("import consentry.identity.hashes")
        peak = child_maxrss_mib(
            "import sys, pickle; from consentry.identity.hashes import hash_file\n"
            f"t = pickle.loads({__import__('pickle').dumps(tensors)!r})\n"
            f"hash_file({str(path)!r}, data_start={data_start}, tensors=t, chunk_size={chunk}, workers={args.workers})"
        )
        cli = [sys.executable, "-m", "consentry"]
        cli_hash = command_maxrss_mib([*cli, "hash", "--workers", str(args.workers), str(path)])
        cli_help = command_maxrss_mib([*cli, "--help"])

    gb = size / 1e9
    print(f"file {size / (1 << 20):.0f} MiB, {len(tensors)} tensors, chunk {args.chunk_mib:g} MiB, "
          f"workers {args.workers}, cores {os.cpu_count()}, {args.repeat} interleaved runs each, "
          f"1-min load average {load_before:.2f} -> {load_after:.2f} (other processes skew wall times)")
    print(f"{'run':<50}{'median s':>9}{'min s':>8}{'GB/s':>7}{'CPU s':>7}")
    rows = [
        ("(a) plain SHA-256 pass", a),
        ("(b) naive: one pass per hash (5 passes)", b),
        ("(b') naive + one pass for the tensor digests", b2),
        ("(c) hash_file (6 hashes + tensor digests)", c),
    ]
    for name, (med, best, cpu) in rows:
        print(f"{name:<50}{med:>9.3f}{best:>8.3f}{gb / med:>7.2f}{cpu:>7.2f}")
    print(f"(c)/(a)  = {c[0] / a[0]:.2f}   (goal <= 1.5)")
    print(f"(b)/(c)  = {b[0] / c[0]:.2f}   (goal >= 2)")
    print(f"(b')/(c) = {b2[0] / c[0]:.2f}   (same work on both sides)")
    print(f"peak RSS of (c): {peak:.1f} MiB; idle interpreter with consentry: {idle:.1f} MiB; "
          f"difference {peak - idle:.1f} MiB (goal < 64)")
    print(f"peak RSS of the CLI, `consentry hash FILE`: {cli_hash:.1f} MiB = {cli_hash * 1.048576:.1f} MB (goal < 64 MB); "
          f"`consentry --help`: {cli_help:.1f} MiB")


if __name__ == "__main__":
    main()
