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
    if len(head) >= 9 and _safetensors_length_fits(head, size):
        return Format.SAFETENSORS
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return Format.PICKLE
    if _looks_like_old_pickle(head):
        return Format.PICKLE
    # After the pickle checks, so that a pickle shaped to look like a broken safetensors file is
    # still read (and quarantined) as the pickle it is.
    if len(head) >= 9 and _looks_like_broken_safetensors(head, size):
        return Format.SAFETENSORS
    return Format.UNKNOWN


_PRINTABLE = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def _safetensors_length_fits(head: bytes, size: int | None) -> bool:
    """An 8-byte little-endian length ``N`` with ``2 <= N <= size - 8``, then ``{`` (leading
    spaces are routed to the reader, which rejects them)."""
    (header_len,) = struct.unpack("<Q", head[:8])
    fits = header_len > 1 and (size is None or header_len <= size - 8)
    return fits and head[8:].lstrip(b" ").startswith(b"{")


def _looks_like_broken_safetensors(head: bytes, size: int | None) -> bool:
    """A safetensors file whose length field ``N`` is impossible: beyond the file (truncated
    inside the header, or a lie), below 2, huge or "negative" (the top bit set).

    Such a file is still a safetensors file, broken or hostile, and the reader must say what is
    wrong with it rather than "no known magic bytes". Without a plausible ``N`` the evidence
    must be stronger, so that other files are not misnamed: the JSON must open with ``{"`` or
    ``{}`` (or the file must end right after the ``{``), and the length field must not be printable text
    (a minified JSON file such as ``{"unet":{"...`` also has ``{"`` at byte 8, but its first 8
    bytes are text, while a real length has zero or other non-text high bytes). A random file
    passes with odds of about 1 in 32,768 and is then rejected as a bad safetensors file, which
    is what it would have been anyway (rejected, never clean).
    """
    if all(b in _PRINTABLE for b in head[:8]):
        return False
    body = head[8:].lstrip(b" ")
    if not body.startswith(b"{"):
        return False
    after = body[1:].lstrip(b" \t\r\n")
    if after.startswith((b'"', b"}")):  # a first key, or the empty header {}
        return True
    return size is not None and len(head) == size and not after  # the file ends right after '{'


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
