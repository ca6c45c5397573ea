"""A strict, fail-closed zip reader for torch archives.

Python's :mod:`zipfile` and torch's miniz disagree on what a valid zip is (picklescan's
relaxed-zip fixtures: encrypted flag bits, bad CRCs, damaged central directories), and a
scanner that reads a zip differently from the loader can be bypassed. So this module reads
the structures itself and accepts only the boring layout torch writes:

    [local header, data, optional data descriptor]* central directory
    [zip64 end record, zip64 locator] end record         (no comment, nothing else)

Everything else is refused. A file that some lenient reader might still open (a comment,
prefix or trailing bytes, odd flags, a CRC mismatch, a damaged directory...) raises
:class:`UnsafeModelError` (quarantine); a file that cannot be a zip at all (empty, truncated
before its end record) raises :class:`MalformedModelError`.

Nothing is extracted to disk; members are streamed with bounded memory and their CRC-32 is
checked as they stream.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from consentry.errors import MalformedModelError, UnsafeModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits

__all__ = ["STORED", "DEFLATED", "ZipMember", "StrictZip"]

STORED = 0
DEFLATED = 8

_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_EOCD_SIG = b"PK\x05\x06"
_Z64_EOCD_SIG = b"PK\x06\x06"
_Z64_LOCATOR_SIG = b"PK\x06\x07"
_DESCRIPTOR_SIG = b"PK\x07\x08"

_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
_EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
_Z64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_Z64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes

_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFFFFFF
_MAX_TAIL = _EOCD.size + 0xFFFF  # the end record plus the longest possible comment

# General-purpose flag bits torch (miniz) writes: 0x8 data descriptor, 0x800 UTF-8 names.
# Bits 0x2/0x4 are only a compression-level hint, harmless on deflated members.
_ALLOWED_FLAGS = 0x0008 | 0x0800
_DEFLATE_HINT_FLAGS = 0x0002 | 0x0004
_FLAG_NAMES = {
    0x0001: "encrypted",
    0x0020: "patched data",
    0x0040: "strong encryption",
    0x2000: "encrypted central directory",
}

# Members smaller than this cannot be a meaningful zip bomb whatever their ratio
# (a few KiB of zeros deflate ~1000:1).
_RATIO_FLOOR = 1 << 20

# Magic bytes of archives we refuse to find inside an archive (scanners that skip nested
# archives have been bypassed with them: modelscan NestedZipError, nullifAI 7z pickles).
_NESTED_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (257, b"ustar", "tar"),
)
_PEEK_BYTES = 264

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipMember:
    """One validated member. ``data_offset`` is the absolute file offset of its (possibly
    compressed) bytes; for STORED members ``[data_offset, data_offset + size)`` is the content."""

    name: str
    method: int
    flags: int
    header_offset: int
    data_offset: int
    compressed_size: int
    size: int
    crc: int

    @property
    def stored(self) -> bool:
        return self.method == STORED

    @property
    def data_range(self) -> tuple[int, int]:
        """Absolute ``(start, end)`` of the raw member bytes; only meaningful when stored."""
        if not self.stored:
            raise ValueError(f"zip member {self.name!r} is compressed: it has no raw byte range")
        return (self.data_offset, self.data_offset + self.size)


class StrictZip:
    """A validated zip archive. Build with :meth:`open`; reads re-open the file each time."""

    def __init__(self, path: Path, members: list[ZipMember], limits: ReadLimits) -> None:
        self.path = path
        self.members = members  # in file order
        self.limits = limits
        self._by_name = {m.name: m for m in members}

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> "StrictZip":
        """Parse and validate the whole container structure (not the member contents' CRCs)."""
        p = Path(path)
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            members = _Parser(p, fh, size, limits).parse()
        zf = cls(p, members, limits)
        for member in members:
            zf._refuse_nested_archive(member)
        return zf

    # ------------------------------------------------------------------ access

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[ZipMember]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def member(self, name: str) -> ZipMember:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no zip member {name!r}") from None

    def iter_member(self, member: ZipMember | str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the member's uncompressed bytes; the size and CRC-32 are checked at the end,
        so a consumer must not trust the bytes until the iterator is exhausted."""
        m = self.member(member) if isinstance(member, str) else member
        crc = 0
        total = 0
        for block in self._iter_raw(m, chunk_size, limit=None):
            crc = zlib.crc32(block, crc)
            total += len(block)
            yield block
        if total != m.size:
            raise UnsafeModelError(self.path, f"zip member {m.name!r} holds {total} bytes but declares {m.size}")
        if crc != m.crc:
            raise UnsafeModelError(
                self.path, f"zip member {m.name!r} fails its CRC-32 check (stored {m.crc:08x}, computed {crc:08x})"
            )

    def read_member(self, member: ZipMember | str, max_bytes: int) -> bytes:
        """Read a small member fully (CRC-checked); refuse it if it declares more than ``max_bytes``."""
        m = self.member(member) if isinstance(member, str) else member
        if m.size > max_bytes:
            raise UnsafeModelError(
                self.path, f"zip member {m.name!r} is {m.size} bytes, more than the {max_bytes} allowed for it"
            )
        return b"".join(self.iter_member(m))

    def peek(self, member: ZipMember | str, n: int) -> bytes:
        """The first ``n`` uncompressed bytes (fewer if the member is shorter); not CRC-checked."""
        m = self.member(member) if isinstance(member, str) else member
        return b"".join(self._iter_raw(m, max(n, 1), limit=n))[:n]

    # ------------------------------------------------------------------ internals

    def _iter_raw(self, m: ZipMember, chunk_size: int, limit: int | None) -> Iterator[bytes]:
        """Uncompressed bytes, at most ``m.size`` (or ``limit``) of them, in bounded memory."""
        want = m.size if limit is None else min(limit, m.size)
        with open(self.path, "rb") as fh:
            fh.seek(m.data_offset)
            if m.stored:
                remaining = want
                while remaining > 0:
                    block = fh.read(min(chunk_size, remaining))
                    if not block:
                        raise MalformedModelError(self.path, f"file ends inside zip member {m.name!r}")
                    remaining -= len(block)
                    yield block
                return
            yield from self._inflate(m, fh, chunk_size, want, checking=limit is None)

    def _inflate(self, m: ZipMember, fh, chunk_size: int, want: int, checking: bool) -> Iterator[bytes]:
        # Output per call is capped with max_length, so a bomb never allocates more than
        # chunk_size at a time, and more than the declared size is refused outright.
        d = zlib.decompressobj(-15)
        remaining_in = m.compressed_size
        produced = 0
        pending = b""
        while True:
            if not pending:
                if remaining_in <= 0:
                    break
                pending = fh.read(min(1 << 20, remaining_in))
                if not pending:
                    raise MalformedModelError(self.path, f"file ends inside zip member {m.name!r}")
                remaining_in -= len(pending)
            try:
                out = d.decompress(pending, chunk_size)
            except zlib.error as exc:
                raise UnsafeModelError(self.path, f"zip member {m.name!r} is not valid deflate data ({exc})") from None
            pending = d.unconsumed_tail
            if out:
                if produced + len(out) > m.size:
                    raise UnsafeModelError(
                        self.path, f"zip member {m.name!r} inflates beyond its declared {m.size} bytes (zip bomb?)"
                    )
                take = out[: max(0, want - produced)]
                produced += len(out)
                if take:
                    yield take
                if not checking and produced >= want:
                    return
            if d.eof:
                break
        if not checking:
            return
        if not d.eof or d.unused_data or pending or remaining_in:
            raise UnsafeModelError(self.path, f"zip member {m.name!r}: deflate stream does not end exactly at the member's end")

    def _refuse_nested_archive(self, m: ZipMember) -> None:
        head = self.peek(m, _PEEK_BYTES)
        for offset, magic, kind in _NESTED_MAGIC:
            if head[offset : offset + len(magic)] == magic:
                raise UnsafeModelError(
                    self.path, f"zip member {m.name!r} is itself a {kind} archive; nested archives are not unpacked"
                )


class _Parser:
    """Reads the end records, the central directory and every local header, and checks that
    they tile the file exactly."""

    def __init__(self, path: Path, fh, size: int, limits: ReadLimits) -> None:
        self.path = path
        self.fh = fh
        self.size = size
        self.limits = limits

    def unsafe(self, problem: str) -> UnsafeModelError:
        return UnsafeModelError(self.path, problem)

    def read_at(self, offset: int, n: int) -> bytes:
        self.fh.seek(offset)
        data = self.fh.read(n)
        if len(data) != n:
            raise MalformedModelError(self.path, f"zip structure at offset {offset} runs past the end of the file")
        return data

    # -- end records

    def parse(self) -> list[ZipMember]:
        if self.size == 0:
            raise MalformedModelError(self.path, "empty file")
        if self.size < _EOCD.size:
            raise MalformedModelError(self.path, f"{self.size} bytes is too short to be a zip archive")
        eocd_pos, n_total, cd_size, cd_offset = self.find_end()
        cd_end = eocd_pos
        z64 = self.find_zip64(eocd_pos)
        if z64 is not None:
            cd_end, n64, size64, off64 = z64
            n_total = _merge(n_total, n64, _U16_MAX, "member count", self)
            cd_size = _merge(cd_size, size64, _U32_MAX, "central directory size", self)
            cd_offset = _merge(cd_offset, off64, _U32_MAX, "central directory offset", self)
        if n_total > self.limits.max_zip_members:
            raise self.unsafe(f"zip archive has {n_total} members (limit {self.limits.max_zip_members})")
        if cd_offset + cd_size != cd_end:
            raise self.unsafe(
                f"central directory (offset {cd_offset}, {cd_size} bytes) does not end at the end record "
                f"(offset {cd_end}): bytes before the archive or between its parts"
            )
        if n_total * _CENTRAL.size > cd_size:
            raise self.unsafe(f"central directory of {cd_size} bytes cannot hold {n_total} members")
        entries = self.parse_central(cd_offset, cd_size, n_total)
        return self.check_layout(entries, cd_offset)

    def find_end(self) -> tuple[int, int, int, int]:
        tail_len = min(self.size, _MAX_TAIL)
        tail = self.read_at(self.size - tail_len, tail_len)
        pos = tail.rfind(_EOCD_SIG)
        while pos >= 0 and pos + _EOCD.size > len(tail):
            pos = tail.rfind(_EOCD_SIG, 0, pos)
        if pos < 0:
            raise MalformedModelError(self.path, "no zip end-of-central-directory record: truncated or not a zip archive")
        _sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, pos)
        end = pos + _EOCD.size
        if end != len(tail):
            if end + comment_len == len(tail):
                # torch never writes an archive comment; a comment is room for a second payload.
                raise self.unsafe(f"zip archive has a {comment_len}-byte comment (torch archives have none)")
            raise self.unsafe(f"{len(tail) - end - comment_len} trailing bytes after the end of the zip archive")
        if comment_len:
            raise self.unsafe(f"zip end record declares a {comment_len}-byte comment past the end of the file")
        if disk != 0 or cd_disk != 0 or n_disk != n_total:
            raise self.unsafe("multi-disk (spanned) zip archive")
        return self.size - tail_len + pos, n_total, cd_size, cd_offset

    def find_zip64(self, eocd_pos: int) -> tuple[int, int, int, int] | None:
        loc_pos = eocd_pos - _Z64_LOCATOR.size
        if loc_pos < 0 or self.read_at(loc_pos, 4) != _Z64_LOCATOR_SIG:
            return None
        _sig, disk, rec_pos, total_disks = _Z64_LOCATOR.unpack(self.read_at(loc_pos, _Z64_LOCATOR.size))
        if disk != 0 or total_disks not in (0, 1):
            raise self.unsafe("multi-disk (spanned) zip64 archive")
        if rec_pos + _Z64_EOCD.size != loc_pos:
            raise self.unsafe(
                f"zip64 end record at offset {rec_pos} is not immediately before its locator (offset {loc_pos}): "
                "bytes before the archive or between its parts"
            )
        sig, rec_size, _made, _need, disk, cd_disk, n_disk, n_total, cd_size, cd_offset = _Z64_EOCD.unpack(
            self.read_at(rec_pos, _Z64_EOCD.size)
        )
        if sig != _Z64_EOCD_SIG:
            raise self.unsafe(f"zip64 locator points at offset {rec_pos}, which is not a zip64 end record")
        if rec_size != _Z64_EOCD.size - 12:
            raise self.unsafe(f"zip64 end record carries {rec_size - 44} bytes of extensible data")
        if disk != 0 or cd_disk != 0 or n_disk != n_total:
            raise self.unsafe("multi-disk (spanned) zip64 archive")
        return rec_pos, n_total, cd_size, cd_offset

    # -- central directory

    def parse_central(self, cd_offset: int, cd_size: int, n_total: int) -> list[ZipMember]:
        cd = self.read_at(cd_offset, cd_size)
        pos = 0
        entries: list[ZipMember] = []
        seen: set[str] = set()
        for index in range(n_total):
            if pos + _CENTRAL.size > len(cd) or cd[pos : pos + 4] != _CENTRAL_SIG:
                raise self.unsafe(f"central directory entry {index} at offset {cd_offset + pos} is damaged")
            (_sig, _made, _need, flags, method, _t, _d, crc, csize, usize, nlen, elen, clen, disk, _ia, _ea,
             offset) = _CENTRAL.unpack_from(cd, pos)
            pos += _CENTRAL.size
            if pos + nlen + elen + clen > len(cd):
                raise self.unsafe(f"central directory entry {index} runs past the end of the directory")
            raw_name = cd[pos : pos + nlen]
            extra = cd[pos + nlen : pos + nlen + elen]
            pos += nlen + elen + clen
            name = self.check_name(raw_name, flags, index)
            if name in seen:
                raise self.unsafe(f"zip member name {name!r} appears twice")
            seen.add(name)
            if clen:
                raise self.unsafe(f"zip member {name!r} has a {clen}-byte comment (torch writes none)")
            self.check_flags(name, flags, method)
            usize, csize, offset, disk = self.apply_zip64(name, extra, usize, csize, offset, disk)
            if disk != 0:
                raise self.unsafe(f"zip member {name!r} is on disk {disk} (spanned archive)")
            if method == STORED and csize != usize:
                raise self.unsafe(f"stored zip member {name!r} declares {csize} compressed but {usize} real bytes")
            if usize > self.limits.max_member_bytes:
                raise self.unsafe(
                    f"zip member {name!r} declares {usize} bytes (limit {self.limits.max_member_bytes})"
                )
            if method == DEFLATED and usize > _RATIO_FLOOR and usize > csize * self.limits.max_compression_ratio:
                raise self.unsafe(
                    f"zip member {name!r} declares {usize} bytes from {csize} compressed "
                    f"(ratio over {self.limits.max_compression_ratio}: zip bomb)"
                )
            entries.append(ZipMember(name, method, flags, offset, -1, csize, usize, crc))
        if pos != len(cd):
            raise self.unsafe(f"{len(cd) - pos} unexplained bytes at the end of the central directory")
        return entries

    def check_name(self, raw: bytes, flags: int, index: int) -> str:
        try:
            name = raw.decode("utf-8") if flags & 0x800 else raw.decode("ascii")
        except UnicodeDecodeError:
            how = "UTF-8" if flags & 0x800 else "ASCII (no UTF-8 flag)"
            raise self.unsafe(f"zip member {index} has a name that is not valid {how}: {raw[:80]!r}") from None
        if not name:
            raise self.unsafe(f"zip member {index} has an empty name")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
            raise self.unsafe(f"zip member name {name!r} contains control characters")
        if "\\" in name:
            raise self.unsafe(f"zip member name {name!r} contains a backslash")
        if name.startswith("/") or _DRIVE_RE.match(name):
            raise self.unsafe(f"zip member name {name!r} is an absolute path")
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise self.unsafe(f"zip member name {name!r} has an empty, '.' or '..' path component")
        return name

    def check_flags(self, name: str, flags: int, method: int) -> None:
        if method not in (STORED, DEFLATED):
            raise self.unsafe(f"zip member {name!r} uses compression method {method} (only stored and deflated are read)")
        allowed = _ALLOWED_FLAGS | (_DEFLATE_HINT_FLAGS if method == DEFLATED else 0)
        bad = flags & ~allowed
        if bad:
            bit = bad & -bad
            what = _FLAG_NAMES.get(bit, "not used by torch")
            raise self.unsafe(f"zip member {name!r} has flag bit {bit:#x} ({what})")

    def apply_zip64(
        self, name: str, extra: bytes, usize: int, csize: int, offset: int, disk: int
    ) -> tuple[int, int, int, int]:
        fields = _parse_extra(extra, name, self)
        need = [usize == _U32_MAX, csize == _U32_MAX, offset == _U32_MAX, disk == _U16_MAX]
        z64 = fields.get(0x0001)
        if not any(need):
            if z64 is not None:
                raise self.unsafe(f"zip member {name!r} has a zip64 field but no sizes that need it")
            return usize, csize, offset, disk
        want = 8 * sum(need[:3]) + 4 * need[3]
        if z64 is None or len(z64) != want:
            raise self.unsafe(f"zip member {name!r} has a missing or malformed zip64 field")
        values = [usize, csize, offset, disk]
        pos = 0
        for i in range(4):
            if need[i]:
                width = 8 if i < 3 else 4
                values[i] = int.from_bytes(z64[pos : pos + width], "little")
                pos += width
        return values[0], values[1], values[2], values[3]

    # -- local headers and tiling

    def check_layout(self, entries: list[ZipMember], cd_offset: int) -> list[ZipMember]:
        ordered = sorted(entries, key=lambda m: m.header_offset)
        if ordered and ordered[0].header_offset != 0:
            raise self.unsafe(
                f"{ordered[0].header_offset} bytes before the first zip member (a prefix: polyglot file?)"
            )
        if not ordered and cd_offset != 0:
            raise self.unsafe(f"{cd_offset} bytes before the central directory of an empty zip archive")
        result: list[ZipMember] = []
        for i, m in enumerate(ordered):
            next_offset = ordered[i + 1].header_offset if i + 1 < len(ordered) else cd_offset
            data_offset = self.check_local(m)
            data_end = data_offset + m.compressed_size
            if data_end > next_offset:
                raise self.unsafe(f"zip member {m.name!r} overlaps the next member or the central directory")
            gap = next_offset - data_end
            if m.flags & 0x8:
                self.check_descriptor(m, data_end, gap)
            elif gap:
                raise self.unsafe(f"{gap} unexplained bytes after zip member {m.name!r}")
            result.append(
                ZipMember(m.name, m.method, m.flags, m.header_offset, data_offset, m.compressed_size, m.size, m.crc)
            )
        return result

    def check_local(self, m: ZipMember) -> int:
        head = self.read_at(m.header_offset, _LOCAL.size)
        sig, _need, flags, method, _t, _d, crc, csize, usize, nlen, elen = _LOCAL.unpack(head)
        if sig != _LOCAL_SIG:
            raise self.unsafe(f"zip member {m.name!r}: no local header at offset {m.header_offset}")
        rest = self.read_at(m.header_offset + _LOCAL.size, nlen + elen)
        name, extra = rest[:nlen], rest[nlen:]
        if name != m.name.encode("utf-8" if m.flags & 0x800 else "ascii"):
            raise self.unsafe(
                f"zip member {m.name!r}: local header names it {name.decode('utf-8', 'replace')!r} (a second view of the archive)"
            )
        if flags != m.flags:
            raise self.unsafe(f"zip member {m.name!r}: local header flags {flags:#x} differ from the directory's {m.flags:#x}")
        if method != m.method:
            raise self.unsafe(f"zip member {m.name!r}: local header method {method} differs from the directory's {m.method}")
        fields = _parse_extra(extra, m.name, self)
        if flags & 0x8:
            # Sizes and CRC live in the data descriptor; the header carries zeros (or copies).
            ok = crc in (0, m.crc) and csize in (0, m.compressed_size, _U32_MAX) and usize in (0, m.size, _U32_MAX)
        else:
            if usize == _U32_MAX or csize == _U32_MAX:
                z64 = fields.get(0x0001, b"")
                if len(z64) < 16:
                    raise self.unsafe(f"zip member {m.name!r}: local header lacks its zip64 sizes")
                usize, csize = struct.unpack_from("<QQ", z64)
            ok = crc == m.crc and csize == m.compressed_size and usize == m.size
        if not ok:
            raise self.unsafe(f"zip member {m.name!r}: local header CRC/sizes differ from the central directory")
        data_offset = m.header_offset + _LOCAL.size + nlen + elen
        if data_offset + m.compressed_size > self.size:
            raise MalformedModelError(self.path, f"zip member {m.name!r} runs past the end of the file (truncated)")
        return data_offset

    def check_descriptor(self, m: ZipMember, at: int, gap: int) -> None:
        """The gap after a bit-3 member must be exactly one data descriptor (with or without its
        signature, 32- or 64-bit sizes) repeating the directory's CRC and sizes."""
        if gap in (12, 16, 20, 24):
            raw = self.read_at(at, gap)
            if gap in (16, 24):
                if raw[:4] == _DESCRIPTOR_SIG:
                    raw = raw[4:]
                else:
                    raw = b""
            if raw:
                fmt = "<III" if len(raw) == 12 else "<IQQ"
                if struct.unpack(fmt, raw) == (m.crc, m.compressed_size, m.size):
                    return
        raise self.unsafe(
            f"zip member {m.name!r}: the {gap} bytes after its data are not a matching data descriptor"
        )


def _merge(classic: int, z64: int, sentinel: int, what: str, parser: _Parser) -> int:
    """The zip64 value wins; the classic field must agree with it or hold the sentinel."""
    if classic != z64 and classic != sentinel:
        raise parser.unsafe(f"zip64 and classic end records disagree on the {what} ({z64} vs {classic})")
    return z64


def _parse_extra(extra: bytes, name: str, parser: _Parser) -> dict[int, bytes]:
    """Split an extra field into (id -> data); it must tile exactly and not repeat ids."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(extra):
        if pos + 4 > len(extra):
            raise parser.unsafe(f"zip member {name!r} has a truncated extra field")
        field_id, length = struct.unpack_from("<HH", extra, pos)
        pos += 4
        if pos + length > len(extra):
            raise parser.unsafe(f"zip member {name!r} has an extra field running past its end")
        if field_id in fields:
            raise parser.unsafe(f"zip member {name!r} repeats extra field {field_id:#06x}")
        fields[field_id] = extra[pos : pos + length]
        pos += length
    return fields
