"""Recognise a GGUF file and read its key-value metadata safely; tensors are not read yet.

Layout (ggml ``docs/gguf.md``; gguf-py ``gguf_reader.py``), all little-endian:
``"GGUF"``, u32 version, tensor count, KV count, then KV pairs ``key: string, type: u32,
value``. Version 1 used u32 for the counts and for string/array lengths; versions 2 and 3 use
u64. Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
9 array (u32 element type, length, elements), 10 u64, 11 i64, 12 f64.

Every length is checked against the bytes left in the file *before* anything is read or
allocated, and the whole KV section is capped at ``limits.max_header_bytes``, so a hostile
length cannot make us allocate or loop beyond what the file holds. Array elements are skipped,
not kept. ``general.*`` strings and scalars become ``Manifest.metadata`` (as strings).
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

from consentry.errors import MalformedModelError, ModelFileUnreadable, UnsupportedFormatError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import Format, Manifest

__all__ = ["GGUF_VALUE_TYPES", "read_gguf"]

# type id -> (name, struct format of a fixed-size value or None)
GGUF_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("uint8", "<B"),
    1: ("int8", "<b"),
    2: ("uint16", "<H"),
    3: ("int16", "<h"),
    4: ("uint32", "<I"),
    5: ("int32", "<i"),
    6: ("float32", "<f"),
    7: ("bool", "<B"),
    8: ("string", None),
    9: ("array", None),
    10: ("uint64", "<Q"),
    11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7
MAX_KEY_BYTES = 65535  # the spec: "at most 2^16-1 bytes"
MAX_ARRAY_DEPTH = 8  # the spec allows nested arrays; no real file nests more than one level
NOTE_TENSORS_NOT_READ = "GGUF: tensors are recognised and hashed but not read yet"


class _Reader:
    """Bounded little-endian reads; every length is checked before it is used."""

    def __init__(self, fh: BinaryIO, size: int, budget_end: int, path: Path) -> None:
        self.fh, self.size, self.pos, self.path = fh, size, 0, path
        self.budget_end = budget_end  # the KV section may not extend beyond this offset

    def fail(self, problem: str) -> MalformedModelError:
        return MalformedModelError(self.path, problem)

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.size:
            raise self.fail(f"GGUF {what} at byte {self.pos} needs {n} bytes but the file ends at {self.size}")
        if self.pos + n > self.budget_end:
            raise self.fail(f"GGUF metadata section exceeds the limit of {self.budget_end} bytes (at {what})")
        data = self.fh.read(n)
        if len(data) != n:
            raise self.fail(f"file ended inside GGUF {what} at byte {self.pos}")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if self.pos + n > min(self.size, self.budget_end):
            self.take(n, what)  # raises the right message without reading
        self.fh.seek(n, os.SEEK_CUR)
        self.pos += n

    def unpack(self, fmt: str, what: str) -> int | float:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]


def read_gguf(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """Validate a GGUF header and KV metadata; return a manifest without tensors (see notes)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return _read(fh, size, p, limits)
    except OSError as exc:
        raise ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}") from None


def _read(fh: BinaryIO, size: int, p: Path, limits: ReadLimits) -> Manifest:
    r = _Reader(fh, size, budget_end=limits.max_header_bytes, path=p)
    if size < 8:
        raise r.fail(f"file has {size} bytes, too short for a GGUF header")
    if r.take(4, "magic") != b"GGUF":
        raise r.fail("not a GGUF file: magic is not 'GGUF'")
    version = int(r.unpack("<I", "version"))
    if version not in (1, 2, 3):
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in (2, 3):
            raise UnsupportedFormatError(p, f"big-endian GGUF (version {swapped}) is not supported")
        raise r.fail(f"unknown GGUF version {version} (known: 1, 2, 3)")
    count_fmt = "<I" if version == 1 else "<Q"
    count_size = struct.calcsize(count_fmt)
    n_tensors = int(r.unpack(count_fmt, "tensor count"))
    n_kv = int(r.unpack(count_fmt, "metadata count"))
    if n_tensors > limits.max_tensors:
        raise r.fail(f"GGUF declares {n_tensors} tensors, more than the limit of {limits.max_tensors}")
    # The smallest KV pair is an empty key (length only) + type + a one-byte value.
    min_kv = count_size + 4 + 1
    if n_kv * min_kv > size - r.pos:
        raise r.fail(f"GGUF declares {n_kv} metadata entries but only {size - r.pos} bytes follow")

    metadata: dict[str, str] = {}
    seen: set[str] = set()
    for index in range(n_kv):
        key_bytes = _read_string(r, count_fmt, f"metadata key #{index}")
        if len(key_bytes) > MAX_KEY_BYTES:
            raise r.fail(f"GGUF metadata key #{index} is {len(key_bytes)} bytes, more than {MAX_KEY_BYTES}")
        try:
            key = key_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise r.fail(f"GGUF metadata key #{index} is not ASCII: {key_bytes[:60]!r}") from None
        if key in seen:
            raise r.fail(f"duplicate GGUF metadata key {key!r}")
        seen.add(key)
        vtype = int(r.unpack("<I", f"type of {key!r}"))
        keep = key.startswith("general.")
        value = _read_value(r, vtype, count_fmt, key, keep=keep, depth=0)
        if keep and value is not None:
            metadata[key] = value

    alignment = metadata.get("general.alignment")
    if alignment is not None:
        a = int(alignment) if alignment.isdigit() else 0
        if a <= 0 or a & (a - 1):
            raise r.fail(f"GGUF general.alignment {alignment} is not a positive power of two")
    # Each tensor info is at least: name length + n_dims (u32) + type (u32) + offset (u64).
    min_info = count_size + 4 + 4 + 8
    if n_tensors * min_info > size - r.pos:
        raise r.fail(f"GGUF declares {n_tensors} tensors but only {size - r.pos} bytes follow the metadata")

    return Manifest(
        path=p,
        format=Format.GGUF,
        metadata=metadata,
        notes=[NOTE_TENSORS_NOT_READ],
    )


def _read_string(r: _Reader, count_fmt: str, what: str) -> bytes:
    length = int(r.unpack(count_fmt, f"{what} length"))
    return r.take(length, what)  # take() checks the length against the file before reading


def _read_value(r: _Reader, vtype: int, count_fmt: str, key: str, *, keep: bool, depth: int) -> str | None:
    """Consume one value; return it as a string when ``keep`` and it is a string or scalar."""
    if vtype not in GGUF_VALUE_TYPES:
        raise r.fail(f"GGUF metadata {key!r} has unknown value type {vtype} (known: 0-12)")
    name, fmt = GGUF_VALUE_TYPES[vtype]
    if fmt is not None:
        value = r.unpack(fmt, f"{name} value of {key!r}")
        if vtype == _BOOL:
            if value not in (0, 1):
                raise r.fail(f"GGUF metadata {key!r} bool holds {value}, not 0 or 1")
            return ("true" if value else "false") if keep else None
        if keep and isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        return str(value) if keep else None
    if vtype == _STRING:
        data = _read_string(r, count_fmt, f"string value of {key!r}")
        if not keep:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise r.fail(f"GGUF metadata {key!r} string is not valid UTF-8") from None
    # Array: element type, length, elements. Kept values are scalars only; arrays are skipped.
    if depth >= MAX_ARRAY_DEPTH:
        raise r.fail(f"GGUF metadata {key!r} nests arrays more than {MAX_ARRAY_DEPTH} deep")
    etype = int(r.unpack("<I", f"array element type of {key!r}"))
    if etype not in GGUF_VALUE_TYPES:
        raise r.fail(f"GGUF metadata {key!r} array has unknown element type {etype} (known: 0-12)")
    length = int(r.unpack(count_fmt, f"array length of {key!r}"))
    ename, efmt = GGUF_VALUE_TYPES[etype]
    if efmt is not None:
        r.skip(length * struct.calcsize(efmt), f"{length} {ename} elements of {key!r}")
        return None
    # Variable-size elements: each needs at least its own length field (strings) or type+length
    # (arrays); refuse a count the remaining bytes cannot hold before looping over it.
    min_elem = struct.calcsize(count_fmt) + (4 if etype == _ARRAY else 0)
    if length * min_elem > r.size - r.pos:
        raise r.fail(f"GGUF metadata {key!r} declares {length} {ename} elements but only {r.size - r.pos} bytes follow")
    for _ in range(length):
        if etype == _STRING:
            r.skip(int(r.unpack(count_fmt, f"string length in {key!r}")), f"string in {key!r}")
        else:
            _read_value(r, etype, count_fmt, key, keep=False, depth=depth + 1)
    return None
