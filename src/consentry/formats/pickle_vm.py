"""An allow-list interpreter of pickle opcodes that never imports or calls anything.

Why it exists: torch checkpoints are pickles, and ``pickle.load`` (even torch's
``weights_only`` loader) runs whatever the file asks for. consentry only needs to know which
tensors a checkpoint holds and where their bytes are, so it walks the opcodes itself, the way
``torch/_weights_only_unpickler.py`` does, but torch-free and stricter:

- ``interpret_pickle(data, start=0, *, limits, torch_persistent_ids=True) -> PickleResult``
  interprets ONE pickle stream beginning at ``data[start]`` and stops at its STOP opcode.
- A fixed table of opcodes; every other opcode is refused.
- Globals are looked up by the exact pair (module, name) in a small dict of inert sentinels;
  there is no import, no getattr, no call, and no dotted-name traversal. The "allowed callables"
  only produce records (:class:`TensorRef`, :class:`StorageRef`) or plain data.
- Anything else raises :class:`consentry.errors.UnsafeModelError` (path None; the caller adds
  it) whose one-line message names the refused global (``'os.system'``) or opcode and its byte
  offset. Broken or truncated streams raise it too: unparseable means "quarantine", never clean.
- Every resource is bounded by :class:`consentry.formats.limits.ReadLimits` (opcodes, stack,
  MARK nesting, memo, nesting depth, expanded size), so memory and time stay bounded for any
  input.

Billion-laughs and cycles: every container carries its *expanded* size (what a tree walk would
visit) and depth. A list/dict may not be mutated once it sits inside another container, which
makes cycles impossible and keeps the sizes exact; sizes above the opcode budget are refused.
"""

from __future__ import annotations

import codecs
import re
import struct
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable

from consentry.errors import UnsafeModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.tensors import DTYPE_BITS


@dataclass(frozen=True)
class StorageRef:
    """A torch storage named by a persistent id: ('storage', <Type>Storage, key, location, numel)."""

    dtype: str  # canonical safetensors dtype name, from the storage class (FloatStorage -> F32)
    key: str  # zip: member "data/<key>"; legacy: the storage's root key
    location: str  # e.g. "cpu", "cuda:0" (informational only)
    numel: int  # elements in the storage as declared in the pickle
    # legacy format only: (view_key, offset, view_size) when the id carried view metadata
    view: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class TensorRef:
    """What torch._utils._rebuild_tensor_v2 would have built, as a record."""

    storage: StorageRef
    offset: int  # storage_offset, in elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class PickleResult:
    value: Any  # dict/list/tuple/str/int/float/bool/None/bytes and TensorRef/StorageRef leaves
    end: int  # offset just after the STOP opcode
    globals_seen: tuple[str, ...]  # every "module.name" the stream referenced (all allowed)


# --------------------------------------------------------------------------------------------
# Bounds that are not worth a ReadLimits field: nothing a real checkpoint writes comes close.
MAX_LONG_BYTES = 128  # LONG1/LONG4 payload (torch's legacy magic number needs 10)
MAX_NUMBER_LINE = 400  # text INT/LONG/FLOAT/PUT/GET lines
MAX_NAME_LINE = 1024  # text GLOBAL module / name lines
MAX_TEXT_LINE = 1 << 20  # protocol-0 STRING / UNICODE lines
MAX_PROTOCOL = 5

_STORAGE_KEY = re.compile(r"[0-9A-Za-z_]{1,64}")
_LOCATION = re.compile(r"[0-9A-Za-z_:.\-]{1,64}")
_DEC_INT = re.compile(rb"-?(?:0|[1-9][0-9]*)")  # no leading zeros: C and Python parse those apart
_DEC_LONG = re.compile(rb"-?(?:0|[1-9][0-9]*)L?")
_DEC_INDEX = re.compile(rb"[0-9]{1,20}")
_FLOAT_TEXT = re.compile(rb"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|nan)")


@dataclass(frozen=True)
class _Global:
    """Inert stand-in for an allowed global: a name and what REDUCE/BINPERSID may do with it."""

    qualname: str
    kind: str  # odict | bytes | encode | rebuild_v2 | rebuild_v3 | rebuild_old | parameter | storage | dtype
    dtype: str | None = None  # storage and dtype sentinels
    untyped: bool = False  # torch.storage.UntypedStorage: numel counts bytes


def _allow_list() -> dict[tuple[str, str], _Global]:
    """The complete allow-list, keyed by the exact (module, name) pair found in the stream."""
    table: dict[tuple[str, str], _Global] = {}

    def add(module: str, name: str, kind: str, dtype: str | None = None, untyped: bool = False) -> None:
        table[(module, name)] = _Global(f"{module}.{name}", kind, dtype, untyped)

    add("collections", "OrderedDict", "odict")
    add("__builtin__", "bytes", "bytes")  # protocol-2 pickles write b'' as bytes()
    add("_codecs", "encode", "encode")  # protocol-2 pickles write bytes as encode(str, 'latin1')
    add("torch._utils", "_rebuild_tensor", "rebuild_old")
    add("torch._utils", "_rebuild_tensor_v2", "rebuild_v2")
    add("torch._utils", "_rebuild_tensor_v3", "rebuild_v3")
    add("torch._utils", "_rebuild_parameter", "parameter")
    storages = {
        "FloatStorage": "F32", "DoubleStorage": "F64", "HalfStorage": "F16",
        "BFloat16Storage": "BF16", "LongStorage": "I64", "IntStorage": "I32",
        "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8", "BoolStorage": "BOOL",
        "ComplexFloatStorage": "C64", "ComplexDoubleStorage": "C128",
    }  # fmt: skip
    for name, dtype in storages.items():
        add("torch", name, "storage", dtype)
    add("torch.storage", "UntypedStorage", "storage", "U8", untyped=True)
    # dtypes torch 2.x writes with _rebuild_tensor_v3 (they have no typed storage class)
    v3_dtypes = {
        "uint16": "U16", "uint32": "U32", "uint64": "U64",
        "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
        "float8_e4m3fnuz": "F8_E4M3FNUZ", "float8_e5m2fnuz": "F8_E5M2FNUZ",
        "float8_e8m0fnu": "F8_E8M0",
    }  # fmt: skip
    for name, dtype in v3_dtypes.items():
        add("torch", name, "dtype", dtype)
    return table


ALLOWED_GLOBALS: dict[tuple[str, str], _Global] = _allow_list()
_QUANTIZED_STORAGES = frozenset(
    {"QInt8Storage", "QInt32Storage", "QUInt8Storage", "QUInt4x2Storage", "QUInt2x4Storage"}
)

# Opcodes that are never interpreted, by code, so the refusal can name them.
REFUSED_OPCODES: dict[int, str] = {
    ord("i"): "INST",
    ord("o"): "OBJ",
    0x81: "NEWOBJ",
    0x92: "NEWOBJ_EX",
    0x82: "EXT1",
    0x83: "EXT2",
    0x84: "EXT4",
    ord("P"): "PERSID",
    0x8F: "EMPTY_SET",
    0x90: "ADDITEMS",
    0x91: "FROZENSET",
    0x96: "BYTEARRAY8",
    0x97: "NEXT_BUFFER",
    0x98: "READONLY_BUFFER",
}

_SCALAR_KEY_TYPES = (str, int, float, bytes, bool, type(None))

# Resolve the codecs now: a first lookup imports an encodings module, and interpretation
# should never import anything.
for _codec in ("utf-8", "latin-1", "raw-unicode-escape"):
    codecs.lookup(_codec)


def _quote(value: Any, limit: int = 120) -> str:
    """repr() of untrusted text, cut short and always one line."""
    if isinstance(value, (str, bytes)) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass; it is not an index


class _Node:
    """Book-keeping for one container: expanded size, depth, and whether it may still change."""

    __slots__ = ("obj", "weight", "depth", "embedded", "sentinel")

    def __init__(self, obj: Any, weight: int, depth: int, sentinel: bool) -> None:
        self.obj = obj  # keeps the object alive so its id() is never reused
        self.weight = weight
        self.depth = depth
        self.embedded = False
        self.sentinel = sentinel


class _Stop(Exception):
    """Internal: STOP was reached."""


class _Machine:
    """One run over one pickle stream. Handlers are plain methods listed in ``_OPCODES``."""

    def __init__(self, data: bytes | memoryview, start: int, limits: ReadLimits, pids: bool) -> None:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        self.mv = mv
        self.start = start
        self.pos = start
        self.limits = limits
        self.pids = pids
        self.end_limit = min(len(mv), start + limits.max_pickle_bytes)
        self.frame_end: int | None = None
        self.op_pos = start
        self.op_name = "?"
        self.proto = 0
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.meta_items = 0
        self.memo: dict[int, Any] = {}
        self.nodes: dict[int, _Node] = {}
        self.odicts: set[int] = set()  # dicts made by collections.OrderedDict (BUILD allowed)
        self.untyped: dict[int, StorageRef] = {}  # storages from UntypedStorage (numel = bytes)
        self.globals_seen: dict[str, None] = {}
        self.result: Any = None

    # ---- errors -------------------------------------------------------------------------
    def fail(self, problem: str) -> UnsafeModelError:
        return UnsafeModelError(None, problem)

    def at(self) -> str:
        return f"at byte {self.op_pos}"

    # ---- reading ------------------------------------------------------------------------
    def _overrun(self, end: int) -> UnsafeModelError:
        if self.frame_end is not None and end > self.frame_end:
            return self.fail(
                f"opcode {self.op_name} {self.at()} straddles the frame ending at byte {self.frame_end}"
            )
        if self.end_limit < len(self.mv):
            return self.fail(f"pickle longer than {self.limits.max_pickle_bytes} bytes {self.at()}")
        return self.fail(f"pickle truncated {self.at()}")

    def take(self, n: int) -> int:
        """Reserve ``n`` bytes at the read position; return where they start."""
        end = self.pos + n
        limit = self.frame_end if self.frame_end is not None else self.end_limit
        if n < 0 or end > limit:
            raise self._overrun(end)
        begin, self.pos = self.pos, end
        return begin

    def read_bytes(self, n: int) -> bytes:
        begin = self.take(n)
        return self.mv[begin : begin + n].tobytes()

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, self.mv, self.take(size))[0]

    def readline(self, max_len: int) -> bytes:
        """A text operand up to (not including) '\\n', searched in growing chunks."""
        limit = self.frame_end if self.frame_end is not None else self.end_limit
        stop = min(limit, self.pos + max_len + 1)
        i, chunk = self.pos, 256
        while i < stop:
            j = min(stop, i + chunk)
            k = self.mv[i:j].tobytes().find(b"\n")
            if k >= 0:
                line = self.mv[self.pos : i + k].tobytes()
                self.pos = i + k + 1
                return line
            i, chunk = j, chunk * 2
        if stop < limit:
            raise self.fail(f"{self.op_name} operand longer than {max_len} bytes {self.at()}")
        raise self._overrun(limit + 1)

    # ---- stack --------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        if len(self.stack) + self.meta_items >= self.limits.max_pickle_stack:
            raise self.fail(f"pickle stack deeper than {self.limits.max_pickle_stack} {self.at()}")
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise self.fail(f"stack underflow in {self.op_name} {self.at()}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise self.fail(f"stack underflow in {self.op_name} {self.at()}")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise self.fail(f"{self.op_name} without MARK {self.at()}")
        items = self.stack
        self.stack = self.metastack.pop()
        self.meta_items -= len(self.stack)
        return items

    # ---- containers: expanded size, depth, no mutation once embedded ---------------------
    def info(self, value: Any) -> tuple[int, int, bool]:
        """(expanded size, depth, holds a global sentinel) of a value."""
        node = self.nodes.get(id(value))
        if node is not None and node.obj is value:
            return node.weight, node.depth, node.sentinel
        return 1, 0, isinstance(value, _Global)

    def register(self, obj: Any, weight: int, depth: int, sentinel: bool) -> None:
        self.check_size(weight, depth)
        self.nodes[id(obj)] = _Node(obj, weight, depth, sentinel)

    def check_size(self, weight: int, depth: int) -> None:
        if depth > self.limits.max_pickle_depth:
            raise self.fail(f"containers nested deeper than {self.limits.max_pickle_depth} {self.at()}")
        if weight > self.limits.max_pickle_opcodes:
            raise self.fail(
                f"expanded size exceeds {self.limits.max_pickle_opcodes} elements {self.at()}"
                " (memo/DUP expansion)"
            )

    def embed(self, children: list[Any], in_mutable: bool) -> tuple[int, int, bool]:
        """Account for ``children`` being placed in a container; freeze mutable ones."""
        weight, depth, sentinel = 0, 0, False
        for child in children:
            w, d, s = self.info(child)
            if s and in_mutable:
                raise self.fail(f"a global is used as a value in {self.op_name} {self.at()}")
            weight += w
            depth = max(depth, d)
            sentinel = sentinel or s
            node = self.nodes.get(id(child))
            if node is not None and node.obj is child:
                node.embedded = True
        return weight, depth, sentinel

    def new_tuple(self, items: list[Any]) -> tuple[Any, ...]:
        weight, depth, sentinel = self.embed(items, in_mutable=False)
        value = tuple(items)
        self.register(value, weight + 1, depth + 1, sentinel)
        return value

    def new_dict(self) -> dict[Any, Any]:
        value: dict[Any, Any] = {}
        self.register(value, 1, 1, False)
        return value

    def new_list(self, items: list[Any]) -> list[Any]:
        value: list[Any] = []
        self.register(value, 1, 1, False)
        self.extend_list(value, items)
        return value

    def extend_list(self, target: Any, items: list[Any]) -> None:
        if type(target) is not list:
            raise self.fail(f"{self.op_name} {self.at()} on a {type(target).__name__}, not a list")
        if any(item is target for item in items):
            raise self.fail(f"{self.op_name} {self.at()} puts a container inside itself")
        self.grow(target, items)
        target.extend(items)

    def set_items(self, target: Any, items: list[Any]) -> None:
        if type(target) is not dict:
            raise self.fail(f"{self.op_name} {self.at()} on a {type(target).__name__}, not a dict")
        if len(items) % 2:
            raise self.fail(f"{self.op_name} {self.at()} has an odd number of items")
        keys, values = items[0::2], items[1::2]
        seen: set[Any] = set()
        for key in keys:
            if type(key) not in _SCALAR_KEY_TYPES:
                raise self.fail(f"{self.op_name} {self.at()}: a {type(key).__name__} as a dict key")
            if key in target or key in seen:
                raise self.fail(f"duplicate dict key {_quote(key)} in {self.op_name} {self.at()}")
            seen.add(key)
        if any(value is target for value in values):
            raise self.fail(f"{self.op_name} {self.at()} puts a container inside itself")
        self.grow(target, items)
        target.update(zip(keys, values))

    def grow(self, target: Any, children: list[Any]) -> None:
        """Add children to a list/dict we made; refused once it sits inside another container."""
        node = self.nodes[id(target)]
        if node.embedded:
            raise self.fail(
                f"{self.op_name} {self.at()} changes a container already placed in another one"
            )
        weight, depth, _ = self.embed(children, in_mutable=True)
        node.weight, node.depth = node.weight + weight, max(node.depth, depth + 1)
        self.check_size(node.weight, node.depth)

    # ---- the loop -----------------------------------------------------------------------
    def run(self) -> PickleResult:
        count = 0
        max_ops = self.limits.max_pickle_opcodes
        while True:
            if self.frame_end is not None and self.pos == self.frame_end:
                self.frame_end = None
            self.op_pos, self.op_name = self.pos, "opcode"
            code = self.mv[self.take(1)]
            count += 1
            if count > max_ops:
                raise self.fail(f"pickle has more than {max_ops} opcodes {self.at()}")
            entry = _OPCODES.get(code)
            if entry is None:
                name = REFUSED_OPCODES.get(code)
                if name is not None:
                    raise self.fail(f"refused opcode {name} {self.at()}")
                raise self.fail(f"invalid opcode 0x{code:02x} {self.at()}")
            self.op_name, min_proto, handler = entry
            if min_proto >= 2 and self.proto < min_proto:
                raise self.fail(
                    f"opcode {self.op_name} {self.at()} needs protocol {min_proto}, stream declares {self.proto}"
                )
            try:
                handler(self)
            except _Stop:
                return PickleResult(self.result, self.pos, tuple(self.globals_seen))

    # ---- opcode handlers: framing --------------------------------------------------------
    def op_proto(self) -> None:
        proto = self.mv[self.take(1)]
        if self.op_pos != self.start:
            raise self.fail(f"misplaced PROTO {self.at()}")
        if proto > MAX_PROTOCOL:
            raise self.fail(f"unsupported pickle protocol {proto} {self.at()}")
        self.proto = proto

    def op_frame(self) -> None:
        if self.frame_end is not None:
            raise self.fail(f"FRAME {self.at()} starts inside the frame ending at byte {self.frame_end}")
        length = self.unpack("<Q")
        if length == 0 or length > self.end_limit - self.pos:
            raise self.fail(f"FRAME length {length} {self.at()} does not fit the data")
        self.frame_end = self.pos + length

    def op_stop(self) -> None:
        if self.frame_end is not None and self.pos != self.frame_end:
            raise self.fail(f"frame ending at byte {self.frame_end} extends past STOP {self.at()}")
        if self.metastack:
            raise self.fail(f"STOP {self.at()} inside an unclosed MARK")
        if len(self.stack) != 1:
            raise self.fail(f"STOP {self.at()} with {len(self.stack)} values on the stack")
        value = self.stack[0]
        if self.info(value)[2]:
            raise self.fail(f"a global is used as a value at STOP {self.at()}")
        self.result = value
        raise _Stop

    # ---- marks, stack, memo -----------------------------------------------------------------
    def op_mark(self) -> None:
        if len(self.metastack) >= self.limits.max_pickle_depth:
            raise self.fail(f"MARKs nested deeper than {self.limits.max_pickle_depth} {self.at()}")
        self.metastack.append(self.stack)
        self.meta_items += len(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        self.pop()

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.push(self.top())

    def memo_put(self, key: int) -> None:
        value = self.top()
        if key in self.memo:
            raise self.fail(f"memo key {key} reused {self.at()}")
        if len(self.memo) >= self.limits.max_pickle_memo:
            raise self.fail(f"memo larger than {self.limits.max_pickle_memo} {self.at()}")
        self.memo[key] = value

    def memo_get(self, key: int) -> None:
        if key not in self.memo:
            raise self.fail(f"{self.op_name} of unset memo key {key} {self.at()}")
        self.push(self.memo[key])

    def text_index(self) -> int:
        line = self.readline(MAX_NUMBER_LINE)
        if not _DEC_INDEX.fullmatch(line):
            raise self.fail(f"malformed {self.op_name} operand {self.at()}")
        return int(line)

    def op_put(self) -> None:
        self.memo_put(self.text_index())

    def op_binput(self) -> None:
        self.memo_put(self.mv[self.take(1)])

    def op_long_binput(self) -> None:
        self.memo_put(self.unpack("<I"))

    def op_memoize(self) -> None:
        self.memo_put(len(self.memo))

    def op_get(self) -> None:
        self.memo_get(self.text_index())

    def op_binget(self) -> None:
        self.memo_get(self.mv[self.take(1)])

    def op_long_binget(self) -> None:
        self.memo_get(self.unpack("<I"))

    # ---- containers ---------------------------------------------------------------------
    def op_empty_dict(self) -> None:
        self.push(self.new_dict())

    def op_empty_list(self) -> None:
        self.push(self.new_list([]))

    def op_empty_tuple(self) -> None:
        self.push(self.new_tuple([]))

    def op_tuple(self) -> None:
        self.push(self.new_tuple(self.pop_mark()))

    def op_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise self.fail(f"stack underflow in {self.op_name} {self.at()}")
        items = self.stack[-n:]
        del self.stack[-n:]
        self.push(self.new_tuple(items))

    def op_list(self) -> None:
        self.push(self.new_list(self.pop_mark()))

    def op_dict(self) -> None:
        items = self.pop_mark()
        value = self.new_dict()
        self.set_items(value, items)
        self.push(value)

    def op_setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        self.set_items(self.top(), [key, value])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        self.set_items(self.top(), items)

    def op_append(self) -> None:
        value = self.pop()
        self.extend_list(self.top(), [value])

    def op_appends(self) -> None:
        items = self.pop_mark()
        self.extend_list(self.top(), items)

    # ---- scalars ------------------------------------------------------------------------
    def op_none(self) -> None:
        self.push(None)

    def op_newtrue(self) -> None:
        self.push(True)

    def op_newfalse(self) -> None:
        self.push(False)

    def op_int(self) -> None:
        line = self.readline(MAX_NUMBER_LINE)
        if line in (b"00", b"01"):
            self.push(line == b"01")
        elif _DEC_INT.fullmatch(line):
            self.push(int(line))
        else:
            raise self.fail(f"malformed INT {self.at()}")

    def op_long(self) -> None:
        line = self.readline(MAX_NUMBER_LINE)
        if not _DEC_LONG.fullmatch(line):
            raise self.fail(f"malformed LONG {self.at()}")
        self.push(int(line.rstrip(b"L")))

    def op_binint(self) -> None:
        self.push(self.unpack("<i"))

    def op_binint1(self) -> None:
        self.push(self.mv[self.take(1)])

    def op_binint2(self) -> None:
        self.push(self.unpack("<H"))

    def long_bytes(self, n: int) -> None:
        if n < 0 or n > MAX_LONG_BYTES:
            raise self.fail(f"{self.op_name} length {n} {self.at()} outside 0..{MAX_LONG_BYTES}")
        self.push(int.from_bytes(self.read_bytes(n), "little", signed=True))

    def op_long1(self) -> None:
        self.long_bytes(self.mv[self.take(1)])

    def op_long4(self) -> None:
        self.long_bytes(self.unpack("<i"))

    def op_float(self) -> None:
        line = self.readline(MAX_NUMBER_LINE)
        if not _FLOAT_TEXT.fullmatch(line):
            raise self.fail(f"malformed FLOAT {self.at()}")
        self.push(float(line))

    def op_binfloat(self) -> None:
        self.push(self.unpack(">d"))

    # ---- text and bytes -------------------------------------------------------------------
    def decode_str(self, raw: bytes, encoding: str = "utf-8", errors: str = "strict") -> str:
        try:
            return raw.decode(encoding, errors)
        except UnicodeDecodeError:
            raise self.fail(f"{self.op_name} {self.at()} is not valid {encoding}") from None

    def op_string(self) -> None:
        line = self.readline(MAX_TEXT_LINE)
        if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
            raise self.fail(f"malformed STRING {self.at()}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = codecs.escape_decode(line[1:-1])[0]
        except Exception:
            raise self.fail(f"malformed STRING {self.at()}") from None
        self.push(self.decode_str(raw))

    def op_binstring(self) -> None:
        n = self.unpack("<i")
        if n < 0:
            raise self.fail(f"negative BINSTRING length {self.at()}")
        self.push(self.decode_str(self.read_bytes(n)))

    def op_short_binstring(self) -> None:
        self.push(self.decode_str(self.read_bytes(self.mv[self.take(1)])))

    def op_unicode(self) -> None:
        self.push(self.decode_str(self.readline(MAX_TEXT_LINE), "raw-unicode-escape"))

    def binunicode(self, n: int) -> None:
        self.push(self.decode_str(self.read_bytes(n), "utf-8", "surrogatepass"))

    def op_binunicode(self) -> None:
        self.binunicode(self.unpack("<I"))

    def op_short_binunicode(self) -> None:
        self.binunicode(self.mv[self.take(1)])

    def op_binunicode8(self) -> None:
        self.binunicode(self.unpack("<Q"))

    def op_binbytes(self) -> None:
        self.push(self.read_bytes(self.unpack("<I")))

    def op_short_binbytes(self) -> None:
        self.push(self.read_bytes(self.mv[self.take(1)]))

    def op_binbytes8(self) -> None:
        self.push(self.read_bytes(self.unpack("<Q")))

    # ---- globals and calls ----------------------------------------------------------------
    def resolve(self, module: str, name: str) -> None:
        """Exact-pair lookup: no import, no attribute access, no dotted traversal."""
        qualname = f"{module}.{name}"
        sentinel = ALLOWED_GLOBALS.get((module, name))
        if sentinel is None:
            note = ""
            if module == "torch" and name in _QUANTIZED_STORAGES:
                note = " (quantized storages are not supported)"
            raise self.fail(f"refused global {_quote(qualname)} {self.at()}{note}")
        self.globals_seen.setdefault(qualname)
        self.push(sentinel)

    def op_global(self) -> None:
        module = self.decode_str(self.readline(MAX_NAME_LINE))
        name = self.decode_str(self.readline(MAX_NAME_LINE))
        self.resolve(module, name)

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if type(module) is not str or type(name) is not str:
            raise self.fail(
                f"STACK_GLOBAL operands {self.at()} are not strings"
                f" ({type(module).__name__}, {type(name).__name__})"
            )
        self.resolve(module, name)

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(func, _Global):
            raise self.fail(f"REDUCE {self.at()} on a {type(func).__name__}, not an allowed callable")
        if type(args) is not tuple:
            raise self.fail(f"REDUCE {self.at()}: arguments of {_quote(func.qualname)} are not a tuple")
        call = _CALLS.get(func.kind)
        if call is None:
            raise self.fail(f"refused call of {_quote(func.qualname)} {self.at()}")
        self.push(call(self, func, args))

    def bad_args(self, func: _Global, why: str) -> UnsafeModelError:
        return self.fail(f"bad arguments to {_quote(func.qualname)} {self.at()}: {why}")

    def call_odict(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if args:
            raise self.bad_args(func, "expected no arguments")
        value = self.new_dict()
        self.odicts.add(id(value))
        return value

    def call_bytes(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if args:
            raise self.bad_args(func, "expected no arguments")
        return b""

    def call_encode(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            raise self.bad_args(func, "expected (str, 'latin1')")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise self.bad_args(func, "text is not latin-1") from None

    def call_rebuild_old(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if len(args) != 4:
            raise self.bad_args(func, f"expected 4 arguments, got {len(args)}")
        return self.tensor(func, *args)

    def call_rebuild_v2(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if len(args) not in (6, 7):
            raise self.bad_args(func, f"expected 6 or 7 arguments, got {len(args)}")
        self.check_grad_hooks(func, args[4], args[5])
        self.check_metadata(func, args[6] if len(args) == 7 else None)
        return self.tensor(func, *args[:4])

    def call_rebuild_v3(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if len(args) not in (7, 8):
            raise self.bad_args(func, f"expected 7 or 8 arguments, got {len(args)}")
        storage, dtype = args[0], args[6]
        self.check_grad_hooks(func, args[4], args[5])
        self.check_metadata(func, args[7] if len(args) == 8 else None)
        if not isinstance(dtype, _Global) or dtype.kind != "dtype" or dtype.dtype is None:
            raise self.bad_args(func, "the dtype is not an allowed torch dtype")
        if not isinstance(storage, StorageRef) or self.untyped.get(id(storage)) is not storage:
            raise self.bad_args(func, "the storage is not an UntypedStorage")
        if storage.view is not None:
            raise self.bad_args(func, "an untyped storage view")
        itemsize = DTYPE_BITS[dtype.dtype] // 8
        if storage.numel % itemsize:
            raise self.bad_args(func, f"{storage.numel} bytes is not a whole number of {dtype.dtype}")
        typed = replace(storage, dtype=dtype.dtype, numel=storage.numel // itemsize)
        return self.tensor(func, typed, *args[1:4])

    def call_parameter(self, func: _Global, args: tuple[Any, ...]) -> Any:
        if len(args) != 3 or not isinstance(args[0], TensorRef):
            raise self.bad_args(func, "expected (tensor, requires_grad, hooks)")
        self.check_grad_hooks(func, args[1], args[2])
        return args[0]

    def check_grad_hooks(self, func: _Global, requires_grad: Any, hooks: Any) -> None:
        if type(requires_grad) is not bool:
            raise self.bad_args(func, "requires_grad is not a bool")
        if type(hooks) is not dict or hooks:
            raise self.bad_args(func, "backward hooks must be an empty dict")

    def check_metadata(self, func: _Global, metadata: Any) -> None:
        if metadata is None or (type(metadata) is dict and not metadata):
            return
        keys = sorted(map(str, metadata)) if type(metadata) is dict else type(metadata).__name__
        raise self.bad_args(func, f"tensor metadata {_quote(keys)} (conj/neg views) is not supported")

    def tensor(self, func: _Global, storage: Any, offset: Any, shape: Any, stride: Any) -> TensorRef:
        if not isinstance(storage, StorageRef):
            raise self.bad_args(func, "the storage is not a persistent-id storage")
        if not _is_int(offset) or offset < 0:
            raise self.bad_args(func, "storage offset is not a non-negative int")
        for label, dims in (("size", shape), ("stride", stride)):
            if type(dims) is not tuple or not all(_is_int(d) and d >= 0 for d in dims):
                raise self.bad_args(func, f"{label} is not a tuple of non-negative ints")
        if len(shape) != len(stride):
            raise self.bad_args(func, "size and stride differ in length")
        capacity = storage.view[2] if storage.view is not None else storage.numel
        if all(shape):  # a tensor with a 0 dimension reads nothing
            extent = offset + sum((n - 1) * s for n, s in zip(shape, stride)) + 1
            if extent > capacity:
                raise self.bad_args(func, f"tensor needs {extent} elements, storage has {capacity}")
        return TensorRef(storage, offset, shape, stride)

    def op_binpersid(self) -> None:
        pid = self.pop()
        if not self.pids:
            raise self.fail(f"refused opcode BINPERSID {self.at()} (no persistent ids expected here)")
        self.push(self.storage_ref(pid))

    def storage_ref(self, pid: Any) -> StorageRef:
        """('storage', StorageType, key, location, numel[, view_metadata]) -> StorageRef."""

        def bad(why: str) -> UnsafeModelError:
            return self.fail(f"refused persistent id {self.at()}: {why}")

        if type(pid) is not tuple or len(pid) not in (5, 6) or type(pid[0]) is not str or pid[0] != "storage":
            raise bad("not a ('storage', type, key, location, numel) tuple")
        kind, key, location, numel = pid[1:5]
        if not isinstance(kind, _Global) or kind.kind != "storage" or kind.dtype is None:
            raise bad("the storage type is not an allowed torch storage class")
        if type(key) is not str or not _STORAGE_KEY.fullmatch(key):
            raise bad(f"storage key {_quote(key)} is not 1-64 letters, digits or '_'")
        if type(location) is not str or not _LOCATION.fullmatch(location):
            raise bad(f"storage location {_quote(location)} is not a device name")
        if not _is_int(numel) or numel < 0:
            raise bad("numel is not a non-negative int")
        view = pid[5] if len(pid) == 6 else None
        if view is not None:
            if (
                type(view) is not tuple
                or len(view) != 3
                or type(view[0]) is not str
                or not _STORAGE_KEY.fullmatch(view[0])
                or not all(_is_int(v) and v >= 0 for v in view[1:])
            ):
                raise bad("view metadata is not (key, offset, size)")
            if view[1] + view[2] > numel:
                raise bad("view extends past its storage")
        ref = StorageRef(kind.dtype, key, location, numel, view)
        if kind.untyped:
            self.untyped[id(ref)] = ref
        return ref

    def op_build(self) -> None:
        state = self.pop()
        inst = self.top()
        if isinstance(inst, TensorRef):
            if state is None or (type(state) is dict and not state):
                return
            raise self.fail(f"BUILD {self.at()}: state on a tensor is not supported")
        if type(inst) is dict and id(inst) in self.odicts:
            # model.state_dict() carries `_metadata` as an attribute of its OrderedDict.
            if state is None:
                return
            if type(state) is not dict or self.info(state)[2]:
                raise self.fail(f"BUILD {self.at()}: OrderedDict state is not a plain dict")
            for key in state:
                if type(key) is not str or key.startswith("__"):
                    raise self.fail(f"BUILD {self.at()}: refused attribute {_quote(key)}")
            self.embed([state], in_mutable=True)  # frozen from now on, and then dropped
            return
        what = _quote(inst.qualname) if isinstance(inst, _Global) else f"a {type(inst).__name__}"
        raise self.fail(f"BUILD {self.at()} on {what} is not allowed")


_CALLS: dict[str, Callable[[_Machine, _Global, tuple[Any, ...]], Any]] = {
    "odict": _Machine.call_odict,
    "bytes": _Machine.call_bytes,
    "encode": _Machine.call_encode,
    "rebuild_old": _Machine.call_rebuild_old,
    "rebuild_v2": _Machine.call_rebuild_v2,
    "rebuild_v3": _Machine.call_rebuild_v3,
    "parameter": _Machine.call_parameter,
}

# code -> (name, protocol that introduced it, handler). Nothing outside this table runs.
_OPCODES: dict[int, tuple[str, int, Callable[[_Machine], None]]] = {
    0x80: ("PROTO", 0, _Machine.op_proto),
    0x95: ("FRAME", 4, _Machine.op_frame),
    ord("."): ("STOP", 0, _Machine.op_stop),
    ord("("): ("MARK", 0, _Machine.op_mark),
    ord("0"): ("POP", 0, _Machine.op_pop),
    ord("1"): ("POP_MARK", 1, _Machine.op_pop_mark),
    ord("2"): ("DUP", 0, _Machine.op_dup),
    ord("p"): ("PUT", 0, _Machine.op_put),
    ord("q"): ("BINPUT", 1, _Machine.op_binput),
    ord("r"): ("LONG_BINPUT", 1, _Machine.op_long_binput),
    0x94: ("MEMOIZE", 4, _Machine.op_memoize),
    ord("g"): ("GET", 0, _Machine.op_get),
    ord("h"): ("BINGET", 1, _Machine.op_binget),
    ord("j"): ("LONG_BINGET", 1, _Machine.op_long_binget),
    ord("}"): ("EMPTY_DICT", 1, _Machine.op_empty_dict),
    ord("]"): ("EMPTY_LIST", 1, _Machine.op_empty_list),
    ord(")"): ("EMPTY_TUPLE", 1, _Machine.op_empty_tuple),
    ord("t"): ("TUPLE", 0, _Machine.op_tuple),
    0x85: ("TUPLE1", 2, lambda m: m.op_tuple_n(1)),
    0x86: ("TUPLE2", 2, lambda m: m.op_tuple_n(2)),
    0x87: ("TUPLE3", 2, lambda m: m.op_tuple_n(3)),
    ord("l"): ("LIST", 0, _Machine.op_list),
    ord("d"): ("DICT", 0, _Machine.op_dict),
    ord("s"): ("SETITEM", 0, _Machine.op_setitem),
    ord("u"): ("SETITEMS", 1, _Machine.op_setitems),
    ord("a"): ("APPEND", 0, _Machine.op_append),
    ord("e"): ("APPENDS", 1, _Machine.op_appends),
    ord("N"): ("NONE", 0, _Machine.op_none),
    0x88: ("NEWTRUE", 2, _Machine.op_newtrue),
    0x89: ("NEWFALSE", 2, _Machine.op_newfalse),
    ord("I"): ("INT", 0, _Machine.op_int),
    ord("J"): ("BININT", 1, _Machine.op_binint),
    ord("K"): ("BININT1", 1, _Machine.op_binint1),
    ord("M"): ("BININT2", 1, _Machine.op_binint2),
    ord("L"): ("LONG", 0, _Machine.op_long),
    0x8A: ("LONG1", 2, _Machine.op_long1),
    0x8B: ("LONG4", 2, _Machine.op_long4),
    ord("F"): ("FLOAT", 0, _Machine.op_float),
    ord("G"): ("BINFLOAT", 1, _Machine.op_binfloat),
    ord("S"): ("STRING", 0, _Machine.op_string),
    ord("T"): ("BINSTRING", 1, _Machine.op_binstring),
    ord("U"): ("SHORT_BINSTRING", 1, _Machine.op_short_binstring),
    ord("V"): ("UNICODE", 0, _Machine.op_unicode),
    ord("X"): ("BINUNICODE", 1, _Machine.op_binunicode),
    0x8C: ("SHORT_BINUNICODE", 4, _Machine.op_short_binunicode),
    0x8D: ("BINUNICODE8", 4, _Machine.op_binunicode8),
    ord("B"): ("BINBYTES", 3, _Machine.op_binbytes),
    ord("C"): ("SHORT_BINBYTES", 3, _Machine.op_short_binbytes),
    0x8E: ("BINBYTES8", 4, _Machine.op_binbytes8),
    ord("c"): ("GLOBAL", 0, _Machine.op_global),
    0x93: ("STACK_GLOBAL", 4, _Machine.op_stack_global),
    ord("R"): ("REDUCE", 0, _Machine.op_reduce),
    ord("Q"): ("BINPERSID", 1, _Machine.op_binpersid),
    ord("b"): ("BUILD", 0, _Machine.op_build),
}

SUPPORTED_OPCODES: frozenset[str] = frozenset(name for name, _, _ in _OPCODES.values())


def interpret_pickle(
    data: bytes | memoryview,
    start: int = 0,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    torch_persistent_ids: bool = True,
) -> PickleResult:
    """Interpret the one pickle stream at ``data[start:]`` without importing or calling anything.

    Returns the reconstructed value (plain data with :class:`TensorRef`/:class:`StorageRef`
    leaves), the offset just after STOP, and the allowed globals used. Raises
    :class:`UnsafeModelError` for everything else, including truncated or garbage streams.
    ``torch_persistent_ids=False`` refuses BINPERSID (for pickles that are not torch data).
    """
    if start < 0:
        raise ValueError("start must be non-negative")
    machine = _Machine(data, start, limits, torch_persistent_ids)
    try:
        return machine.run()
    except UnsafeModelError:
        raise
    except Exception as exc:  # fail closed: a bug or an odd input is never "clean"
        raise UnsafeModelError(
            None, f"pickle could not be interpreted at byte {machine.op_pos} ({type(exc).__name__})"
        ) from exc
