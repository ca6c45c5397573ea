"""torch.save files (zip archives and the legacy pickle stream) -> :class:`Manifest`.

Nothing here imports torch or unpickles anything: ``data.pkl`` and the legacy pickles go
through :func:`consentry.formats.pickle_vm.interpret_pickle`, which only builds inert records.
The container is checked against the exact layout torch writes, and every storage against
the bytes that back it, so that what we describe is what ``torch.load`` would build.

Naming rule (how a pickled object becomes tensor names):

* dict keys and list/tuple indices are joined with ``"."`` (``{"a": {"b": t}}`` -> ``a.b``);
* if the top level is a dict whose ``"state_dict"`` value is a dict, the entries inside it are
  named by their own keys, without a ``state_dict.`` prefix (what checkpoint converters keep);
  other top-level entries keep their key (``optimizer_states.0...``);
* a tensor that is the whole pickle is named ``tensor``;
* non-tensor leaves (``global_step``, hyper-parameters, empty containers) go to
  ``Manifest.extras`` as a short repr;
* two tensors that would get the same name make the file unsafe (one would hide the other).
"""

from __future__ import annotations

import math
import mmap
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from consentry.errors import MalformedModelError, ModelFileError, UnsafeModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.pickle_vm import PickleResult, StorageRef, TensorRef, interpret_pickle
from consentry.formats.sniff import TORCH_LEGACY_MAGIC
from consentry.formats.strict_zip import StrictZip, ZipMember
from consentry.formats.tensors import DTYPE_BITS, Format, Manifest, TensorInfo, dtype_itemsize

__all__ = ["TorchManifest", "read_torch_zip", "read_torch_legacy"]

LEGACY_PROTOCOL_VERSION = 1001

# What torch.save (2.x, zip format) writes under its one top-level folder. A1111's safe.py
# regex plus the records newer torch adds (byteorder, .format_version, .storage_alignment,
# .data/serialization_id). Anything else (TorchScript code/, constants.pkl, a pickle under
# another name) is not read.
_TORCH_RECORD_RE = re.compile(
    r"^(?:data\.pkl|data/[0-9]{1,20}|version|\.data/version|\.data/serialization_id"
    r"|byteorder|\.format_version|\.storage_alignment)$"
)
_TEXT_RECORDS = ("version", ".data/version", ".data/serialization_id", "byteorder", ".format_version", ".storage_alignment")
_TEXT_RECORD_MAX = 64
_TEXT_RECORD_RE = re.compile(rb"^[0-9A-Za-z_.\-]*\n?$")

_REPR_MAX = 120


# ---------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class _Source:
    """Where one tensor's elements live and how to turn them into canonical bytes."""

    dtype: str
    itemsize: int
    swap: int  # byte-swap unit in bytes when stored big-endian, else 0
    offset: int  # storage offset, elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage_numel: int
    raw_offset: int | None = None  # absolute file offset of the storage's first byte, if raw
    member: ZipMember | None = None  # the compressed zip member holding the storage, if not raw

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def contiguous(self) -> bool:
        return _is_c_contiguous(self.shape, self.stride)


@dataclass
class TorchManifest(Manifest):
    """A manifest that can also produce bytes for strided, compressed or big-endian tensors."""

    _sources: dict[str, _Source] = field(default_factory=dict, repr=False)
    _zip: StrictZip | None = field(default=None, repr=False)

    def iter_tensor_bytes(self, tensor: TensorInfo, chunk_size: int = 1 << 22) -> Iterator[bytes]:
        """Canonical C-order little-endian bytes; CRC failures surface when the iterator ends."""
        if tensor.file_range is not None:
            yield from super().iter_tensor_bytes(tensor, chunk_size)
            return
        src = self._sources[tensor.name]
        if src.numel == 0:
            return
        if src.member is None:
            assert src.raw_offset is not None
            buf = np.memmap(self.path, dtype=np.uint8, mode="r", offset=src.raw_offset,
                            shape=(src.storage_numel * src.itemsize,))
            yield from _strided_chunks(buf, src, chunk_size)
            return
        assert self._zip is not None
        if src.contiguous:
            yield from self._stream_member(src, chunk_size)
            return
        # A strided view into a compressed storage: inflate to a temporary file (bounded by the
        # member's validated size, CRC-checked), then view it like a raw storage.
        with tempfile.TemporaryFile() as tmp:
            for block in self._zip.iter_member(src.member, chunk_size):
                tmp.write(block)
            tmp.flush()
            buf = np.memmap(tmp, dtype=np.uint8, mode="r", shape=(src.storage_numel * src.itemsize,))
            yield from _strided_chunks(buf, src, chunk_size)
            del buf

    def _stream_member(self, src: _Source, chunk_size: int) -> Iterator[bytes]:
        """Contiguous tensor in a compressed member: skip to it, stream it, read to the end for the CRC."""
        assert self._zip is not None and src.member is not None
        start = src.offset * src.itemsize
        end = start + src.numel * src.itemsize
        pos = 0  # offset of ``block`` within the member
        carry = b""
        for block in self._zip.iter_member(src.member, chunk_size):
            lo, hi = max(start, pos), min(end, pos + len(block))
            block_start, pos = pos, pos + len(block)
            if lo >= hi:
                continue
            piece = carry + block[lo - block_start : hi - block_start]
            if src.swap:
                cut = len(piece) - len(piece) % src.swap
                piece, carry = piece[:cut], piece[cut:]
                piece = np.frombuffer(piece, dtype=f"u{src.swap}").byteswap().tobytes()
            if piece:
                yield piece


def _is_c_contiguous(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """torch's rule: strides of size-1 dims do not matter, empty tensors are contiguous."""
    if math.prod(shape) == 0:
        return True
    expected = 1
    for dim, st in zip(reversed(shape), reversed(stride)):
        if dim != 1 and st != expected:
            return False
        expected *= dim
    return True


def _strided_chunks(buf: np.ndarray, src: _Source, chunk_size: int) -> Iterator[bytes]:
    elem = buf.view(np.dtype((np.void, src.itemsize)))
    arr = np.lib.stride_tricks.as_strided(
        elem[src.offset :],
        shape=src.shape,
        strides=tuple(s * src.itemsize for s in src.stride),
        writeable=False,
    )
    for block in _c_order_blocks(arr, max(1, chunk_size // src.itemsize)):
        flat = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
        if src.swap:
            flat = flat.view(f"u{src.swap}").byteswap()
        yield flat.tobytes()


def _c_order_blocks(arr: np.ndarray, chunk_elems: int) -> Iterator[np.ndarray]:
    """Split ``arr`` into consecutive C-order pieces of at most ~chunk_elems elements."""
    if arr.ndim == 0 or arr.size <= chunk_elems:
        yield arr
        return
    row = arr[0].size
    if row == 0:
        return
    step = chunk_elems // row
    if step >= 1:
        for i in range(0, arr.shape[0], step):
            yield arr[i : i + step]
    else:
        for i in range(arr.shape[0]):
            yield from _c_order_blocks(arr[i], chunk_elems)


# ---------------------------------------------------------------------------- zip format


def read_torch_zip(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> TorchManifest:
    """Read a ``torch.save`` zip archive. Any zip that is not exactly a torch archive is refused.

    The container, every small record and data.pkl are CRC-checked here. Compressed tensor
    members are CRC-checked when their bytes go through :meth:`TorchManifest.iter_tensor_bytes`.
    Stored (uncompressed, torch's default) tensor members are read straight from the file, so
    they are listed in ``Manifest.crc_ranges`` and checked by
    :func:`~consentry.identity.identify.identify` in the same single read that hashes the file
    (torch itself never checks them: its miniz build skips CRC checks).
    """
    p = Path(path)
    zf = StrictZip.open(p, limits)
    if not zf.members:
        raise MalformedModelError(p, "empty zip archive")
    prefix, records = _torch_layout(p, zf)

    texts: dict[str, bytes] = {}
    for rel in _TEXT_RECORDS:
        if rel in records:
            texts[rel] = _text_record(p, zf, records[rel])
    byteorder = texts.get("byteorder", b"little")  # torch assumes native (little) without one
    if byteorder not in (b"little", b"big"):
        raise UnsafeModelError(p, f"zip member '{prefix}/byteorder' says {byteorder!r} (only 'little' or 'big')")

    pkl_member = records["data.pkl"]
    data = zf.read_member(pkl_member, limits.max_pickle_bytes)
    result = _interpret(p, data, 0, limits, True, pkl_member.name)
    if result.end != len(data):
        raise UnsafeModelError(
            p, f"{pkl_member.name}: {len(data) - result.end} bytes after the pickle's STOP opcode"
        )

    named = _flatten(p, result.value, limits)
    storages = _collect_storages(p, named)
    big = byteorder == b"big"
    members_for: dict[str, ZipMember] = {}
    for key, (dtype, numel) in storages.items():
        member = records.get(f"data/{key}")
        if member is None:
            raise UnsafeModelError(p, f"{pkl_member.name} refers to storage {key!r} but there is no member '{prefix}/data/{key}'")
        itemsize = _itemsize(p, dtype)
        if member.size != numel * itemsize:
            raise UnsafeModelError(
                p, f"storage {key!r} declares {numel} x {dtype} ({numel * itemsize} bytes) but "
                f"'{member.name}' holds {member.size} bytes"
            )
        members_for[key] = member
    for rel, member in records.items():
        if rel.startswith("data/") and rel[5:] not in storages:
            raise UnsafeModelError(p, f"zip member {member.name!r} is not referenced by {pkl_member.name}")

    manifest = TorchManifest(path=p, format=Format.TORCH_ZIP)
    manifest._zip = zf
    for member in sorted(members_for.values(), key=lambda m: m.data_offset):
        if member.stored:
            manifest.crc_ranges.append((member.name, member.data_offset, member.data_offset + member.size, member.crc))
    for name, ref in named.tensors:
        storage = ref.storage if isinstance(ref, TensorRef) else ref
        if storage.view is not None:
            raise UnsafeModelError(p, f"tensor {name!r}: storage view metadata is not used in zip archives")
        member = members_for[storage.key]
        itemsize = _itemsize(p, storage.dtype)
        swap = _swap_unit(storage.dtype, itemsize) if big else 0
        src = _make_source(p, name, ref, itemsize, swap, storage.numel)
        if member.stored:
            src = replace(src, raw_offset=member.data_offset)
        else:
            src = replace(src, member=member)
        file_range = None
        if member.stored and not big and src.contiguous:
            start = member.data_offset + src.offset * itemsize
            file_range = (start, start + src.numel * itemsize)
        _add_tensor(manifest, name, storage.dtype, src, file_range)
    _finish(manifest, named)
    return manifest


def _torch_layout(p: Path, zf: StrictZip) -> tuple[str, dict[str, ZipMember]]:
    """One top-level folder holding only torch's records; returns (prefix, record -> member)."""
    prefixes: dict[str, str] = {}
    records: dict[str, ZipMember] = {}
    for member in zf:
        prefix, sep, rel = member.name.partition("/")
        if not sep:
            raise UnsafeModelError(p, f"zip member {member.name!r} is not inside a folder: not a torch archive")
        prefixes.setdefault(prefix, member.name)
        if not _TORCH_RECORD_RE.match(rel):
            raise UnsafeModelError(
                p, f"zip member {member.name!r} is not part of a torch.save archive "
                "(a pickle or payload under an unexpected name, TorchScript, or another kind of zip)"
            )
        records[rel] = member
    if len(prefixes) > 1:
        first = sorted(prefixes.values())[:2]
        raise UnsafeModelError(p, f"zip members under more than one top-level folder ({first[0]!r}, {first[1]!r})")
    if "data.pkl" not in records:
        raise UnsafeModelError(p, "zip archive has no data.pkl: not a torch archive")
    return next(iter(prefixes)), records


def _text_record(p: Path, zf: StrictZip, member: ZipMember) -> bytes:
    """Short ASCII records (version, byteorder...): small, so nothing can hide in them."""
    if member.size > _TEXT_RECORD_MAX:
        raise UnsafeModelError(p, f"zip member {member.name!r} is {member.size} bytes; torch writes a short text record")
    text = zf.read_member(member, _TEXT_RECORD_MAX)
    if not _TEXT_RECORD_RE.match(text):
        raise UnsafeModelError(p, f"zip member {member.name!r} holds {text[:40]!r}, not a short text record")
    return text


# ---------------------------------------------------------------------------- legacy format


def read_torch_legacy(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> TorchManifest:
    """Read a legacy (``_use_new_zipfile_serialization=False``) torch file.

    Layout: pickles of the magic number, the protocol version (1001), a sys_info dict, the
    object, and the sorted list of storage keys; then per key an 8-byte little-endian element
    count and the raw little-endian bytes. A pickle that does not start with the magic number
    is a bare pickle: it is interpreted (so a refused global is named) and then quarantined,
    because consentry reads pickles only as part of a torch file.
    """
    p = Path(path)
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise MalformedModelError(p, "empty file")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mm)
    try:
        return _read_legacy(p, view, size, limits)
    finally:
        view.release()
        try:
            mm.close()
        except BufferError:  # the interpreter kept a slice alive; the GC will unmap it
            pass


def _read_legacy(p: Path, data: memoryview, size: int, limits: ReadLimits) -> TorchManifest:
    def pickle_at(start: int, persistent: bool, what: str) -> PickleResult:
        window = data[: min(size, start + limits.max_pickle_bytes)]
        return _interpret(p, window, start, limits, persistent, what)

    magic = pickle_at(0, True, "pickle at offset 0")
    if not (type(magic.value) is int and magic.value == TORCH_LEGACY_MAGIC):
        raise UnsafeModelError(
            p, f"not a torch file: a bare pickle ({_describe(magic.value)}); pickles are read only inside torch.save files"
        )
    proto = pickle_at(magic.end, False, "legacy protocol pickle")
    if not (type(proto.value) is int and proto.value == LEGACY_PROTOCOL_VERSION):
        raise MalformedModelError(p, f"legacy torch protocol version {_short_repr(proto.value)} (expected {LEGACY_PROTOCOL_VERSION})")
    sys_info = pickle_at(proto.end, False, "legacy sys_info pickle")
    if not isinstance(sys_info.value, dict):
        raise MalformedModelError(p, f"legacy sys_info is {_describe(sys_info.value)}, not a dict")
    main = pickle_at(sys_info.end, True, "legacy main pickle")
    keys_result = pickle_at(main.end, False, "legacy storage-key pickle")
    keys = keys_result.value
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise MalformedModelError(p, f"legacy storage-key pickle is {_describe(keys)}, not a list of strings")
    if len(set(keys)) != len(keys):
        raise UnsafeModelError(p, "legacy storage-key list names a storage twice")

    named = _flatten(p, main.value, limits)
    storages = _collect_storages(p, named)
    missing = sorted(set(storages) - set(keys))
    if missing:
        # torch would hand back uninitialised memory for these.
        raise UnsafeModelError(p, f"storage {missing[0]!r} is used by the pickle but has no data in the file")

    pos = keys_result.end
    data_offset: dict[str, int] = {}
    for key in keys:
        if key not in storages:
            raise MalformedModelError(p, f"legacy storage list names {key!r}, which the pickle never uses")
        dtype, numel = storages[key]
        itemsize = _itemsize(p, dtype)
        if pos + 8 > size:
            raise MalformedModelError(p, f"file ends before the size of storage {key!r} (truncated)")
        stored = int.from_bytes(data[pos : pos + 8], "little", signed=True)
        if stored != numel:
            raise UnsafeModelError(p, f"storage {key!r} declares {numel} elements in the pickle but {stored} in the file")
        data_offset[key] = pos + 8
        pos += 8 + numel * itemsize
        if pos > size:
            raise MalformedModelError(p, f"file ends inside storage {key!r} (truncated: needs {pos - size} more bytes)")
    if pos != size:
        raise UnsafeModelError(p, f"{size - pos} trailing bytes after the last storage (a second pickle?)")

    manifest = TorchManifest(path=p, format=Format.TORCH_LEGACY)
    for name, ref in named.tensors:
        storage = ref.storage if isinstance(ref, TensorRef) else ref
        itemsize = _itemsize(p, storage.dtype)
        base = data_offset[storage.key]
        numel = storage.numel
        if storage.view is not None:
            _view_key, view_offset, view_size = storage.view
            if not (_nonneg_int(view_offset) and _nonneg_int(view_size)) or view_offset + view_size > storage.numel:
                raise UnsafeModelError(p, f"tensor {name!r}: storage view {storage.view!r} is outside its storage")
            base += view_offset * itemsize
            numel = view_size
        src = replace(_make_source(p, name, ref, itemsize, 0, numel), raw_offset=base)
        file_range = None
        if src.contiguous:
            start = base + src.offset * itemsize
            file_range = (start, start + src.numel * itemsize)
        _add_tensor(manifest, name, storage.dtype, src, file_range)
    _finish(manifest, named)
    return manifest


# ---------------------------------------------------------------------------- shared helpers


def _interpret(p: Path, data: bytes | memoryview, start: int, limits: ReadLimits, persistent: bool, what: str) -> PickleResult:
    try:
        return interpret_pickle(data, start, limits=limits, torch_persistent_ids=persistent)
    except ModelFileError as err:
        raise type(err)(p, f"{what}: {err.problem}") from err


@dataclass
class _Named:
    tensors: list[tuple[str, TensorRef | StorageRef]] = field(default_factory=list)
    extras: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _flatten(p: Path, value: Any, limits: ReadLimits) -> _Named:
    """Apply the naming rule in the module docstring (iteratively: no recursion limit)."""
    out = _Named()
    roots: list[tuple[str, Any]]
    if isinstance(value, dict) and isinstance(value.get("state_dict"), dict):
        roots = list(value["state_dict"].items())
        roots += [(k, v) for k, v in value.items() if k != "state_dict"]
        out.notes.append("tensors inside 'state_dict' are named by their own keys")
    else:
        roots = [("", value)]
    budget = 4 * limits.max_tensors + 1000  # nodes visited: stops shared-container blow-ups
    stack: list[tuple[str, Any, int]] = [(_key(k) if k != "" else "", v, 1) for k, v in reversed(roots)]
    seen_names: set[str] = set()
    while stack:
        name, node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise UnsafeModelError(p, "pickled object expands to too many values (shared containers?)")
        if depth > limits.max_pickle_depth:
            raise UnsafeModelError(p, f"pickled object nests deeper than {limits.max_pickle_depth} levels (self-referential?)")
        if isinstance(node, (TensorRef, StorageRef)):
            name = name or "tensor"
            if name in seen_names:
                raise UnsafeModelError(p, f"two tensors would both be named {name!r}")
            seen_names.add(name)
            out.tensors.append((name, node))
            if len(out.tensors) > limits.max_tensors:
                raise UnsafeModelError(p, f"more than {limits.max_tensors} tensors")
            continue
        if isinstance(node, dict) and node:
            items = [(_key(k), v) for k, v in node.items()]
        elif isinstance(node, (list, tuple)) and node:
            items = [(str(i), v) for i, v in enumerate(node)]
        else:
            out.extras.setdefault(name or "value", _short_repr(node))
            continue
        for k, v in reversed(items):
            stack.append((f"{name}.{k}" if name else k, v, depth + 1))
    return out


def _key(k: Any) -> str:
    return k if isinstance(k, str) else str(k) if isinstance(k, int) else repr(k)


def _collect_storages(p: Path, named: _Named) -> dict[str, tuple[str, int]]:
    """key -> (dtype, numel); one storage declared two ways is refused (torch keeps the first)."""
    storages: dict[str, tuple[str, int]] = {}
    for name, ref in named.tensors:
        storage = ref.storage if isinstance(ref, TensorRef) else ref
        if not isinstance(storage.key, str) or not _nonneg_int(storage.numel):
            raise UnsafeModelError(p, f"tensor {name!r} has a malformed storage record {storage!r}")
        decl = (storage.dtype, storage.numel)
        if storages.setdefault(storage.key, decl) != decl:
            old = storages[storage.key]
            raise UnsafeModelError(
                p, f"storage {storage.key!r} is declared as {old[1]} x {old[0]} and as {decl[1]} x {decl[0]}"
            )
    return storages


def _make_source(p: Path, name: str, ref: TensorRef | StorageRef, itemsize: int, swap: int, storage_numel: int) -> _Source:
    """Check the view stays inside its storage (out-of-bounds views are a memory-corruption shape)."""
    if isinstance(ref, StorageRef):
        offset, shape, stride = 0, (storage_numel,), (1,)
        dtype = ref.dtype
    else:
        offset, shape, stride = ref.offset, tuple(ref.shape), tuple(ref.stride)
        dtype = ref.storage.dtype
    if not (_nonneg_int(offset) and len(shape) == len(stride)
            and all(_nonneg_int(d) for d in shape) and all(_nonneg_int(s) for s in stride)):
        raise UnsafeModelError(p, f"tensor {name!r} has malformed geometry (offset {offset!r}, shape {shape!r}, stride {stride!r})")
    if math.prod(shape) > 0:
        last = offset + sum((d - 1) * s for d, s in zip(shape, stride))
        if last >= storage_numel:
            raise UnsafeModelError(
                p, f"tensor {name!r} reaches element {last} of a storage of {storage_numel} elements"
            )
    return _Source(dtype, itemsize, swap, offset, shape, stride, storage_numel)


def _add_tensor(manifest: TorchManifest, name: str, dtype: str, src: _Source,
                file_range: tuple[int, int] | None) -> None:
    manifest.tensors.append(TensorInfo(name=name, dtype=dtype, shape=src.shape, path=manifest.path, file_range=file_range))
    manifest._sources[name] = src


def _finish(manifest: TorchManifest, named: _Named) -> None:
    manifest.extras.update(named.extras)
    manifest.notes.extend(named.notes)


def _itemsize(p: Path, dtype: str) -> int:
    try:
        return dtype_itemsize(dtype)
    except (KeyError, ValueError):
        why = "unknown" if dtype not in DTYPE_BITS else "sub-byte"
        raise UnsafeModelError(p, f"storage dtype {dtype!r} is {why}; its bytes cannot be checked") from None


def _swap_unit(dtype: str, itemsize: int) -> int:
    """Big-endian archives store each scalar swapped; complex numbers are two scalars."""
    if itemsize == 1:
        return 0
    return itemsize // 2 if dtype.startswith("C") else itemsize


def _nonneg_int(x: Any) -> bool:
    return type(x) is int and x >= 0


def _describe(value: Any) -> str:
    return f"top-level {type(value).__name__} {_short_repr(value)}"


def _short_repr(value: Any) -> str:
    """A bounded description: containers by size only (they may be huge or self-referential)."""
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return f"<{type(value).__name__} of {len(value)}>" if value else repr(type(value)())
    if type(value) is int and value.bit_length() > 256:
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, (str, bytes, bytearray)):
        value = value[: _REPR_MAX]
    text = repr(value)
    return text if len(text) <= _REPR_MAX else text[: _REPR_MAX - 3] + "..."
