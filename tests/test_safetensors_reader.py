"""The strict safetensors header reader, against files written by the safetensors package and
against hand-built hostile headers (reference untrusted-files.md §1.8 group C)."""

from __future__ import annotations

import json
import pickle
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

from consentry.errors import MalformedModelError, ModelFileError
from consentry.formats import read_manifest
from consentry.formats.limits import ReadLimits
from consentry.formats.safetensors import parse_safetensors_header, read_safetensors
from consentry.formats.sniff import sniff_path
from consentry.formats.tensors import Format

# ---------------------------------------------------------------------------------------------
# Helpers


def st_bytes(header: bytes | str | dict, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file: u64 header length, header, data. ``length`` overrides N."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def write(tmp_path: Path, blob: bytes, name: str = "m.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def rejected(path: Path, *fragments: str, limits: ReadLimits | None = None) -> MalformedModelError:
    with pytest.raises(MalformedModelError) as info:
        read_safetensors(path, limits) if limits else read_safetensors(path)
    err = info.value
    assert err.verdict == "rejected"
    assert err.path == str(path)
    for fragment in fragments:
        assert fragment in err.problem, (fragment, err.problem)
    assert "\n" not in err.problem
    return err


# ---------------------------------------------------------------------------------------------
# Accepted files, checked against safetensors.safe_open and the arrays' bytes


def test_real_file_matches_safe_open(tmp_path: Path) -> None:
    arrays = {
        "b.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "a.bias": np.arange(5, dtype=np.int64),
        "c": np.array([[1, 0], [0, 1]], dtype=np.bool_),
        "h": np.linspace(0, 1, 7, dtype=np.float16),
        "u": np.arange(3, dtype=np.uint8),
    }
    path = tmp_path / "real.safetensors"
    safetensors.numpy.save_file(arrays, str(path), metadata={"format": "pt", "note": "ü"})
    manifest = read_safetensors(path)

    assert manifest.format is Format.SAFETENSORS
    assert manifest.metadata == {"format": "pt", "note": "ü"}
    n = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert manifest.data_start == 8 + n
    blob = path.read_bytes()
    with safetensors.safe_open(str(path), framework="np") as f:
        assert sorted(t.name for t in manifest.tensors) == sorted(f.keys())
        for t in manifest.tensors:
            sl = f.get_slice(t.name)
            assert t.dtype == sl.get_dtype()
            assert list(t.shape) == sl.get_shape()
            assert t.path == path
            start, end = t.file_range
            assert blob[start:end] == arrays[t.name].tobytes()
            assert b"".join(manifest.iter_tensor_bytes(t)) == arrays[t.name].tobytes()
    # file order: ranges ascend and tile the data buffer
    ranges = [t.file_range for t in manifest.tensors]
    assert ranges[0][0] == manifest.data_start and ranges[-1][1] == len(blob)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert manifest.parameter_count == sum(a.size for a in arrays.values())


def test_torch_written_bf16_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import safetensors.torch

    tensors = {"w": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "z": torch.zeros(0, 4)}
    path = tmp_path / "t.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    manifest = read_safetensors(path)
    by_name = {t.name: t for t in manifest.tensors}
    assert by_name["w"].dtype == "BF16" and by_name["w"].shape == (2, 3)
    assert by_name["z"].dtype == "F32" and by_name["z"].shape == (0, 4) and by_name["z"].nbytes == 0
    start, end = by_name["w"].file_range
    assert path.read_bytes()[start:end] == tensors["w"].view(torch.int16).numpy().tobytes()


def test_zero_sized_tensors_accepted(tmp_path: Path) -> None:
    header = {"e1": entry("F32", [0], 0, 0), "x": entry("U8", [2], 0, 2), "e2": entry("F16", [3, 0], 2, 2)}
    manifest = read_safetensors(write(tmp_path, st_bytes(header, b"\x01\x02")))
    assert [(t.name, t.shape) for t in manifest.tensors] == [("e1", (0,)), ("x", (2,)), ("e2", (3, 0))]


def test_metadata_only_no_tensors(tmp_path: Path) -> None:
    manifest = read_safetensors(write(tmp_path, st_bytes({"__metadata__": {"a": "b"}})))
    assert manifest.tensors == [] and manifest.metadata == {"a": "b"}


def test_empty_object_header(tmp_path: Path) -> None:
    manifest = read_safetensors(write(tmp_path, st_bytes(b"{}")))
    assert manifest.tensors == [] and manifest.metadata == {} and manifest.data_start == 10


def test_trailing_space_padding_accepted(tmp_path: Path) -> None:
    header = json.dumps({"x": entry("U8", [1], 0, 1)}).encode() + b" " * 7
    manifest = read_safetensors(write(tmp_path, st_bytes(header, b"\x05")))
    assert manifest.tensors[0].file_range == (8 + len(header), 8 + len(header) + 1)


def test_sub_byte_dtype_aligned(tmp_path: Path) -> None:
    manifest = read_safetensors(write(tmp_path, st_bytes({"q": entry("F4", [2, 3], 0, 3)}, b"abc")))
    assert manifest.tensors[0].nbytes == 3


def test_parse_header_from_bytes_without_path() -> None:
    blob = st_bytes({"x": entry("I32", [2], 0, 8)}, b"\0" * 8)
    manifest = parse_safetensors_header(blob[:-8], len(blob))  # e.g. an HTTP range request
    assert manifest.tensors[0].name == "x" and manifest.tensors[0].path is None
    with pytest.raises(MalformedModelError) as info:
        parse_safetensors_header(blob[:-8], len(blob) + 1)
    assert info.value.path is None and "trailing bytes" in info.value.problem


def test_read_manifest_dispatches_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"  # the name does not matter, the bytes do
    safetensors.numpy.save_file({"a": np.ones(3, np.float32)}, str(path))
    assert read_manifest(path).format is Format.SAFETENSORS


# ---------------------------------------------------------------------------------------------
# Hostile headers: one case per problem

E8 = entry("U8", [8], 0, 8)
HOSTILE: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "header length > file": (st_bytes(b"{}", length=1000), ("header length 1000 exceeds the file (10 bytes)",)),
    "header length > 100MB": (st_bytes(b"{}", length=100_000_001), ("exceeds the limit of 100000000 bytes",)),
    "fewer than 8 bytes": (b"\x02\x00\x00", ("fewer than the 8-byte",)),
    "N+8 overflows u64": (st_bytes(b"{}", length=2**64 - 1), ("18446744073709551615",)),
    "header length zero": (st_bytes(b"", length=0), ("too small",)),
    "non-UTF-8": (st_bytes(b'{"\xff\xfe":1}'), ("not valid UTF-8",)),
    "non-JSON": (st_bytes(b"{not json}"), ("not valid JSON",)),
    "truncated JSON": (st_bytes(b'{"a":'), ("must end with '}'",)),
    "JSON array": (st_bytes(b"[1, 2]"), ("does not begin with '{'",)),
    "JSON object then junk": (st_bytes(b"{} x"), ("must end with '}'",)),
    "two JSON objects": (st_bytes(b"{} {}"), ("not valid JSON",)),
    "trailing newline padding": (st_bytes(b"{}\n"), ("must end with '}'",)),
    "trailing NUL padding": (st_bytes(b"{}\0\0"), ("must end with '}'",)),
    "NaN constant": (st_bytes(b'{"x":{"dtype":"U8","shape":[NaN],"data_offsets":[0,0]}}'), ("not valid JSON",)),
    "deep nesting": (st_bytes(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"), ("nested too deeply",)),
    "metadata non-string value": (st_bytes({"__metadata__": {"epochs": 3}}), ("'__metadata__' value for key 'epochs' is a JSON number",)),
    "metadata is a list": (st_bytes({"__metadata__": ["a"]}), ("'__metadata__' is a JSON array",)),
    "metadata as a tensor": (st_bytes({"__metadata__": E8}, b"\0" * 8), ("'__metadata__' is a tensor entry",)),
    "duplicate tensor keys": (
        st_bytes('{"a":%s,"a":%s}' % (json.dumps(entry("U8", [4], 0, 4)), json.dumps(entry("U8", [4], 4, 8))), b"\0" * 8),
        ("duplicate tensor name 'a' in header",),
    ),
    "duplicate metadata keys": (st_bytes('{"__metadata__":{"k":"1","k":"2"}}'), ("duplicate metadata key 'k'",)),
    "duplicate __metadata__": (st_bytes('{"__metadata__":{},"__metadata__":{}}'), ("duplicate '__metadata__'",)),
    "duplicate key in entry": (
        st_bytes('{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
        ("tensor 'a' has duplicate key 'dtype'",),
    ),
    "overlapping offsets": (
        st_bytes({"a": entry("U8", [12], 0, 12), "x": entry("U8", [8], 8, 16)}, b"\0" * 16),
        ("tensor 'x' offsets [8, 16] overlap the previous tensor 'a' ending at 12",),
    ),
    "hole between tensors": (
        st_bytes({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 8, 12)}, b"\0" * 12),
        ("hole in the data buffer: bytes [4, 8)",),
    ),
    "not starting at 0": (st_bytes({"a": entry("U8", [4], 4, 8)}, b"\0" * 8), ("does not start at offset 0",)),
    "begin > end": (st_bytes({"a": entry("U8", [0], 8, 0)}, b"\0" * 8), ("data_offsets [8, 0] begin after they end",)),
    "out of bounds": (st_bytes({"a": entry("U8", [16], 0, 16)}, b"\0" * 8), ("ends at byte", "beyond the end of the file")),
    "trailing bytes (polyglot)": (st_bytes({"a": E8}, b"\0" * 8 + b"extra_bogus_data_for_polyglot_file"), ("34 trailing bytes",)),
    "size != shape x dtype": (st_bytes({"a": entry("F32", [3], 0, 8)}, b"\0" * 8), ("span 8 bytes but F32 [3] needs 12",)),
    "shape product overflow": (
        st_bytes({"a": entry("U8", [2**32, 2**32, 2], 0, 0)}),
        ("overflows",),
    ),
    "size bits overflow": (st_bytes({"a": entry("F64", [2**62], 0, 0)}), ("size overflows",)),
    "dim beyond u64": (st_bytes({"a": entry("U8", [2**64], 0, 0)}), ("more than 2**64-1",)),
    "unknown dtype": (st_bytes({"a": entry("F128", [1], 0, 16)}, b"\0" * 16), ("unknown dtype 'F128'",)),
    "C128 is not a safetensors dtype": (st_bytes({"a": entry("C128", [1], 0, 16)}, b"\0" * 16), ("unknown dtype 'C128'",)),
    "sub-byte dtype misaligned": (st_bytes({"a": entry("F4", [3], 0, 2)}, b"\0" * 2), ("not byte-aligned", "12 bits")),
    "negative shape": (st_bytes({"a": entry("U8", [-1], 0, 0)}), ("negative number -1",)),
    "negative offset": (st_bytes({"a": entry("U8", [0], -4, 0)}), ("negative number -4",)),
    "float shape": (st_bytes({"a": entry("U8", [2.0], 0, 2)}, b"\0\0"), ("holds 2.0, not an integer",)),
    "bool shape": (st_bytes({"a": entry("U8", [True], 0, 1)}, b"\0"), ("not an integer",)),
    "three offsets": (st_bytes({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}, b"\0"), ("list of two integers",)),
    "missing key": (st_bytes({"a": {"dtype": "U8", "shape": [1]}}, b"\0"), ("tensor 'a' lacks 'data_offsets'",)),
    "extra key": (st_bytes({"a": {**entry("U8", [1], 0, 1), "x": 1}}, b"\0"), ("unexpected key 'x'",)),
    "entry not an object": (st_bytes({"a": "F32"}), ("tensor 'a' entry is a JSON string",)),
    "lone surrogate name": (st_bytes(b'{"\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'), ("lone surrogate",)),
    "leading whitespace (policy: rejected)": (st_bytes(b"  {}"), ("starts with whitespace",)),
    "leading newline (policy: rejected)": (st_bytes(b"\n{}"), ("starts with whitespace",)),
    "truncated file": (st_bytes({"a": entry("U8", [64], 0, 64)}, b"\0" * 10), ("beyond the end of the file",)),
    "empty file": (b"", ("file has 0 bytes",)),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_header_rejected(tmp_path: Path, case: str) -> None:
    blob, fragments = HOSTILE[case]
    rejected(write(tmp_path, blob), *fragments)


def test_overflow_path_with_unbounded_header_limit(tmp_path: Path) -> None:
    """With the header cap lifted, N = 2**64-1 must still fail on the file size, not wrap."""
    path = write(tmp_path, st_bytes(b"{}", length=2**64 - 1))
    rejected(path, "header length 18446744073709551615 exceeds the file (10 bytes)", limits=ReadLimits(max_header_bytes=2**70))


def test_header_over_limit_in_large_sparse_file(tmp_path: Path) -> None:
    """A (sparse) 200 MB file whose header claims 100 MB + 1 hits the cap, not the size check."""
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", 100_000_001) + b"{")
        fh.truncate(200_000_000)
    rejected(path, "exceeds the limit of 100000000 bytes")


def test_too_many_tensors_after_parsing(tmp_path: Path) -> None:
    header = {f"t{i}": entry("U8", [0], 0, 0) for i in range(5)}
    rejected(write(tmp_path, st_bytes(header)), "room for 5 entries", limits=ReadLimits(max_tensors=3))


def test_no_brace_false_count_for_metadata_only(tmp_path: Path) -> None:
    # __metadata__ is an object too: a limit of 1 tensor must still accept metadata + 1 tensor.
    header = {"__metadata__": {"a": "b"}, "x": entry("U8", [1], 0, 1)}
    assert len(read_safetensors(write(tmp_path, st_bytes(header, b"\0")), ReadLimits(max_tensors=1)).tensors) == 1


# ---------------------------------------------------------------------------------------------
# 10 million entries: refused fast and with bounded memory

_ENTRY = b'"t":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
_TEN_MILLION = 10_000_000


@pytest.fixture(scope="module")
def ten_million_entries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    header_len = 1 + len(_ENTRY) * _TEN_MILLION  # '{' + entries (last comma becomes '}')
    path = tmp_path_factory.mktemp("dos") / "dos.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", header_len) + b"{")
        chunk = _ENTRY * 100_000
        for _ in range(_TEN_MILLION // 100_000 - 1):
            fh.write(chunk)
        fh.write(chunk[:-1] + b"}")
    return path


def _measure(fn) -> tuple[float, int, BaseException]:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - returned for the caller to assert on
        caught = exc
    else:
        caught = AssertionError("no error raised")
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, caught


@pytest.mark.slow
def test_ten_million_entries_default_limits(ten_million_entries: Path) -> None:
    """At default limits the ~530 MB header is refused from its 8-byte length alone."""
    elapsed, peak, err = _measure(lambda: read_safetensors(ten_million_entries))
    assert isinstance(err, MalformedModelError) and "exceeds the limit" in err.problem
    assert elapsed < 3 and peak < 1_000_000


@pytest.mark.slow
def test_ten_million_entries_counted_before_parsing(ten_million_entries: Path) -> None:
    """With the header cap raised, the entry count is refused before any JSON object is built:
    peak memory is the header bytes themselves plus a little, not per-entry objects."""
    size = ten_million_entries.stat().st_size
    limits = ReadLimits(max_header_bytes=10**9)
    elapsed, peak, err = _measure(lambda: read_safetensors(ten_million_entries, limits))
    assert isinstance(err, MalformedModelError), err
    assert "room for 10000000 entries" in err.problem and "limit of 200000 tensors" in err.problem
    assert elapsed < 3
    assert peak < size + 10_000_000  # the N header bytes read, nothing per entry


# ---------------------------------------------------------------------------------------------
# A pickle renamed .safetensors must not be read as safetensors


def test_pickle_renamed_safetensors_is_not_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
    assert sniff_path(path) is not Format.SAFETENSORS
    try:
        import consentry.formats.torch_pickle  # noqa: F401
    except ImportError:
        pytest.skip("consentry.formats.torch_pickle not written yet: dispatcher check skipped")
    try:
        manifest = read_manifest(path)
    except ModelFileError as err:
        assert "safetensors" not in err.problem
    else:
        assert manifest.format is not Format.SAFETENSORS


def test_pickle_bytes_rejected_by_safetensors_reader(tmp_path: Path) -> None:
    """Called directly (bypassing the sniffer) the reader still refuses a pickle."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weight": [1.0, 2.0] * 20}, protocol=2))
    with pytest.raises(MalformedModelError):
        read_safetensors(path)


def test_empty_file_through_dispatcher(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    with pytest.raises(MalformedModelError, match="empty file"):
        read_manifest(path)


# ---------------------------------------------------------------------------------------------
# Sniffing a safetensors file whose length field is impossible (§1.8 row 20): the dispatcher must
# hand it to the reader, which names the problem, instead of calling it "not a model file".

_HEADER = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
_GOOD = struct.pack("<Q", len(_HEADER)) + _HEADER + b"\0" * 8


@pytest.mark.parametrize(
    "data,fragment",
    [
        (_GOOD[:30], f"safetensors header length {len(_HEADER)} exceeds the file (30 bytes): only 22 bytes follow"),
        (_GOOD[:9], f"safetensors header length {len(_HEADER)} exceeds the file (9 bytes): only 1 byte follow"),
        (struct.pack("<Q", 10_000) + _GOOD[8:], f"safetensors header length 10000 exceeds the file ({len(_GOOD)} bytes)"),
        (struct.pack("<Q", 10**12) + _GOOD[8:], "safetensors header length 1000000000000 exceeds the limit of 100000000 bytes"),
        (struct.pack("<q", -8) + _GOOD[8:], f"safetensors header length {2**64 - 8} exceeds the limit of 100000000 bytes; "
                                            "read as a signed 64-bit integer it is negative (-8)"),
        (struct.pack("<Q", 2**63) + b"{}", f"header length {2**63} exceeds the limit"),
        (struct.pack("<Q", 0) + b'{"a":1}', "safetensors header length 0 is too small for a JSON object"),
        (struct.pack("<Q", 1) + b'{ "a":1}', "safetensors header length 1 is too small for a JSON object"),
    ],
    ids=["truncated-in-header", "truncated-after-brace", "length-beyond-file", "huge", "negative", "top-bit", "zero", "one"],
)
def test_impossible_length_is_sniffed_as_safetensors_and_named(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = write(tmp_path, data)
    assert sniff_path(path) is Format.SAFETENSORS
    with pytest.raises(MalformedModelError) as info:
        read_manifest(path)
    assert fragment in info.value.problem, info.value.problem
    assert "no known magic bytes" not in info.value.problem


@pytest.mark.parametrize(
    "data",
    [
        b'{"unet":{"in_channels": 4}}',  # minified JSON: '{"' at byte 8, but the "length" is text
        b'{"abcd":{}}',
        b"\x01\x02\x03\x04\x05\x06\x07\x08{not json",  # a binary length, but no '{"' / '{}'
        b"\xff" * 8 + b"{x",
    ],
    ids=["json-config", "json-empty-object", "brace-then-text", "brace-then-byte"],
)
def test_other_files_with_a_brace_at_byte_8_are_not_safetensors(tmp_path: Path, data: bytes) -> None:
    assert sniff_path(write(tmp_path, data)) is Format.UNKNOWN


def test_pickle_shaped_like_a_broken_safetensors_stays_a_pickle(tmp_path: Path) -> None:
    """A protocol-2 pickle whose BINUNICODE puts '{"' at byte 8 is still read (and judged) as a pickle."""
    data = b"\x80\x02X\x05\x00\x00\x00a{\"bcq\x00."  # pickle.loads gives 'a{"bc'
    assert pickle.loads(data) == 'a{"bc'
    assert sniff_path(write(tmp_path, data)) is Format.PICKLE


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pickletools, parsing random bytes as protocol-0 pickles
def test_random_bytes_are_rarely_called_safetensors() -> None:
    """Deterministic random heads: the loose rule ('{"' or '{}' at byte 8, a non-text length)
    claims about 1 in 32,768 of them; a plausible-length file also needs a '{' at byte 8."""
    from consentry.formats.sniff import sniff_bytes

    rng = np.random.default_rng(1234)
    heads = rng.integers(0, 256, size=(20_000, 64), dtype=np.uint8)
    claimed = sum(sniff_bytes(bytes(h), 1 << 20) is Format.SAFETENSORS for h in heads)
    assert claimed <= 5
