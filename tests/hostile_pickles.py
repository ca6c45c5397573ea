"""Hand-assembled malicious and broken pickle streams (no ``__reduce__``, nothing executed).

Each builder returns ``bytes``. Payloads that would run under a real ``pickle.loads`` target a
path the caller passes (usually the ``canary`` fixture), so a test can prove nothing ran. The
rows of ``untrusted-files.md`` §1.8 group A that each builder covers are named in its docstring.
Reusable by any test that feeds pickles to consentry (zip readers, legacy readers, the CLI).
"""

from __future__ import annotations

import struct

# ---- single opcodes -------------------------------------------------------------------------
PROTO = b"\x80"
FRAME = b"\x95"
STOP = b"."
MARK = b"("
POP = b"0"
POP_MARK = b"1"
DUP = b"2"
REDUCE = b"R"
BUILD = b"b"
TUPLE = b"t"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
EMPTY_TUPLE = b")"
EMPTY_LIST = b"]"
EMPTY_DICT = b"}"
LIST = b"l"
DICT = b"d"
APPEND = b"a"
APPENDS = b"e"
SETITEM = b"s"
SETITEMS = b"u"
NONE = b"N"
NEWTRUE = b"\x88"
NEWFALSE = b"\x89"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
BINPERSID = b"Q"
OBJ = b"o"

# Legacy torch's magic number (torch/serialization.py MAGIC_NUMBER).
TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def proto(n: int) -> bytes:
    return PROTO + bytes([n])


def frame(body: bytes) -> bytes:
    """A FRAME opcode announcing exactly ``body``."""
    return FRAME + struct.pack("<Q", len(body)) + body


def global_op(module: str, name: str) -> bytes:
    """Protocol 0-3 GLOBAL: two text lines."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def unicode_op(text: str) -> bytes:
    """Protocol 0 UNICODE (raw-unicode-escape text line)."""
    return b"V" + text.encode("raw-unicode-escape") + b"\n"


def string_op(text: str) -> bytes:
    """Protocol 0 STRING (quoted repr line)."""
    return b"S'" + text.encode() + b"'\n"


def binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def short_binunicode(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 256
    return b"\x8c" + bytes([len(raw)]) + raw


def short_binstring(text: str) -> bytes:
    raw = text.encode()
    return b"U" + bytes([len(raw)]) + raw


def binstring(text: str) -> bytes:
    raw = text.encode()
    return b"T" + struct.pack("<i", len(raw)) + raw


def binint1(n: int) -> bytes:
    return b"K" + bytes([n])


def binput(i: int) -> bytes:
    return b"q" + bytes([i])


def binget(i: int) -> bytes:
    return b"h" + bytes([i])


def put(i: int) -> bytes:
    return b"p" + str(i).encode() + b"\n"


def get(i: int) -> bytes:
    return b"g" + str(i).encode() + b"\n"


# ---- row 1: REDUCE on a dangerous callable at every protocol ------------------------------
def reduce_call(module: str, name: str, args: tuple[str, ...], protocol: int) -> bytes:
    """``module.name(*args)`` the way each protocol spells it.

    0: GLOBAL + UNICODE + MARK/TUPLE; 1: GLOBAL + BINUNICODE + MARK/TUPLE (no PROTO);
    2/3: PROTO + GLOBAL + BINUNICODE + TUPLEn; 4/5: PROTO + FRAME + STACK_GLOBAL + MEMOIZE.
    """
    if protocol == 0:
        return global_op(module, name) + MARK + b"".join(unicode_op(a) for a in args) + TUPLE + REDUCE + STOP
    if protocol == 1:
        return global_op(module, name) + MARK + b"".join(binunicode(a) for a in args) + TUPLE + REDUCE + STOP
    packed = MARK + b"".join(binunicode(a) for a in args) + TUPLE
    if len(args) in (1, 2, 3):
        packed = b"".join(binunicode(a) for a in args) + (TUPLE1, TUPLE2, TUPLE3)[len(args) - 1]
    if protocol in (2, 3):
        return proto(protocol) + global_op(module, name) + binput(0) + packed + REDUCE + STOP
    body = (
        short_binunicode(module) + MEMOIZE + short_binunicode(name) + MEMOIZE + STACK_GLOBAL + MEMOIZE
        + packed + REDUCE + MEMOIZE + STOP
    )  # fmt: skip
    return proto(protocol) + frame(body)


def os_system(command: str, protocol: int) -> bytes:
    """picklescan ``malicious1_v*``: ``os.system(command)``."""
    return reduce_call("os", "system", (command,), protocol)


def builtins_call(func: str, code: str, protocol: int) -> bytes:
    """picklescan ``malicious2_v*``: ``eval``/``exec`` from ``__builtin__`` (0-2) or ``builtins`` (3+)."""
    module = "__builtin__" if protocol < 3 else "builtins"
    return reduce_call(module, func, (code,), protocol)


def touch_code(path: object) -> str:
    """Python source that creates ``path`` (the payload of the eval/exec variants)."""
    return f"open({str(path)!r}, 'w').close()"


def open_for_write(path: object, protocol: int) -> bytes:
    """``builtins.open(path, 'w')``: creates ``path`` under a real unpickler."""
    module = "__builtin__" if protocol < 3 else "builtins"
    return reduce_call(module, "open", (str(path), "w"), protocol)


# ---- row 2: INST / OBJ ------------------------------------------------------------------------
def inst_payload(module: str, name: str, arg: str) -> bytes:
    """picklescan ``malicious10.pkl``: ``(S'arg'\\nimodule\\nname\\n.`` (INST calls the class)."""
    return MARK + string_op(arg) + b"i" + module.encode() + b"\n" + name.encode() + b"\n" + STOP


def obj_then_pop(module: str, name: str, arg: str) -> bytes:
    """fickling GHSA-mxhj-88fx-4pcv: OBJ calls ``module.name(arg)``, POP hides the result."""
    return (
        proto(4)
        + MARK + short_binunicode(module) + short_binunicode(name) + STACK_GLOBAL
        + short_binunicode(arg) + OBJ + POP + NONE + STOP
    )  # fmt: skip


# ---- row 3: STACK_GLOBAL memo confusion ---------------------------------------------------------
def memo_mixed(module: str, name: str, arg: str) -> bytes:
    """picklescan#14/#22: operands stored with PUT/BINPUT/MEMOIZE among decoys, fetched out of order.

    Memo: 0='collections' and 1='OrderedDict' (MEMOIZE), 7=module (BINPUT), 3='decoy' (MEMOIZE
    takes len(memo), which is 3), 9=name (text PUT). A scanner that ignores PUT/BINPUT, or that
    numbers MEMOIZE by position, resolves a harmless name instead of ``module.name``.
    """
    return (
        proto(4)
        + short_binunicode("collections") + MEMOIZE  # key 0
        + short_binunicode("OrderedDict") + MEMOIZE  # key 1
        + short_binunicode(module) + binput(7)  # key 7
        + short_binunicode("decoy") + MEMOIZE  # key 3 (len(memo) == 3)
        + short_binunicode(name) + put(9)  # key 9
        + POP + POP + POP + POP + POP
        + binget(7) + get(9) + STACK_GLOBAL
        + short_binunicode(arg) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def memo_dangling(arg: str = "x") -> bytes:
    """``keyerror-exploit.pkl``: STACK_GLOBAL operand fetched from a memo key never set."""
    return (
        proto(4) + short_binunicode("os") + MEMOIZE + binget(0) + binget(5) + STACK_GLOBAL
        + short_binunicode(arg) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def memo_type_confusion() -> bytes:
    """``type-confusion-exploit.pkl``: an int from the memo used as the module name."""
    return (
        proto(4) + binint1(5) + MEMOIZE + POP + binget(0) + short_binunicode("system") + STACK_GLOBAL
        + short_binunicode("id") + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def string_operands(module: str, name: str, arg: str, kind: str = "STRING") -> bytes:
    """``malicious23.pkl`` / GHSA-9gvj-pp9x-gcfr: STRING/BINSTRING/SHORT_BINSTRING feed STACK_GLOBAL."""
    enc = {"STRING": string_op, "BINSTRING": binstring, "SHORT_BINSTRING": short_binstring}[kind]
    return proto(4) + enc(module) + enc(name) + STACK_GLOBAL + enc(arg) + TUPLE1 + REDUCE + STOP


# ---- row 4: attribute smuggling --------------------------------------------------------------
def build_on_global(module: str, name: str) -> bytes:
    """modelscan#85/#330: BUILD sets attributes on an (allow-listed) global."""
    return (
        proto(2) + global_op(module, name) + EMPTY_DICT + binunicode("__code__") + binunicode("os")
        + SETITEM + BUILD + STOP
    )  # fmt: skip


def build_slotstate_on_ordereddict() -> bytes:
    """BUILD with a (state, slotstate) tuple: a real unpickler calls setattr for each slot."""
    return (
        proto(2) + global_op("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
        + NONE + EMPTY_DICT + binunicode("__class__") + binunicode("x") + SETITEM + TUPLE2
        + BUILD + STOP
    )  # fmt: skip


def build_dunder_on_ordereddict(attr: str = "__setstate__") -> bytes:
    return (
        proto(2) + global_op("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE
        + EMPTY_DICT + binunicode(attr) + NONE + SETITEM + BUILD + STOP
    )  # fmt: skip


def dotted_introspection(protocol: int = 4) -> bytes:
    """modelscan#338 §10: ``builtins`` + ``print.__class__.__base__.__subclasses__``."""
    name = "print.__class__.__base__.__subclasses__"
    if protocol >= 4:
        return proto(4) + short_binunicode("builtins") + short_binunicode(name) + STACK_GLOBAL + EMPTY_TUPLE + REDUCE + STOP
    return proto(protocol) + global_op("builtins", name) + EMPTY_TUPLE + REDUCE + STOP


def importlib_getattr_join(command: str) -> bytes:
    """modelscan#331: ``getattr(importlib.import_module(str.join('', ['o', 's'])), 'system')(cmd)``."""
    return (
        proto(4)
        + short_binunicode("builtins") + short_binunicode("getattr") + STACK_GLOBAL
        + short_binunicode("importlib") + short_binunicode("import_module") + STACK_GLOBAL
        + short_binunicode("builtins") + short_binunicode("str.join") + STACK_GLOBAL
        + short_binunicode("") + EMPTY_LIST + short_binunicode("o") + APPEND + short_binunicode("s") + APPEND
        + TUPLE2 + REDUCE  # 'os'
        + TUPLE1 + REDUCE  # the os module
        + short_binunicode("system") + TUPLE2 + REDUCE  # os.system
        + short_binunicode(command) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


def itemgetter_stack_global(command: str) -> bytes:
    """fickling ``test_crashes.py``: STACK_GLOBAL operands computed by ``operator.itemgetter``."""

    def pick(index: int, choices: tuple[str, ...]) -> bytes:
        return (
            short_binunicode("operator") + short_binunicode("itemgetter") + STACK_GLOBAL
            + binint1(index) + TUPLE1 + REDUCE
            + MARK + b"".join(short_binunicode(c) for c in choices) + TUPLE + TUPLE1 + REDUCE
        )  # fmt: skip

    return (
        proto(4) + pick(1, ("collections", "os")) + pick(0, ("system", "OrderedDict")) + STACK_GLOBAL
        + short_binunicode(command) + TUPLE1 + REDUCE + STOP
    )  # fmt: skip


# ---- rows 5-7: long-tail gadgets, nested loaders, scanner tampering ----------------------------
GADGETS: list[tuple[str, str]] = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "open"),
    ("builtins", "__import__"),
    ("builtins", "compile"),
    ("__builtin__", "eval"),
    ("torch.utils.collect_env", "run"),
    ("torch.utils.bottleneck.__main__", "run_cprofile"),
    ("torch._dynamo.guards", "GuardBuilder"),
    ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
    ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    ("torch._inductor.codecache", "compile_file"),
    ("torch.serialization", "load"),
    ("torch", "load"),
    ("torch.storage", "_load_from_bytes"),
    ("torch.utils._config_module", "ConfigModule.load_config"),
    ("torch.utils.data.datapipes.utils.decoder", "basichandlers"),
    ("transformers.models.auto.auto_factory", "getattribute_from_module"),
    ("transformers", "AutoModel.from_pretrained"),
    ("multiprocessing.util", "spawnv_passfds"),
    ("mlflow.projects.backend.local", "_run_entry_point"),
    ("pandas", "read_csv"),
    ("pandas.io.parsers.readers", "read_csv"),
    ("logging", "FileHandler"),
    ("_io", "FileIO"),
    ("io", "FileIO"),
    ("urllib.request", "urlopen"),
    ("types", "CodeType"),
    ("types", "FunctionType"),
    ("marshal", "loads"),
    ("pty", "spawn"),
    ("ctypes", "CDLL"),
    ("runpy", "_run_code"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("dill", "loads"),
    ("cloudpickle.cloudpickle", "_builtin_type"),
    ("functools", "partial"),
    ("operator", "attrgetter"),
    ("operator", "itemgetter"),
    ("operator", "methodcaller"),
    ("pkgutil", "resolve_name"),
    ("pydoc", "locate"),
    ("importlib", "import_module"),
    ("code", "InteractiveInterpreter.runcode"),
    ("cProfile", "run"),
    ("profile", "Profile.run"),
    ("trace", "Trace.run"),
    ("timeit", "timeit"),
    ("ensurepip", "_run_pip"),
    ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
    ("distutils.file_util", "write_file"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
    ("lib2to3.pgen2.grammar", "Grammar.loads"),
    ("numpy.f2py.crackfortran", "getlincoef"),
    ("numpy", "load"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("uuid", "_get_command_stdout"),
    ("imaplib", "IMAP4_stream"),
    ("smtplib", "SMTP"),
    ("webbrowser", "open"),
    ("shutil", "rmtree"),
    ("sqlite3", "connect"),
    ("zipfile", "ZipFile"),
    ("_osx_support", "_read_output"),
    ("_aix_support", "_read_cmd_output"),
    ("_pyrepl.pager", "pipe_pager"),
    ("_interpreters", "run_string"),
    ("picklescan.scanner", "scan_pickle_bytes"),
    ("fickling.analysis", "check_safety"),
    ("modelscan.modelscan", "ModelScan"),
    ("modelaudit.core", "scan_model_directory_or_file"),
    ("collections", "OrderedDict.__class__"),  # dotted name on an allowed module
    ("torch", "_utils._rebuild_tensor_v2"),  # the allowed function, reached by traversal
    ("torch._utils", "_rebuild_tensor_v2.__globals__"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._utils", "_rebuild_qtensor"),
    ("torch", "Tensor"),
    ("torch", "Size"),
    ("torch", "device"),
]


def nested_pickle_loads(inner: bytes) -> bytes:
    """picklescan#267: ``pickle.loads(<inner malicious pickle>)``."""
    return proto(3) + global_op("pickle", "loads") + b"C" + bytes([len(inner)]) + inner + TUPLE1 + REDUCE + STOP


def partial_torch_load(path: str) -> bytes:
    """picklescan ``malicious19.pkl``: ``functools.partial(torch.load, path, weights_only=False)()``."""
    return (
        proto(4)
        + short_binunicode("functools") + short_binunicode("partial") + STACK_GLOBAL
        + short_binunicode("torch") + short_binunicode("load") + STACK_GLOBAL
        + short_binunicode(path) + TUPLE2 + REDUCE + EMPTY_TUPLE + REDUCE + STOP
    )  # fmt: skip


# ---- row 8: broken or partial pickles -----------------------------------------------------------
def malicious_prefix_then_garbage(path: object) -> bytes:
    """``malicious-invalid-bytes.pkl``: a working payload, then bytes that are no opcode."""
    return os_system(f"touch {path}", 2)[:-1] + b"\xff\xfe\xfd garbage"


def benign_prefix_then_garbage() -> bytes:
    """``broken_model.pkl``: a valid start, then an undefined opcode before STOP."""
    return proto(2) + EMPTY_DICT + binunicode("a") + binint1(1) + SETITEM + b"\xff\x00garbage"


NOT_A_PICKLE = b"cmod\n\xf8\n"  # picklescan not_a_pickle.bin: GLOBAL with a non-UTF-8 name
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


# ---- row 9: concatenated pickles ------------------------------------------------------------
def benign_then_malicious(path: object) -> tuple[bytes, bytes]:
    """``malicious6.pkl``: a harmless pickle followed by a payload; returns (first, whole)."""
    first = proto(2) + EMPTY_DICT + binunicode("ok") + NEWTRUE + SETITEM + STOP
    return first, first + os_system(f"touch {path}", 2)


def legacy_magic_bypass(path: object) -> bytes:
    """``pytorch_magic_bypass.pt``: the magic number comes from ``eval``; the 5th pickle is the payload."""
    magic = proto(2) + global_op("__builtin__", "eval") + binunicode(hex(TORCH_MAGIC)) + TUPLE1 + REDUCE + STOP
    version = proto(2) + b"M" + struct.pack("<H", 1001) + STOP
    sys_info = proto(2) + EMPTY_DICT + STOP
    main = proto(2) + EMPTY_DICT + STOP
    return magic + version + sys_info + main + os_system(f"touch {path}", 2)


# ---- row 10: protocol anomalies ------------------------------------------------------------
def duplicate_proto() -> bytes:
    return proto(2) + proto(2) + NONE + STOP


def misplaced_proto() -> bytes:
    return proto(2) + EMPTY_LIST + proto(4) + STOP


def invalid_opcode(code: int = 0xFF) -> bytes:
    return proto(2) + bytes([code]) + STOP


def frame_straddle(command: str) -> bytes:
    """fickling ``test_frame_boundary_divergence``: a FRAME of 2 bytes whose BINBYTES reads past it.

    CPython's C unpickler ignores the frame size, so the BINBYTES swallows bytes a framed parser
    would read as opcodes (and vice versa): one file, two meanings.
    """
    hidden = global_op("os", "system") + binunicode(command) + TUPLE1 + REDUCE + POP
    payload = b"B" + struct.pack("<I", len(hidden)) + hidden
    return proto(4) + FRAME + struct.pack("<Q", 2) + payload + POP + NONE + STOP


def frame_too_long() -> bytes:
    """A FRAME announcing more bytes than the stream holds."""
    return proto(4) + FRAME + struct.pack("<Q", 1 << 40) + NONE + STOP


def frame_past_stop() -> bytes:
    """A FRAME that covers bytes after STOP (they would belong to the next pickle)."""
    body = NONE + STOP
    return proto(4) + FRAME + struct.pack("<Q", len(body) + 5) + body + b"hello"


def frame_inside_frame() -> bytes:
    inner = frame(NONE + STOP)
    return proto(4) + FRAME + struct.pack("<Q", len(inner) + 1) + EMPTY_LIST + inner


def frame_at_protocol_2() -> bytes:
    return proto(2) + frame(NONE + STOP)


# ---- row 11: resource exhaustion ------------------------------------------------------------
def billion_laughs_memo(levels: int = 30, fanout: int = 10) -> bytes:
    """fickling expansion attack: each level is a list of ``fanout`` GETs of the previous one."""
    out = proto(2) + binunicode("lol") + b"r" + struct.pack("<I", 0) + POP
    for level in range(1, levels + 1):
        out += MARK + (b"j" + struct.pack("<I", level - 1)) * fanout + LIST + b"r" + struct.pack("<I", level) + POP
    return out + b"j" + struct.pack("<I", levels) + STOP


def billion_laughs_dup(doublings: int = 64) -> bytes:
    """Expansion through DUP: ``x = (x, x)`` repeated, 2**doublings leaves."""
    return proto(2) + binunicode("lol") + (DUP + TUPLE2) * doublings + STOP


def huge_binunicode_length() -> bytes:
    """A BINUNICODE announcing 4 GiB - 1 with a handful of bytes behind it."""
    return proto(2) + b"X" + struct.pack("<I", 0xFFFFFFFF) + b"tiny" + STOP


def huge_binunicode8_length() -> bytes:
    return proto(4) + b"\x8d" + struct.pack("<Q", (1 << 63) - 1) + b"tiny" + STOP


def huge_binbytes8_length() -> bytes:
    return proto(4) + b"\x8e" + struct.pack("<Q", (1 << 64) - 1) + b"tiny" + STOP


def huge_long4() -> bytes:
    """A LONG4 announcing 2 GiB of digits (a slow int conversion if it were honoured)."""
    return proto(2) + b"\x8b" + struct.pack("<i", 0x7FFFFFFF) + b"\x01" * 16 + STOP


def deep_marks(depth: int = 100_000) -> bytes:
    return proto(2) + MARK * depth + STOP


def deep_tuples(depth: int = 5_000) -> bytes:
    return proto(2) + EMPTY_TUPLE + TUPLE1 * depth + STOP


def self_referential_list() -> bytes:
    """fickling ``test_crashes.py``: ``a = []; a.append(a)``."""
    return proto(2) + EMPTY_LIST + binput(0) + binget(0) + APPEND + STOP


def mutual_reference() -> bytes:
    """``a = []; b = [a]; a.append(b)``: a cycle through two lists."""
    return (
        proto(2) + EMPTY_LIST + binput(0)  # a
        + EMPTY_LIST + binput(1) + binget(0) + APPEND  # b = [a]
        + POP + binget(0) + binget(1) + APPEND + STOP  # a.append(b)
    )  # fmt: skip


def many_memo_entries(n: int) -> bytes:
    return proto(2) + NONE + b"".join(b"r" + struct.pack("<I", i) for i in range(n)) + STOP


# ---- row 12: weights_only-class bugs -----------------------------------------------------
def setitem_on_list() -> bytes:
    """CVE-2026-24747: SETITEM aimed at something that is not a dict."""
    return proto(2) + EMPTY_LIST + binunicode("k") + binunicode("v") + SETITEM + STOP


def setitems_on_tuple() -> bytes:
    return proto(2) + EMPTY_TUPLE + MARK + binunicode("k") + binunicode("v") + SETITEMS + STOP


def append_on_dict() -> bytes:
    return proto(2) + EMPTY_DICT + binunicode("v") + APPEND + STOP


def appends_on_string() -> bytes:
    return proto(2) + binunicode("abc") + MARK + binunicode("v") + APPENDS + STOP


# ---- torch-shaped streams (for persistent-id and tensor checks) ---------------------------
def torch_tensor_pickle(
    storage_class: str = "FloatStorage",
    numel: int = 6,
    shape: tuple[int, ...] = (2, 3),
    stride: tuple[int, ...] = (3, 1),
    offset: int = 0,
    key: str = "0",
    location: str = "cpu",
    storage_module: str = "torch",
    extra_pid: bytes = b"",
) -> bytes:
    """``{'w': _rebuild_tensor_v2(persistent storage, offset, shape, stride, False, OrderedDict())}``."""

    def ints(values: tuple[int, ...]) -> bytes:
        return MARK + b"".join(b"J" + struct.pack("<i", v) for v in values) + TUPLE

    pid = (
        MARK + binunicode("storage") + global_op(storage_module, storage_class) + binunicode(key)
        + binunicode(location) + b"J" + struct.pack("<i", numel) + extra_pid + TUPLE
    )  # fmt: skip
    return (
        proto(2) + EMPTY_DICT + binunicode("w")
        + global_op("torch._utils", "_rebuild_tensor_v2")
        + MARK + pid + BINPERSID + b"J" + struct.pack("<i", offset) + ints(shape) + ints(stride)
        + NEWFALSE + global_op("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE
        + SETITEM + STOP
    )  # fmt: skip


def persistent_id(pid_body: bytes) -> bytes:
    """BINPERSID applied to an arbitrary stack value (``pid_body`` pushes exactly one)."""
    return proto(2) + pid_body + BINPERSID + STOP
