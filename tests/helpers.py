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


def deny_reading(monkeypatch, *paths) -> None:
    """Make opening ``paths`` fail with EACCES, as for a file without read permission.

    The tests run as root, which chmod cannot lock out, so ``open`` (builtins and io, which
    pathlib uses) and ``os.open`` are wrapped instead; every other path opens normally.
    """
    import builtins
    import errno
    import io
    import os

    denied = {os.path.realpath(p) for p in paths}
    real_open, real_os_open = builtins.open, os.open

    def check(file) -> None:
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) in denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))

    def guarded_open(file, *args, **kwargs):
        check(file)
        return real_open(file, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        check(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "open", guarded_os_open)
