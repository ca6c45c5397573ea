"""Tell a file's container format from its first bytes, never from its name."""

from __future__ import annotations

import os
import pickletools
import struct
from pathlib import Path

from consentry.formats.tensors import Format

SNIFF_BYTES = 4096

# Legacy torch.save: a protocol-2 pickle of this long is the first thing in the file
# (torch/serialization.py MAGIC_NUMBER = 0x1950a86a20f9469cfc6c).
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PREFIX = b"\x80\x02\x8a\x0a" + TORCH_LEGACY_MAGIC.to_bytes(10, "little")

MODEL_EXTENSIONS = frozenset(
    {".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".gguf", ".th", ".model"}
)


def sniff_bytes(head: bytes, size: int | None = None) -> Format:
    """Classify by magic bytes. ``head`` is the first (up to) 4 KiB; ``size`` the file size."""
    if size == 0 or not head:
        return Format.EMPTY
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Format.ZIP  # torch layout is decided by the zip reader, which sees the member names
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return Format.SEVEN_ZIP
    if len(head) > 262 and head[257:262] == b"ustar":
        return Format.TAR
    if head.startswith(b"GGUF"):
        return Format.GGUF
    if head.startswith(_LEGACY_PREFIX):
        return Format.TORCH_LEGACY
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        # A safetensors header is JSON starting with '{' (leading spaces are routed to the reader, which rejects them).
        body = head[8:].lstrip(b" ")
        if body.startswith(b"{") and header_len > 1 and (size is None or header_len <= size - 8):
            return Format.SAFETENSORS
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return Format.PICKLE
    if _looks_like_old_pickle(head):
        return Format.PICKLE
    return Format.UNKNOWN


def _looks_like_old_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles have no magic: accept if the first opcodes parse and include a
    GLOBAL/INST or container opcode. pickletools only *parses* opcodes, it never runs them."""
    if head[:1] not in (b"c", b"(", b"}", b"]", b")", b"i", b"S", b"V", b"I", b"L", b"F", b"N", b"d", b"l"):
        return False
    seen = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(head):
            seen += 1
            if opcode.name in ("GLOBAL", "INST", "REDUCE", "STOP") and seen >= 1:
                return True
            if seen >= 8:
                return True
    except Exception:  # truncated head or not a pickle at all
        return seen >= 3
    return False


def sniff_path(path: str | os.PathLike[str]) -> Format:
    """Classify a path: a folder is a diffusers model or a shard set, a file by its magic."""
    p = Path(path)
    if p.is_dir():
        if (p / "model_index.json").is_file():
            return Format.DIFFUSERS
        if any(p.glob("*.index.json")):
            return Format.SHARDED
        return Format.UNKNOWN
    if p.name.endswith(".index.json"):
        return Format.SHARDED
    with open(p, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        size = os.fstat(fh.fileno()).st_size
    return sniff_bytes(head, size)
