"""A tiny zip writer with every field under the test's control, for building hostile archives.

Python's zipfile refuses to write most of what we need (wrong CRCs, flag bits, lying sizes,
mismatched local headers), so the bytes are laid out here by hand, following APPNOTE 6.3.
Defaults mimic what torch (miniz) writes: flags 0x808, stored, a signed data descriptor,
zip64 end records.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Member:
    name: str
    data: bytes = b""  # uncompressed content
    method: int = 0  # 0 stored, 8 deflated
    flags: int = 0x808
    payload: bytes | None = None  # the bytes written as member data (default: data, deflated if method 8)
    crc: int | None = None  # default: crc32(data)
    size: int | None = None  # declared uncompressed size (default: len(data))
    local_name: str | None = None
    local_flags: int | None = None
    local_extra: bytes = b""
    comment: bytes = b""
    zip64: bool = False  # declare sizes through a zip64 extra field


@dataclass
class Archive:
    members: list[Member] = field(default_factory=list)
    prefix: bytes = b""  # bytes before the first local header
    absolute_offsets: bool = False  # offsets count from the file start (else from the zip start)
    between: bytes = b""  # bytes between the last member and the central directory
    comment: bytes = b""
    trailer: bytes = b""
    zip64_end: bool = True


def deflate(data: bytes) -> bytes:
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


def build(archive: Archive) -> bytes:
    out = bytearray(archive.prefix)
    central = bytearray()
    base = 0 if archive.absolute_offsets else len(archive.prefix)
    for m in archive.members:
        payload = m.payload if m.payload is not None else (deflate(m.data) if m.method == 8 else m.data)
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.size is None else m.size
        csize = len(payload)
        offset = len(out) - base
        name = m.name.encode("utf-8")
        local_name = (m.local_name if m.local_name is not None else m.name).encode("utf-8")
        flags = m.flags
        local_flags = m.local_flags if m.local_flags is not None else flags
        descriptor = bool(flags & 0x8)
        if descriptor:
            lcrc, lcsize, lsize = 0, 0, 0
        else:
            lcrc, lcsize, lsize = crc, csize, size
        local_extra = m.local_extra
        if m.zip64 and not descriptor:
            local_extra += struct.pack("<HHQQ", 1, 16, size, csize)
            lcsize = lsize = 0xFFFFFFFF
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45 if m.zip64 else 20, local_flags, m.method, 0, 0x21,
                           lcrc, lcsize, lsize, len(local_name), len(local_extra))
        out += local_name + local_extra + payload
        if descriptor:
            if m.zip64:
                out += struct.pack("<4sIQQ", b"PK\x07\x08", crc, csize, size)
            else:
                out += struct.pack("<4sIII", b"PK\x07\x08", crc, csize, size)
        cd_extra = b""
        c_csize, c_size = csize, size
        if m.zip64:
            cd_extra = struct.pack("<HHQQ", 1, 16, size, csize)
            c_csize = c_size = 0xFFFFFFFF
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45 if m.zip64 else 20, flags, m.method, 0, 0x21,
                               crc, c_csize, c_size, len(name), len(cd_extra), len(m.comment), 0, 0, 0, offset)
        central += name + cd_extra + m.comment
    out += archive.between
    cd_offset = len(out) - base
    out += central
    n = len(archive.members)
    if archive.zip64_end:
        z64_offset = len(out) - base
        out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, z64_offset, 1)
    out += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), cd_offset, len(archive.comment))
    out += archive.comment + archive.trailer
    return bytes(out)


def members_of(path: Path) -> list[Member]:
    """The members of a trusted zip we just wrote with torch.save, to rebuild with changes."""
    with zipfile.ZipFile(path) as zf:
        return [Member(info.filename, zf.read(info)) for info in zf.infolist()]


def write(path: Path, archive: Archive) -> Path:
    path.write_bytes(build(archive))
    return path


class _Payload:
    """A pickle that would run os.system if anything ever unpickled it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def payload_pickle(canary: Path, protocol: int = 2) -> bytes:
    """Bytes of a pickle whose load would create ``canary`` (pickle.dumps only writes)."""
    return pickle.dumps(_Payload(f"touch {canary}"), protocol=protocol)


def deflate_zeros(total: int, chunk: int = 1 << 20) -> bytes:
    """A raw DEFLATE stream of ``total`` zero bytes, built in chunks so the test stays small."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(chunk)
    parts = []
    left = total
    while left > 0:
        n = min(chunk, left)
        parts.append(co.compress(zeros[:n]))
        left -= n
    parts.append(co.flush())
    return b"".join(parts)
