"""A strict validating reader of the safetensors header; it never materialises tensors.

The rules are the Rust crate's (``safetensors/src/tensor.rs``), which is what every loader
runs, plus what the crate misses (see docs reference ``untrusted-files.md`` §1.4, §1.8 C):

* 8-byte little-endian u64 header length ``N``; ``N <= limits.max_header_bytes`` (100 MB, the
  crate's ``MAX_HEADER_SIZE``; huggingface_hub's 25 MB is a reader convenience, not a rule);
  ``8 + N <= file size``.
* The header is strict UTF-8 JSON. **Whitespace policy (the README, not the crate):** the
  header must begin with ``{`` (leading whitespace is rejected although the crate tolerates
  it), and may be followed only by space (0x20) padding, which is what writers emit for
  alignment. ``NaN``/``Infinity`` and lone-surrogate escapes are rejected, as serde does.
* Duplicate keys are rejected at every level (Python's ``json`` and the crate keep the last).
* ``__metadata__`` is optional and string -> string. Every other key is a tensor entry with
  exactly ``dtype``, ``shape`` and ``data_offsets``; dtypes are the crate's closed enum.
* ``numel * bits`` is byte-aligned, fits in a u64, and equals ``end - begin``; sorted by
  offset the entries start at 0 and tile the data buffer with no hole or overlap, and the
  buffer ends exactly at the end of the file (no trailing bytes: no polyglots).
* At most ``limits.max_tensors`` entries, refused *before* JSON parsing (see
  :func:`_max_possible_entries`) so a 10-million-entry header costs one pass over its bytes.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterator

from consentry.errors import MalformedModelError, ModelFileUnreadable
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import DTYPE_BITS, Format, Manifest, TensorInfo

__all__ = ["SAFETENSORS_DTYPES", "parse_safetensors_header", "read_safetensors", "safetensors_header_length"]

# The crate's closed `enum Dtype`; C128 is consentry's own name for torch's complex128, which
# safetensors cannot store, so a file claiming it is malformed.
SAFETENSORS_DTYPES: frozenset[str] = frozenset(DTYPE_BITS) - {"C128"}

_U64_MAX = (1 << 64) - 1
_METADATA_KEY = "__metadata__"
_ENTRY_KEYS = ("dtype", "shape", "data_offsets")


def read_safetensors(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """Validate a local ``.safetensors`` file's header against its size; return its manifest.

    Reads only ``8 + N`` bytes. Raises :class:`MalformedModelError` naming the problem.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            prefix = fh.read(8)
            n = safetensors_header_length(prefix, size, limits=limits, path=p)
            header = fh.read(n)
    except OSError as exc:
        raise ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}") from None
    if len(header) != n:  # the file shrank under us
        raise MalformedModelError(p, f"file ended inside the safetensors header ({len(header)} of {n} bytes)")
    return _parse(header, size, limits, p)  # no prefix + header copy: N may be 100 MB


def safetensors_header_length(
    prefix: bytes, file_size: int, *, limits: ReadLimits = DEFAULT_LIMITS, path: str | os.PathLike[str] | None = None
) -> int:
    """Decode and bound the header length ``N`` from the file's first 8 bytes.

    Separate so a remote reader can check ``N`` before it fetches the header by range request.
    """
    if len(prefix) < 8:
        raise MalformedModelError(
            path, f"file has {file_size} bytes, fewer than the 8-byte safetensors header length"
        )
    (n,) = struct.unpack("<Q", prefix[:8])
    # A length with the top bit set is what a signed reader sees as negative: say so.
    signed = f"; read as a signed 64-bit integer it is negative ({n - (1 << 64)})" if n >> 63 else ""
    if n > limits.max_header_bytes:
        raise MalformedModelError(
            path, f"safetensors header length {n} exceeds the limit of {limits.max_header_bytes} bytes{signed}"
        )
    if 8 + n > file_size:  # Python ints: no wrap-around at 2**64
        raise MalformedModelError(
            path,
            f"safetensors header length {n} exceeds the file ({file_size} bytes): only {_bytes(max(file_size - 8, 0))} "
            f"follow the length field (truncated inside the header, or a false length){signed}",
        )
    if n < 2:
        raise MalformedModelError(path, f"safetensors header length {n} is too small for a JSON object")
    return n


def _bytes(n: int) -> str:
    return "1 byte" if n == 1 else f"{n} bytes"


def parse_safetensors_header(
    header_bytes: bytes,
    file_size: int,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    path: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Validate a safetensors header held in memory and return the manifest it describes.

    ``header_bytes`` are the file's first bytes *including* the 8-byte length prefix (at least
    ``8 + N`` of them; anything after is ignored); ``file_size`` is the whole file's size, e.g.
    from an HTTP ``Content-Range``. Errors carry ``path`` (None is fine: callers add it).
    """
    n = safetensors_header_length(header_bytes[:8], file_size, limits=limits, path=path)
    if len(header_bytes) < 8 + n:
        raise MalformedModelError(path, f"got {len(header_bytes) - 8} of the {n} safetensors header bytes")
    return _parse(header_bytes[8 : 8 + n], file_size, limits, path)


def _parse(raw: bytes, file_size: int, limits: ReadLimits, path: Any) -> Manifest:
    """Validate the JSON header ``raw`` (``N`` bytes, its length already checked)."""
    data_start = 8 + len(raw)
    if raw[:1] != b"{":
        if raw[:1] in (b" ", b"\t", b"\n", b"\r"):
            raise MalformedModelError(path, "safetensors header starts with whitespace; it must begin with '{'")
        raise MalformedModelError(path, f"safetensors header does not begin with '{{' (starts with {raw[:8]!r})")
    possible = _max_possible_entries(raw)
    if possible > limits.max_tensors + 1:  # +1: __metadata__
        raise MalformedModelError(
            path,
            f"safetensors header has room for {possible} entries ({{ count), "
            f"more than the limit of {limits.max_tensors} tensors",
        )
    with _gc_paused():
        return _build_manifest(raw, data_start, file_size, limits, path)


def _build_manifest(raw: bytes, data_start: int, file_size: int, limits: ReadLimits, path: Any) -> Manifest:
    header = _decode_json(raw, path)
    metadata: dict[str, str] = {}
    entries: list[tuple[int, int, str, str, tuple[int, ...]]] = []
    for name in list(header):
        value = header.pop(name)  # drop each parsed entry once validated: lower peak memory
        _check_text(name, "tensor name", path)
        if name == _METADATA_KEY:
            metadata = _check_metadata(value, path)
        else:
            entries.append(_check_entry(name, value, path))
    del header
    if len(entries) > limits.max_tensors:
        raise MalformedModelError(
            path, f"safetensors header has {len(entries)} tensors, more than the limit of {limits.max_tensors}"
        )

    # Sorted by offsets the entries must tile [0, buffer end) exactly (crate: Metadata::validate).
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    position = 0
    previous: str | None = None
    for begin, end, name, _dtype, _shape in entries:
        if begin < position:
            raise MalformedModelError(
                path, f"tensor {name!r} offsets [{begin}, {end}] overlap the previous tensor {previous!r} ending at {position}"
            )
        if begin > position:
            if previous is None:
                raise MalformedModelError(path, f"tensor data does not start at offset 0: first tensor {name!r} begins at {begin}")
            raise MalformedModelError(
                path, f"hole in the data buffer: bytes [{position}, {begin}) between tensors {previous!r} and {name!r} belong to no tensor"
            )
        position = end
        previous = name
    file_end = data_start + position
    if file_end > file_size:
        raise MalformedModelError(
            path, f"tensor {previous!r} ends at byte {file_end}, beyond the end of the file ({file_size} bytes)"
        )
    if file_end < file_size:
        raise MalformedModelError(
            path, f"{file_size - file_end} trailing bytes after the tensor data (data ends at byte {file_end} of {file_size})"
        )

    p = Path(path) if path is not None else None
    tensors = []
    for i, (begin, end, name, dtype, shape) in enumerate(entries):
        tensors.append(TensorInfo(name=name, dtype=dtype, shape=shape, path=p, file_range=(data_start + begin, data_start + end)))
        entries[i] = None  # type: ignore[call-overload]  # free as we go
    return Manifest(
        path=p if p is not None else Path(),
        format=Format.SAFETENSORS,
        tensors=tensors,
        metadata=metadata,
        data_start=data_start,
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Building a million small containers triggers the cyclic GC over and over (3x slower);
    the parsed header holds no cycles, so pause it for the duration."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _max_possible_entries(raw: bytes) -> int:
    """An upper bound on the header's entries that costs one C-speed pass and no objects.

    Every JSON object needs a literal ``{`` byte (escapes exist only inside strings), and each
    tensor entry is an object, so ``count('{') - 1`` bounds the entries. Braces inside string
    values only make the bound looser, never too small.
    """
    return raw.count(b"{") - 1


class _Duplicated(dict):
    """A JSON object that had a repeated key: kept so the caller can say at which level."""

    __slots__ = ("duplicate",)


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        marked = _Duplicated(obj)
        marked.duplicate = dup
        return marked
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_json(raw: bytes, path: Any) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")  # strict
    except UnicodeDecodeError as exc:
        raise MalformedModelError(path, f"safetensors header is not valid UTF-8 (byte {exc.start + 8} of the file)") from None
    stripped = text.rstrip(" ")  # the README's trailing 0x20 padding, and nothing else
    if not stripped.endswith("}"):  # json.loads would also skip trailing tabs and newlines
        raise MalformedModelError(
            path, f"safetensors header must end with '}}' plus only space padding (ends with {stripped[-8:]!r})"
        )
    try:
        value = json.loads(stripped, object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
    except RecursionError:
        raise MalformedModelError(path, "safetensors header JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, over-long integers, NaN/Infinity
        raise MalformedModelError(path, f"safetensors header is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedModelError(path, f"safetensors header is a JSON {_json_type(value)}, not an object")
    if isinstance(value, _Duplicated):
        if value.duplicate == _METADATA_KEY:
            raise MalformedModelError(path, "duplicate '__metadata__' key in header")
        raise MalformedModelError(path, f"duplicate tensor name {value.duplicate!r} in header")
    return value


def _check_text(text: str, what: str, path: Any) -> None:
    """serde rejects lone-surrogate escapes (``"\\ud800"``); Python's json lets them through."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedModelError(path, f"{what} {text!r} contains a lone surrogate escape") from None


def _check_metadata(value: Any, path: Any) -> dict[str, str]:
    if isinstance(value, dict) and any(k in value for k in _ENTRY_KEYS):
        raise MalformedModelError(
            path, "'__metadata__' is a tensor entry; it must be a string-to-string map (safetensors issue #849)"
        )
    if not isinstance(value, dict):
        raise MalformedModelError(path, f"'__metadata__' is a JSON {_json_type(value)}, not a string-to-string map")
    if isinstance(value, _Duplicated):
        raise MalformedModelError(path, f"duplicate metadata key {value.duplicate!r} in '__metadata__'")
    for key, item in value.items():
        _check_text(key, "metadata key", path)
        if not isinstance(item, str):
            raise MalformedModelError(
                path, f"'__metadata__' value for key {key!r} is a JSON {_json_type(item)}, not a string"
            )
        _check_text(item, f"metadata value for key {key!r}:", path)
    return dict(value)


def _check_entry(name: str, value: Any, path: Any) -> tuple[int, int, str, str, tuple[int, ...]]:
    """Validate one tensor entry; return ``(begin, end, name, dtype, shape)``."""
    if not isinstance(value, dict):
        raise MalformedModelError(path, f"tensor {name!r} entry is a JSON {_json_type(value)}, not an object")
    if isinstance(value, _Duplicated):
        raise MalformedModelError(path, f"tensor {name!r} has duplicate key {value.duplicate!r}")
    for key in value:
        if key not in _ENTRY_KEYS:
            raise MalformedModelError(path, f"tensor {name!r} has unexpected key {key!r}")
    for key in _ENTRY_KEYS:
        if key not in value:
            raise MalformedModelError(path, f"tensor {name!r} lacks {key!r}")

    dtype = value["dtype"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise MalformedModelError(path, f"tensor {name!r} has unknown dtype {dtype!r}")

    shape = value["shape"]
    if not isinstance(shape, list):
        raise MalformedModelError(path, f"tensor {name!r} shape is a JSON {_json_type(shape)}, not a list")
    numel = 1
    for dim in shape:
        _check_u64(dim, name, "shape", shape, path)
        numel *= dim
        if numel > _U64_MAX:  # checked per step, so a long shape cannot build a huge integer
            raise MalformedModelError(path, f"tensor {name!r} shape {_short(shape)} overflows: element count exceeds 2**64-1")
    bits = numel * DTYPE_BITS[dtype]
    if bits > _U64_MAX:
        raise MalformedModelError(path, f"tensor {name!r} size overflows: {numel} x {DTYPE_BITS[dtype]} bits exceeds 2**64-1")
    if bits % 8:
        raise MalformedModelError(
            path, f"tensor {name!r} is not byte-aligned: {numel} elements x {DTYPE_BITS[dtype]} bits = {bits} bits"
        )

    offsets = value["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2:
        raise MalformedModelError(path, f"tensor {name!r} data_offsets must be a list of two integers, got {_short(offsets)}")
    for item in offsets:
        _check_u64(item, name, "data_offsets", offsets, path)
    begin, end = offsets
    if begin > end:
        raise MalformedModelError(path, f"tensor {name!r} data_offsets [{begin}, {end}] begin after they end")
    if end - begin != bits // 8:
        raise MalformedModelError(
            path,
            f"tensor {name!r} data_offsets [{begin}, {end}] span {end - begin} bytes but "
            f"{dtype} {_short(shape)} needs {bits // 8}",
        )
    return begin, end, name, dtype, tuple(shape)


def _check_u64(item: Any, name: str, field: str, whole: list[Any], path: Any) -> None:
    """An integer in [0, 2**64-1], as the crate's ``usize`` fields require (no bools, no floats)."""
    if type(item) is int and 0 <= item <= _U64_MAX:  # the common case, without building messages
        return
    what = f"tensor {name!r} {field} {_short(whole)}"
    if isinstance(item, bool) or not isinstance(item, int):
        raise MalformedModelError(path, f"{what} holds {_short(item)}, not an integer")
    if item < 0:
        raise MalformedModelError(path, f"{what} holds a negative number {item}")
    raise MalformedModelError(path, f"{what} holds {item}, more than 2**64-1")


def _short(value: Any, limit: int = 80) -> str:
    """A JSON value for an error message, cut to one short line."""
    try:
        text = json.dumps(value)
    except ValueError:  # integers too long to print
        text = repr(type(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
