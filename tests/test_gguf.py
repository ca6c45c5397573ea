"""GGUF recognition and bounded KV-metadata reading (tensors are not read yet)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from consentry.errors import MalformedModelError, UnsupportedFormatError
from consentry.formats import read_manifest
from consentry.formats.gguf import NOTE_TENSORS_NOT_READ, read_gguf
from consentry.formats.tensors import Format

# Value type ids from the GGUF spec (ggml docs/gguf.md, gguf-py constants.GGUFValueType).
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FIXED = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}


def gstr(text: str | bytes, v1: bool = False) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("<I" if v1 else "<Q", len(data)) + data


def value(vtype: int, v, v1: bool = False) -> bytes:
    if vtype == STRING:
        return gstr(v, v1)
    if vtype == ARRAY:
        etype, items = v
        return struct.pack("<I", etype) + struct.pack("<I" if v1 else "<Q", len(items)) + b"".join(value(etype, i, v1) for i in items)
    return struct.pack(FIXED[vtype], v)


def kv(key: str | bytes, vtype: int, v, v1: bool = False) -> bytes:
    return gstr(key, v1) + struct.pack("<I", vtype) + value(vtype, v, v1)


def gguf_bytes(kvs: list[bytes], *, version: int = 3, n_tensors: int = 0, n_kv: int | None = None, tail: bytes = b"") -> bytes:
    fmt = "<I" if version == 1 else "<Q"
    count = len(kvs) if n_kv is None else n_kv
    return b"GGUF" + struct.pack("<I", version) + struct.pack(fmt, n_tensors) + struct.pack(fmt, count) + b"".join(kvs) + tail


def write(tmp_path: Path, blob: bytes) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(blob)
    return path


GOOD_KVS = [
    kv("general.architecture", STRING, "llama"),
    kv("general.name", STRING, "Tiny Llama ü"),
    kv("general.file_type", U32, 7),
    kv("general.alignment", U32, 32),
    kv("general.tags", ARRAY, (STRING, ["a", "b"])),
    kv("llama.context_length", U64, 4096),
    kv("llama.rope.freq_base", F32, 10000.0),
    kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "</s>", "x" * 100])),
    kv("tokenizer.ggml.scores", ARRAY, (F32, [0.0, -1.0, 2.5])),
    kv("tokenizer.ggml.token_type", ARRAY, (I32, [1, 2, 3])),
    kv("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["z"])])),
    kv("general.flag", BOOL, 1),
    kv("general.f64", F64, 0.5),
    kv("x.i8", I8, -3),
    kv("x.u16", U16, 3),
    kv("x.i16", I16, -3),
    kv("x.i64", I64, -(2**40)),
    kv("x.u8", U8, 255),
]


def test_hand_built_v3(tmp_path: Path) -> None:
    manifest = read_gguf(write(tmp_path, gguf_bytes(GOOD_KVS)))
    assert manifest.format is Format.GGUF
    assert manifest.tensors == []
    assert manifest.notes == [NOTE_TENSORS_NOT_READ]
    assert manifest.metadata == {
        "general.architecture": "llama",
        "general.name": "Tiny Llama ü",
        "general.file_type": "7",
        "general.alignment": "32",
        "general.flag": "true",
        "general.f64": "0.5",
    }


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions(tmp_path: Path, version: int) -> None:
    v1 = version == 1
    kvs = [kv("general.architecture", STRING, "gpt2", v1), kv("t", ARRAY, (STRING, ["a"]), v1)]
    manifest = read_gguf(write(tmp_path, gguf_bytes(kvs, version=version)))
    assert manifest.metadata == {"general.architecture": "gpt2"}


def test_written_by_gguf_package(tmp_path: Path) -> None:
    """An independent writer (gguf-py, llama.cpp's own) produces what we read."""
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "w.gguf"
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("Tiny")
    writer.add_string("general.license", "mit")
    writer.add_uint32("general.file_type", 1)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    writer.add_float32("llama.rope.freq_base", 10000.0)
    writer.add_tensor("blk.0.w", np.arange(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    manifest = read_manifest(path)
    assert manifest.format is Format.GGUF
    reader = gguf.GGUFReader(str(path))
    expected = {
        name: str(field.contents())
        for name, field in reader.fields.items()
        if name.startswith("general.") and not field.types[0] == gguf.GGUFValueType.ARRAY
    }
    assert manifest.metadata == expected
    assert manifest.metadata["general.name"] == "Tiny"
    assert manifest.metadata["general.architecture"] == "llama"


def test_sniffed_by_dispatcher(tmp_path: Path) -> None:
    path = tmp_path / "renamed.bin"
    path.write_bytes(gguf_bytes(GOOD_KVS[:2]))
    assert read_manifest(path).metadata["general.architecture"] == "llama"


HOSTILE = {
    "too short": (b"GGUF\x03\x00", "too short"),
    "bad magic": (b"GGUG" + b"\0" * 20, "magic"),
    "version 0": (gguf_bytes([], version=0), "unknown GGUF version 0"),
    "version 4": (gguf_bytes([], version=4), "unknown GGUF version 4"),
    "truncated counts": (b"GGUF" + struct.pack("<I", 3) + b"\0" * 10, "needs 8 bytes"),
    "kv count beyond file": (gguf_bytes([], n_kv=2**63), "declares 9223372036854775808 metadata entries"),
    "tensor count over limit": (gguf_bytes([], n_tensors=2**40), "more than the limit"),
    "tensor count beyond file": (gguf_bytes([], n_tensors=100), "declares 100 tensors but only 0 bytes follow"),
    "string length huge": (gguf_bytes([struct.pack("<Q", 2**64 - 1) + b"general.name" + b"\0" * 8]), "needs 18446744073709551615 bytes"),
    "value string length huge": (
        gguf_bytes([gstr("general.name") + struct.pack("<I", STRING) + struct.pack("<Q", 2**62)]),
        "needs 4611686018427387904 bytes",
    ),
    "array length huge (fixed)": (
        gguf_bytes([gstr("a") + struct.pack("<II", ARRAY, U32) + struct.pack("<Q", 2**60)]),
        "the file ends at",
    ),
    "array length huge (strings)": (
        gguf_bytes([gstr("a") + struct.pack("<II", ARRAY, STRING) + struct.pack("<Q", 2**60)]),
        "declares 1152921504606846976 string elements",
    ),
    "unknown value type": (gguf_bytes([gstr("a") + struct.pack("<I", 13) + b"\0" * 8]), "unknown value type 13"),
    "unknown array element type": (gguf_bytes([gstr("a") + struct.pack("<II", ARRAY, 99) + struct.pack("<Q", 0)]), "unknown element type 99"),
    "arrays nested too deep": (
        gguf_bytes([gstr("a") + struct.pack("<I", ARRAY) + (struct.pack("<I", ARRAY) + struct.pack("<Q", 1)) * 9 + struct.pack("<I", U8) + struct.pack("<Q", 0)]),
        "nests arrays more than 8 deep",
    ),
    "truncated value": (gguf_bytes([gstr("a") + struct.pack("<I", U64) + b"\0\0"]), "needs 8 bytes"),
    "duplicate key": (gguf_bytes([kv("general.name", STRING, "a"), kv("general.name", STRING, "b")]), "duplicate GGUF metadata key 'general.name'"),
    "non-ASCII key": (gguf_bytes([kv(b"gen\xff", U8, 1)]), "is not ASCII"),
    "key too long": (gguf_bytes([kv("k" * 70000, U8, 1)]), "more than 65535"),
    "general string not UTF-8": (gguf_bytes([kv("general.name", STRING, b"\xff\xfe")]), "not valid UTF-8"),
    "bool not 0/1": (gguf_bytes([kv("general.flag", BOOL, 7)]), "bool holds 7"),
    "alignment not power of two": (gguf_bytes([kv("general.alignment", U32, 24)]), "not a positive power of two"),
    "alignment zero": (gguf_bytes([kv("general.alignment", U32, 0)]), "not a positive power of two"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_gguf_rejected(tmp_path: Path, case: str) -> None:
    blob, fragment = HOSTILE[case]
    with pytest.raises(MalformedModelError) as info:
        read_gguf(write(tmp_path, blob))
    assert info.value.verdict == "rejected"
    assert fragment in info.value.problem, info.value.problem


def test_big_endian_is_unsupported(tmp_path: Path) -> None:
    blob = b"GGUF" + struct.pack(">I", 3) + struct.pack(">QQ", 0, 0)
    with pytest.raises(UnsupportedFormatError, match="big-endian"):
        read_gguf(write(tmp_path, blob))


def test_metadata_section_capped(tmp_path: Path) -> None:
    from consentry.formats.limits import ReadLimits

    blob = gguf_bytes([kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["x" * 100] * 20))])
    with pytest.raises(MalformedModelError, match="exceeds the limit of 500 bytes"):
        read_gguf(write(tmp_path, blob), ReadLimits(max_header_bytes=500))
