"""The allow-list pickle interpreter: real torch.save round trips and the hostile corpus (§1.8 A).

Expected values come from independent sources: torch's own tensors (shape, stride, offset,
storage size, zip member sizes), safetensors' dtype table, CPython's ``pickle.dumps`` for plain
data, and ``pickletools`` for stream boundaries. Hostile streams are built by hand in
``hostile_pickles``; a positive control proves (in a subprocess) that they really execute
under ``pickle.loads``, so a refusal here means something.
"""

from __future__ import annotations

import ast
import collections
import contextlib
import importlib
import io
import os
import pickle
import pickletools
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import pytest

import hostile_pickles as H
from consentry.errors import UnsafeModelError
from consentry.formats import pickle_vm
from consentry.formats.limits import ReadLimits
from consentry.formats.pickle_vm import PickleResult, StorageRef, TensorRef, interpret_pickle

torch = pytest.importorskip("torch")

VM_SOURCE = Path(pickle_vm.__file__)


# ---- guards: nothing may unpickle, import or run while the interpreter works ---------------
def _forbidden(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the pickle interpreter tried to unpickle, import or run something")


@contextlib.contextmanager
def forbid_execution() -> Iterator[None]:
    """Every door a payload could use, and every real unpickler, fails the test if touched."""
    import builtins

    targets = [
        (pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (pickle._Unpickler, "find_class"),
        (pickle._Unpickler, "load"), (importlib, "import_module"), (os, "system"), (os, "popen"),
        (os, "execv"), (subprocess, "Popen"), (builtins, "eval"), (builtins, "exec"), (builtins, "compile"),
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        for owner, name in targets:
            stack.enter_context(mock.patch.object(owner, name, _forbidden))
        yield


def run_vm(data: bytes, **kwargs: Any) -> PickleResult:
    with forbid_execution():
        return interpret_pickle(data, **kwargs)


def refused(data: bytes, **kwargs: Any) -> str:
    """Interpret ``data`` expecting a refusal; return the one-line message."""
    with pytest.raises(UnsafeModelError) as info:
        run_vm(data, **kwargs)
    err = info.value
    assert err.verdict == "quarantine" and err.path is None
    assert "\n" not in err.problem
    return err.problem


# ---- independent dtype names: safetensors' own table, plus the two it lacks ----------------
def torch_dtype_names() -> dict[Any, str]:
    from safetensors.torch import _TYPES

    names = {dtype: name for name, dtype in _TYPES.items()}
    names[torch.complex128] = "C128"  # not a safetensors dtype; tensors.py's spelling
    if hasattr(torch, "float8_e8m0fnu"):
        names[torch.float8_e8m0fnu] = "F8_E8M0"  # safetensors Rust enum name
    return names


DTYPE_NAMES = torch_dtype_names()


def sample_tensors() -> dict[str, Any]:
    """One tensor per dtype torch.save supports here, plus views, ties and a Parameter."""
    out: dict[str, Any] = {}
    for dtype in DTYPE_NAMES:
        base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        out[f"t_{dtype}".replace("torch.", "")] = (base > 5) if dtype is torch.bool else base.to(dtype)
    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    out["view_row"] = base[1]
    out["view_t"] = base[0].t()
    out["view_slice"] = base[:, 1:, ::2]
    out["base"] = base
    out["tied"] = out["base"]
    out["param"] = torch.nn.Parameter(torch.ones(5), requires_grad=False)
    out["scalar"] = torch.tensor(3.5, dtype=torch.float64)
    out["empty"] = torch.zeros(0, 7)
    return out


def save_zip(obj: Any, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=protocol)
    return buf.getvalue()


def zip_members(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {name.split("/", 1)[1]: zf.read(name) for name in zf.namelist()}


def tensor_refs(value: Any, prefix: str = "") -> Iterator[tuple[str, TensorRef]]:
    if isinstance(value, TensorRef):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from tensor_refs(item, f"{prefix}.{key}" if prefix else str(key))


def check_tensor(ref: TensorRef, tensor: Any) -> None:
    """Every field against torch's own view of the tensor."""
    assert ref.storage.dtype == DTYPE_NAMES[tensor.dtype]
    assert ref.shape == tuple(tensor.shape)
    assert ref.stride == tensor.stride()
    assert ref.offset == tensor.storage_offset()
    assert ref.storage.numel * tensor.element_size() == tensor.untyped_storage().nbytes()
    assert ref.storage.location == "cpu"


# ---- round trips with real torch.save -----------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_zip_round_trip_matches_torch(protocol: int) -> None:
    tensors = sample_tensors()
    blob = save_zip(tensors, protocol)
    members = zip_members(blob)
    result = run_vm(members["data.pkl"])
    assert result.end == len(members["data.pkl"])
    assert set(result.value) == set(tensors)
    keys_by_ptr: dict[int, str] = {}
    for name, tensor in tensors.items():
        ref = result.value[name]
        check_tensor(ref, tensor)
        # the storage bytes torch wrote are exactly numel x itemsize
        assert len(members[f"data/{ref.storage.key}"]) == tensor.untyped_storage().nbytes()
        # tensors that share storage in torch share a key here, and only those
        ptr = tensor.untyped_storage().data_ptr()
        assert keys_by_ptr.setdefault(ptr, ref.storage.key) == ref.storage.key
    assert len(set(keys_by_ptr.values())) == len(keys_by_ptr)
    assert result.value["tied"] == result.value["base"]
    # every stream boundary agrees with pickletools
    last = list(pickletools.genops(members["data.pkl"]))[-1]
    assert last[0].name == "STOP" and last[2] + 1 == result.end


def test_float8_and_uint_use_rebuild_tensor_v3() -> None:
    """torch 2.13 writes dtypes without a typed storage class via _rebuild_tensor_v3."""
    tensors = {"f8": torch.ones(4, dtype=torch.float8_e5m2), "u32": torch.ones(2, 3, dtype=torch.uint32)}
    members = zip_members(save_zip(tensors))
    result = run_vm(members["data.pkl"])
    assert {"torch._utils._rebuild_tensor_v3", "torch.storage.UntypedStorage", "torch.float8_e5m2", "torch.uint32"} <= set(
        result.globals_seen
    )
    for name, tensor in tensors.items():
        check_tensor(result.value[name], tensor)


def test_state_dict_with_metadata_and_nested_values() -> None:
    """model.state_dict() BUILDs ``_metadata`` onto its OrderedDict; metadata values survive."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    checkpoint = {
        "state_dict": model.state_dict(),
        "epoch": 7,
        "global_step": 2**40,
        "lr": 1e-4,
        "name": "ünïcode",
        "blob": b"\x00\xffbytes",
        "nothing": b"",
        "flags": [True, False, None],
        "shape": (1, 2, 3),
        "ordered": collections.OrderedDict(a=1),
    }
    for protocol in (2, 4):
        result = run_vm(zip_members(save_zip(checkpoint, protocol))["data.pkl"])
        value = result.value
        for key in ("epoch", "global_step", "lr", "name", "blob", "nothing", "flags", "shape"):
            assert value[key] == checkpoint[key]
        assert value["ordered"] == {"a": 1}
        for name, tensor in model.state_dict().items():
            check_tensor(value["state_dict"][name], tensor)
    assert "_codecs.encode" in run_vm(zip_members(save_zip(checkpoint, 2))["data.pkl"]).globals_seen


def test_legacy_format_five_pickles_in_a_row() -> None:
    """_use_new_zipfile_serialization=False: magic, protocol, sys_info, data, storage keys."""
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.float16)}
    tensors["a_row"] = tensors["a"][1]
    buf = io.BytesIO()
    torch.save(tensors, buf, _use_new_zipfile_serialization=False)
    blob = buf.getvalue()
    magic = run_vm(blob, torch_persistent_ids=False)
    version = run_vm(blob, start=magic.end, torch_persistent_ids=False)
    sys_info = run_vm(blob, start=version.end, torch_persistent_ids=False)
    main = run_vm(blob, start=sys_info.end)
    keys = run_vm(blob, start=main.end, torch_persistent_ids=False)
    assert magic.value == H.TORCH_MAGIC and version.value == 1001
    assert sys_info.value["little_endian"] is True
    for name, tensor in tensors.items():
        check_tensor(main.value[name], tensor)
        assert main.value[name].storage.view is None
    assert sorted(keys.value) == sorted({ref.storage.key for ref in main.value.values()})
    # pickletools agrees where each pickle ends
    stream = io.BytesIO(blob)
    for result in (magic, version, sys_info, main, keys):
        *_, (op, _, pos) = pickletools.genops(stream)
        assert op.name == "STOP" and pos + 1 == result.end
        stream.seek(result.end)


@pytest.mark.filterwarnings("ignore::UserWarning")  # quantized tensors are deprecated in torch
def test_conj_view_and_quantized_are_refused_clearly() -> None:
    conj = {"c": torch.ones(2, dtype=torch.complex64).conj()}
    assert "tensor metadata ['conj']" in refused(zip_members(save_zip(conj))["data.pkl"])
    q = {"q": torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8)}
    assert "refused global 'torch._utils._rebuild_qtensor'" in refused(zip_members(save_zip(q))["data.pkl"])
    assert refused(H.torch_tensor_pickle("QInt8Storage")).startswith(
        "refused global 'torch.QInt8Storage' at byte "
    )
    assert "quantized storages are not supported" in refused(H.torch_tensor_pickle("QUInt8Storage"))


def test_large_state_dict_is_fast_enough() -> None:
    tensors = {f"layer{i}.weight": torch.zeros(2, 2) for i in range(3000)}
    result = run_vm(zip_members(save_zip(tensors, 4))["data.pkl"])
    assert len(result.value) == 3000


# ---- plain data against CPython's own pickler ------------------------------------------------------
def random_plain(rng: random.Random, depth: int = 0) -> Any:
    """Plain data of every kind a checkpoint's metadata may hold (seeded, reproducible)."""
    kind = rng.randrange(11 if depth < 4 else 7)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**70), 2**70) if rng.random() < 0.3 else rng.randint(-300, 70000)
    if kind == 2:
        return rng.choice([0.0, -0.0, 1.5, 1e300, float("inf"), float("-inf"), rng.random()])
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xA0, 0x3000)])) for _ in range(rng.randrange(8)))
    if kind == 4:
        return rng.randbytes(rng.randrange(6))
    if kind == 5:
        return rng.choice(["", "\n\\'\"", "ü"])
    if kind == 6:
        return 2**300 * rng.choice([1, -1])
    if kind == 7:
        return [random_plain(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 8:
        return tuple(random_plain(rng, depth + 1) for _ in range(rng.randrange(5)))
    keys = [rng.choice([str(i), i]) for i in rng.sample(range(100), rng.randrange(4))]
    return {key: random_plain(rng, depth + 1) for key in keys}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_data_matches_cpython_pickle(protocol: int) -> None:
    rng = random.Random(1234 + protocol)
    for _ in range(60):
        value = random_plain(rng)
        blob = pickle.dumps(value, protocol=protocol)
        result = run_vm(blob, torch_persistent_ids=False)
        assert result.value == value and type(result.value) is type(value)
        assert result.end == len(blob)


def test_shared_containers_are_expanded_not_refused() -> None:
    inner = [1, 2]
    value = {"a": inner, "b": inner, "t": (inner, inner)}
    assert run_vm(pickle.dumps(value, protocol=2)).value == value


# ---- group A, row 1: REDUCE on dangerous callables at every protocol ----------------------
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_reduce_os_system_refused(protocol: int, canary: Path) -> None:
    assert refused(H.os_system(f"touch {canary}", protocol)).startswith("refused global 'os.system' at byte ")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("func", ["eval", "exec", "open"])
def test_reduce_builtins_refused(protocol: int, func: str, canary: Path) -> None:
    module = "__builtin__" if protocol < 3 else "builtins"
    data = H.open_for_write(canary, protocol) if func == "open" else H.builtins_call(func, H.touch_code(canary), protocol)
    assert refused(data).startswith(f"refused global '{module}.{func}' at byte ")


def test_global_offsets_point_at_the_opcode(canary: Path) -> None:
    assert refused(H.os_system(f"touch {canary}", 2)) == "refused global 'os.system' at byte 2"
    data = H.os_system(f"touch {canary}", 4)
    assert data[data.index(H.STACK_GLOBAL)] == H.STACK_GLOBAL[0]
    assert refused(data) == f"refused global 'os.system' at byte {data.index(H.STACK_GLOBAL)}"


# ---- row 2: INST / OBJ ----------------------------------------------------------------------------
def test_inst_refused(canary: Path) -> None:
    data = H.inst_payload("os", "system", f"touch {canary}")
    assert refused(data) == f"refused opcode INST at byte {data.index(b'ios')}"


def test_obj_refused_even_when_its_result_is_popped(canary: Path) -> None:
    assert refused(H.obj_then_pop("os", "system", f"touch {canary}")).startswith("refused global 'os.system'")
    # with an allowed class, OBJ itself is the refusal
    data = H.proto(2) + H.MARK + H.global_op("collections", "OrderedDict") + H.OBJ + H.POP + H.NONE + H.STOP
    assert refused(data) == f"refused opcode OBJ at byte {data.rindex(H.OBJ)}"


@pytest.mark.parametrize(
    ("code", "name"),
    [(0x81, "NEWOBJ"), (0x92, "NEWOBJ_EX"), (0x82, "EXT1"), (0x83, "EXT2"), (0x84, "EXT4"),
     (ord("P"), "PERSID"), (0x8F, "EMPTY_SET"), (0x90, "ADDITEMS"), (0x91, "FROZENSET"),
     (0x96, "BYTEARRAY8"), (0x97, "NEXT_BUFFER"), (0x98, "READONLY_BUFFER")],
)  # fmt: skip
def test_other_refused_opcodes_are_named(code: int, name: str) -> None:
    assert refused(H.proto(5) + H.NONE + bytes([code]) + H.STOP) == f"refused opcode {name} at byte 3"


def test_opcode_table_covers_every_pickletools_opcode() -> None:
    known = {op.name for op in pickletools.opcodes}
    assert pickle_vm.SUPPORTED_OPCODES | set(pickle_vm.REFUSED_OPCODES.values()) == known
    assert not pickle_vm.SUPPORTED_OPCODES & set(pickle_vm.REFUSED_OPCODES.values())
    for op in pickletools.opcodes:  # names in the table match the codes pickletools gives
        if op.name in pickle_vm.REFUSED_OPCODES.values():
            assert pickle_vm.REFUSED_OPCODES[ord(op.code)] == op.name


# ---- row 3: memo confusion ------------------------------------------------------------------------
def test_memo_mixed_put_binput_memoize(canary: Path) -> None:
    assert refused(H.memo_mixed("os", "system", f"touch {canary}")).startswith("refused global 'os.system'")


def test_memo_dangling_key() -> None:
    assert refused(H.memo_dangling()) == "BINGET of unset memo key 5 at byte 9"


def test_memo_non_string_operand() -> None:
    assert "STACK_GLOBAL operands at byte 16 are not strings (int, str)" == refused(H.memo_type_confusion())


@pytest.mark.parametrize("kind", ["STRING", "BINSTRING", "SHORT_BINSTRING"])
def test_string_opcodes_feeding_stack_global(kind: str, canary: Path) -> None:
    assert refused(H.string_operands("os", "system", f"touch {canary}", kind)).startswith(
        "refused global 'os.system'"
    )


def test_memo_key_reuse_refused() -> None:
    data = H.proto(2) + H.NONE + H.binput(0) + H.NEWTRUE + H.binput(0) + H.STOP
    assert refused(data) == "memo key 0 reused at byte 6"


# ---- row 4: attribute smuggling ---------------------------------------------------------------
def test_build_on_allowed_global_refused() -> None:
    assert "on 'torch._utils._rebuild_tensor_v2' is not allowed" in refused(
        H.build_on_global("torch._utils", "_rebuild_tensor_v2")
    )


def test_build_slotstate_and_dunder_attributes_refused() -> None:
    assert "OrderedDict state is not a plain dict" in refused(H.build_slotstate_on_ordereddict())
    assert "refused attribute '__setstate__'" in refused(H.build_dunder_on_ordereddict())


def test_build_with_state_on_tensor_refused() -> None:
    data = H.torch_tensor_pickle()[:-2]  # drop SETITEM, STOP: the tensor is on top
    data += H.EMPTY_DICT + H.binunicode("x") + H.NONE + H.SETITEM + H.BUILD + H.SETITEM + H.STOP
    assert "state on a tensor is not supported" in refused(data)


@pytest.mark.parametrize("protocol", [2, 4])
def test_dotted_introspection_chain_refused(protocol: int) -> None:
    assert refused(H.dotted_introspection(protocol)).startswith(
        "refused global 'builtins.print.__class__.__base__.__subclasses__' at byte "
    )


def test_no_dotted_traversal_into_allowed_modules() -> None:
    """``torch`` + ``_utils._rebuild_tensor_v2`` names the allowed function by traversal: refused."""
    data = H.proto(4) + H.short_binunicode("torch") + H.short_binunicode("_utils._rebuild_tensor_v2")
    data += H.STACK_GLOBAL + H.STOP
    assert refused(data).startswith("refused global 'torch._utils._rebuild_tensor_v2' at byte ")


def test_importlib_getattr_join_refused(canary: Path) -> None:
    assert refused(H.importlib_getattr_join(f"touch {canary}")).startswith("refused global 'builtins.getattr'")
    data = H.reduce_call("importlib", "import_module", ("os",), 4)
    assert refused(data).startswith("refused global 'importlib.import_module'")


def test_itemgetter_built_stack_global_refused(canary: Path) -> None:
    assert refused(H.itemgetter_stack_global(f"touch {canary}")).startswith("refused global 'operator.itemgetter'")


# ---- rows 5-7: gadget long tail, nested loaders, scanner tampering -----------------------------
@pytest.mark.parametrize(("module", "name"), H.GADGETS)
@pytest.mark.parametrize("protocol", [2, 4])
def test_gadget_globals_refused(module: str, name: str, protocol: int, canary: Path) -> None:
    data = H.reduce_call(module, name, (f"touch {canary}",), protocol)
    assert refused(data).startswith(f"refused global '{module}.{name}' at byte ")


def test_nested_loaders_refused(canary: Path) -> None:
    inner = H.os_system(f"touch {canary}", 2)
    assert refused(H.nested_pickle_loads(inner)) == "refused global 'pickle.loads' at byte 2"
    assert refused(H.partial_torch_load(str(canary))).startswith("refused global 'functools.partial'")


# ---- row 8: broken pickles are quarantine, never clean ------------------------------------------
def test_malicious_prefix_then_garbage(canary: Path) -> None:
    assert refused(H.malicious_prefix_then_garbage(canary)).startswith("refused global 'os.system'")


def test_benign_prefix_then_garbage() -> None:
    assert refused(H.benign_prefix_then_garbage()) == "invalid opcode 0xff at byte 12"


def test_not_a_pickle_and_png() -> None:
    assert refused(H.NOT_A_PICKLE) == "GLOBAL at byte 0 is not valid utf-8"
    assert "at byte 0" in refused(H.PNG_HEADER)


def test_every_truncation_of_a_real_pickle_is_refused() -> None:
    data = zip_members(save_zip({"w": torch.ones(2, 2), "m": {"k": [1, 2.5, "s"]}}, 4))["data.pkl"]
    for cut in range(len(data)):
        problem = refused(data[:cut])
        assert "truncated" in problem or "straddles" in problem or "FRAME length" in problem, problem
    assert refused(b"") == "pickle truncated at byte 0"


# ---- row 9: concatenated pickles -------------------------------------------------------------------
def test_concatenated_pickles_report_end_offset(canary: Path) -> None:
    first, whole = H.benign_then_malicious(canary)
    result = run_vm(whole)
    assert result.value == {"ok": True} and result.end == len(first)
    assert refused(whole, start=result.end) == f"refused global 'os.system' at byte {len(first) + 2}"


def test_legacy_magic_from_eval_refused(canary: Path) -> None:
    assert refused(H.legacy_magic_bypass(canary), torch_persistent_ids=False) == (
        "refused global '__builtin__.eval' at byte 2"
    )


# ---- row 10: protocol anomalies -------------------------------------------------------------------
def test_duplicate_and_misplaced_proto() -> None:
    assert refused(H.duplicate_proto()) == "misplaced PROTO at byte 2"
    assert refused(H.misplaced_proto()) == "misplaced PROTO at byte 3"
    assert refused(H.proto(6) + H.NONE + H.STOP) == "unsupported pickle protocol 6 at byte 0"


@pytest.mark.parametrize("code", [0xFF, 0x00, 0xA0, ord("z")])
def test_invalid_opcodes(code: int) -> None:
    assert refused(H.invalid_opcode(code)) == f"invalid opcode 0x{code:02x} at byte 2"


def test_opcode_newer_than_declared_protocol() -> None:
    data = H.proto(2) + H.short_binunicode("x") + H.STOP
    assert refused(data) == "opcode SHORT_BINUNICODE at byte 2 needs protocol 4, stream declares 2"


def test_frame_straddle_divergence(canary: Path) -> None:
    assert refused(H.frame_straddle(f"touch {canary}")) == (
        "opcode BINBYTES at byte 11 straddles the frame ending at byte 13"
    )


def test_frame_length_mismatches() -> None:
    assert refused(H.frame_too_long()) == "FRAME length 1099511627776 at byte 2 does not fit the data"
    assert refused(H.frame_past_stop()) == "frame ending at byte 18 extends past STOP at byte 12"
    assert refused(H.frame_inside_frame()) == "FRAME at byte 12 starts inside the frame ending at byte 23"
    assert refused(H.frame_at_protocol_2()) == "opcode FRAME at byte 2 needs protocol 4, stream declares 2"


def test_well_formed_frames_accepted() -> None:
    big = {"k": "x" * 200_000, "l": list(range(20_000))}  # several frames and an unframed payload
    blob = pickle.dumps(big, protocol=5)
    assert blob.count(b"\x95") >= 2
    assert run_vm(blob).value == big


# ---- row 11: resource exhaustion -----------------------------------------------------------------
def test_billion_laughs_memo() -> None:
    assert "expanded size exceeds 20000000 elements" in refused(H.billion_laughs_memo())


def test_billion_laughs_dup() -> None:
    assert "expanded size exceeds 20000000 elements" in refused(H.billion_laughs_dup())


def test_expansion_budget_follows_limits() -> None:
    limits = ReadLimits(max_pickle_opcodes=1000)
    assert "expanded size exceeds 1000" in refused(H.billion_laughs_dup(12), limits=limits)
    assert run_vm(H.billion_laughs_dup(8), limits=limits).end > 0


@pytest.mark.parametrize(
    "build", [H.huge_binunicode_length, H.huge_binunicode8_length, H.huge_binbytes8_length]
)
def test_huge_lengths_do_not_allocate(build: Any) -> None:
    assert refused(build()) == "pickle truncated at byte 2"


def test_huge_long4_refused() -> None:
    assert refused(H.huge_long4()) == "LONG4 length 2147483647 at byte 2 outside 0..128"


def test_deep_marks_and_nesting() -> None:
    assert refused(H.deep_marks()) == "MARKs nested deeper than 1000 at byte 1002"
    assert refused(H.deep_tuples()) == "containers nested deeper than 1000 at byte 1002"


def test_self_referential_containers() -> None:
    assert refused(H.self_referential_list()) == "APPEND at byte 7 puts a container inside itself"
    assert "changes a container already placed in another one" in refused(H.mutual_reference())
    # CPython's own pickle of a recursive list
    rec: list[Any] = []
    rec.append(rec)
    assert "inside itself" in refused(pickle.dumps(rec, protocol=2))


def test_memo_stack_and_opcode_limits() -> None:
    limits = ReadLimits(max_pickle_memo=100, max_pickle_stack=50, max_pickle_opcodes=500)
    assert refused(H.many_memo_entries(200), limits=limits) == "memo larger than 100 at byte 503"
    assert refused(H.proto(2) + H.NONE * 60 + H.STOP, limits=limits) == "pickle stack deeper than 50 at byte 52"
    data = H.proto(2) + H.NONE + (H.DUP + H.POP) * 300 + H.STOP
    assert refused(data, limits=limits) == "pickle has more than 500 opcodes at byte 501"
    assert refused(H.proto(2) + H.NONE * 40 + H.STOP, limits=ReadLimits(max_pickle_bytes=10)) == (
        "pickle longer than 10 bytes at byte 10"
    )


# ---- row 12: weights_only-class bugs ------------------------------------------------------------
def test_setitem_on_non_dict() -> None:
    assert refused(H.setitem_on_list()) == "SETITEM at byte 15 on a list, not a dict"
    assert refused(H.setitems_on_tuple()) == "SETITEMS at byte 16 on a tuple, not a dict"


def test_append_on_non_list() -> None:
    assert refused(H.append_on_dict()) == "APPEND at byte 9 on a dict, not a list"
    assert refused(H.appends_on_string()) == "APPENDS at byte 17 on a str, not a list"


def test_tensor_past_its_storage_refused() -> None:
    assert run_vm(H.torch_tensor_pickle(numel=6)).value["w"].shape == (2, 3)
    assert "tensor needs 6 elements, storage has 5" in refused(H.torch_tensor_pickle(numel=5))
    assert "tensor needs 7 elements" in refused(H.torch_tensor_pickle(numel=6, offset=1))


def test_duplicate_dict_keys_and_unhashable_keys() -> None:
    dup = H.proto(2) + H.EMPTY_DICT + H.MARK + (H.binunicode("k") + H.NONE) * 2 + H.SETITEMS + H.STOP
    assert refused(dup) == "duplicate dict key 'k' in SETITEMS at byte 18"
    tkey = H.proto(2) + H.EMPTY_DICT + H.EMPTY_TUPLE + H.NONE + H.SETITEM + H.STOP
    assert refused(tkey) == "SETITEM at byte 5: a tuple as a dict key"


# ---- persistent ids -------------------------------------------------------------------------------
def test_persistent_id_shapes() -> None:
    ok = run_vm(H.torch_tensor_pickle(key="12", location="cuda:0")).value["w"].storage
    assert ok == StorageRef("F32", "12", "cuda:0", 6)
    view = H.MARK + H.binunicode("9") + b"K\x01" + b"K\x03" + H.TUPLE
    legacy = run_vm(H.torch_tensor_pickle(numel=6, shape=(3,), stride=(1,), extra_pid=view))
    assert legacy.value["w"].storage.view == ("9", 1, 3)
    assert "view extends past" in refused(H.torch_tensor_pickle(extra_pid=H.MARK + H.binunicode("9") + b"K\x04K\x03t"))
    assert "storage key '../x'" in refused(H.torch_tensor_pickle(key="../x"))
    assert "storage location" in refused(H.torch_tensor_pickle(location="cpu\n"))
    assert "not an allowed torch storage class" in refused(H.persistent_id(
        H.MARK + H.binunicode("storage") + H.global_op("collections", "OrderedDict")
        + H.binunicode("0") + H.binunicode("cpu") + b"K\x01" + H.TUPLE
    ))  # fmt: skip
    assert "refused persistent id at byte 4: not a ('storage'" in refused(H.persistent_id(b"K\x01"))
    assert "refused opcode BINPERSID at byte" in refused(H.torch_tensor_pickle(), torch_persistent_ids=False)
    assert refused(H.proto(2) + b"Pfoo\n" + H.STOP) == "refused opcode PERSID at byte 2"


def test_storage_class_cannot_be_called_or_returned() -> None:
    call = H.proto(2) + H.global_op("torch", "FloatStorage") + H.EMPTY_TUPLE + H.REDUCE + H.STOP
    assert refused(call) == "refused call of 'torch.FloatStorage' at byte 23"
    bare = H.proto(2) + H.global_op("torch", "FloatStorage") + H.STOP
    assert refused(bare) == "a global is used as a value at STOP at byte 22"
    in_list = H.proto(2) + H.EMPTY_LIST + H.global_op("torch", "FloatStorage") + H.APPEND + H.STOP
    assert refused(in_list) == "a global is used as a value in APPEND at byte 23"


def test_codecs_encode_only_latin1() -> None:
    ok = H.reduce_call("_codecs", "encode", ("\xff", "latin1"), 2)
    assert run_vm(ok).value == b"\xff"
    assert "expected (str, 'latin1')" in refused(H.reduce_call("_codecs", "encode", ("x", "rot13"), 2))


# ---- fuzzing: nothing but UnsafeModelError ever escapes --------------------------------------------
def _interpret_or_refuse(data: bytes) -> None:
    try:
        result = run_vm(data)
    except UnsafeModelError:
        return
    # anything accepted is one well-formed pickle as pickletools reads it
    *_, (op, _, pos) = pickletools.genops(io.BytesIO(data))
    assert op.name == "STOP" and pos + 1 == result.end


def test_fuzz_random_bytes() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        _interpret_or_refuse(rng.randbytes(rng.randrange(200)))
    for _ in range(500):  # streams that at least start like a pickle
        _interpret_or_refuse(b"\x80" + bytes([rng.randrange(6)]) + rng.randbytes(rng.randrange(100)))


_REAL = zip_members(save_zip({"w": torch.ones(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16), "n": 3}, 4))[
    "data.pkl"
]


def test_fuzz_mutated_torch_pickle() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        data = bytearray(_REAL)
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            cut = rng.randrange(len(data))
            del data[cut : cut + rng.randrange(1, 6)]
        _interpret_or_refuse(bytes(data))


def test_fuzz_opcode_soup() -> None:
    rng = random.Random(13)
    codes = [op.code.encode("latin-1") for op in pickletools.opcodes]
    for _ in range(2000):
        ops = [rng.choice(codes) + rng.randbytes(rng.randrange(3)) for _ in range(rng.randrange(40))]
        _interpret_or_refuse(b"\x80\x04" + b"".join(ops) + b".")


# ---- the module itself ---------------------------------------------------------------------------
def test_module_never_imports_unpicklers_or_torch() -> None:
    tree = ast.parse(VM_SOURCE.read_text())
    imported: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
    assert not imported & {"pickle", "_pickle", "torch", "importlib", "pickletools", "numpy", "dill"}
    assert not called & {"eval", "exec", "getattr", "__import__", "compile", "setattr"}
    code = "import sys, consentry.formats.pickle_vm; print('torch' in sys.modules, 'pickle' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"


def test_allowed_pairs_mean_the_same_under_fix_imports() -> None:
    """A protocol-2 unpickler renames some modules (``__builtin__`` -> ``builtins``); check ours."""
    import _compat_pickle

    for module, name in pickle_vm.ALLOWED_GLOBALS:
        mapped = _compat_pickle.NAME_MAPPING.get((module, name))
        assert mapped is None
        assert _compat_pickle.IMPORT_MAPPING.get(module, module) in {
            "collections", "builtins", "_codecs", "torch", "torch._utils", "torch.storage"
        }  # fmt: skip


# ---- positive control: the hostile corpus really runs under pickle.loads --------------------------
def test_hostile_payloads_are_live_under_real_pickle(tmp_path: Path) -> None:
    """Run in a child process: each payload creates its proof file. (The canary is never used here.)"""
    payloads: dict[str, bytes] = {}
    for protocol in range(6):
        payloads[f"open{protocol}"] = H.open_for_write(tmp_path / f"open{protocol}", protocol)
        payloads[f"system{protocol}"] = H.os_system(f"touch {tmp_path / f'system{protocol}'}", protocol)
    payloads["exec"] = H.builtins_call("exec", H.touch_code(tmp_path / "exec"), 3)
    payloads["inst"] = H.inst_payload("os", "system", f"touch {tmp_path / 'inst'}")
    payloads["obj"] = H.obj_then_pop("os", "system", f"touch {tmp_path / 'obj'}")
    payloads["memo"] = H.memo_mixed("os", "system", f"touch {tmp_path / 'memo'}")
    payloads["string"] = H.string_operands("os", "system", f"touch {tmp_path / 'string'}")
    payloads["importlib"] = H.importlib_getattr_join(f"touch {tmp_path / 'importlib'}")
    payloads["itemgetter"] = H.itemgetter_stack_global(f"touch {tmp_path / 'itemgetter'}")
    payloads["nested"] = H.nested_pickle_loads(H.os_system(f"touch {tmp_path / 'nested'}", 2))
    for name, data in payloads.items():
        (tmp_path / f"{name}.pkl").write_bytes(data)
    script = (
        "import pickle, sys, pathlib\n"
        "for p in sys.argv[1:]:\n"
        "    pickle.loads(pathlib.Path(p).read_bytes())\n"
    )
    files = [str(tmp_path / f"{name}.pkl") for name in payloads]
    subprocess.run([sys.executable, "-c", script, *files], check=True, cwd=tmp_path, timeout=60)
    missing = [name for name in payloads if not (tmp_path / name).exists()]
    assert not missing
    for name, data in payloads.items():  # and every one of them is refused here
        assert refused(data).startswith(("refused global", "refused opcode INST"))
