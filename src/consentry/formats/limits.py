"""Bounds on everything a reader takes from an untrusted header. All are configurable."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    # safetensors: the Rust crate's MAX_HEADER_SIZE (huggingface_hub's own reader uses 25 MB).
    max_header_bytes: int = 100_000_000
    # Tensors in one file (real checkpoints have < 100k; a 10-million-entry header is a time/memory attack).
    max_tensors: int = 200_000
    # Pickle stream size and interpreter budget (fickling uses 1M opcodes / 10k stack / 100k memo;
    # a full SDXL checkpoint needs ~100k opcodes, so the opcode budget is higher).
    max_pickle_bytes: int = 256 * 1024 * 1024
    max_pickle_opcodes: int = 20_000_000
    max_pickle_stack: int = 100_000
    max_pickle_memo: int = 5_000_000
    max_pickle_depth: int = 1_000  # nested containers in the result
    # Zip archives.
    max_zip_members: int = 1_000_000
    max_member_bytes: int = 1 << 40  # declared uncompressed size of one member (1 TiB)
    max_compression_ratio: int = 200  # deflated members beyond this ratio are a zip bomb
    # JSON side files (diffusers model_index.json, shard index).
    max_json_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = ReadLimits()
