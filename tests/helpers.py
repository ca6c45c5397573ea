"""Independent reference computations for the tests (hashlib, zlib, blake3 on raw bytes)."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from blake3 import blake3


def reference_hashes(path: Path, safetensors: bool = True) -> dict[str, str | None]:
    """The six hub hashes computed the slow obvious way, from hub-interfaces.md §2."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest().upper()
    crc = zlib.crc32(data)
    out: dict[str, str | None] = {
        "sha256": sha,
        "autov2": sha[:10],
        "autov1": hashlib.sha256(data[0x100000:0x110000]).hexdigest().upper()[:8] if len(data) >= 0x200000 else None,
        "crc32": crc.to_bytes(4, "little").hex().upper(),
        "crc32_conventional": f"{crc:08X}",
        "blake3": blake3(data).hexdigest().upper(),
        "autov3": None,
        "autov3_short": None,
    }
    if safetensors:
        (n,) = struct.unpack("<Q", data[:8])
        out["autov3"] = hashlib.sha256(data[8 + n :]).hexdigest().upper()
        out["autov3_short"] = out["autov3"][:12]
    return out
