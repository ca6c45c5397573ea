"""torch.save files (zip and legacy) read into manifests without running anything.

Expected values come from torch itself (the tensors we saved: names, dtypes, shapes and
``tensor.contiguous().numpy().tobytes()``); torch is used only to WRITE files here.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from consentry.errors import MalformedModelError, UnsafeModelError
from consentry.formats import Format, read_manifest
from consentry.formats.sniff import TORCH_LEGACY_MAGIC
from consentry.formats.strict_zip import StrictZip
from consentry.formats.torch_pickle import read_torch_legacy, read_torch_zip

from hostile_zips import Archive, Member, members_of, payload_pickle, write

DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.complex64: "C64",
}


def canonical(t: torch.Tensor) -> bytes:
    """The canonical bytes the manifest must produce, computed by torch/numpy."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save(obj, path: Path, legacy: bool = False) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def tensor_bytes(manifest, info) -> bytes:
    return b"".join(manifest.iter_tensor_bytes(info, chunk_size=7))


def assert_matches(manifest, expected: dict[str, torch.Tensor]) -> None:
    """Names, dtypes, shapes and canonical bytes (via file_range and via iter_tensor_bytes)."""
    got = {t.name: t for t in manifest.tensors}
    assert sorted(got) == sorted(expected)
    data = manifest.path.read_bytes()
    for name, t in expected.items():
        info = got[name]
        assert info.dtype == DTYPES[t.dtype], name
        assert info.shape == tuple(t.shape), name
        want = canonical(t)
        assert tensor_bytes(manifest, info) == want, name
        if info.file_range is not None:
            start, end = info.file_range
            assert data[start:end] == want, name


def mixed_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    return {
        "f32": base,
        "f16": torch.randn(3, 5, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "f64": torch.randn(2, 2, generator=g).double(),
        "i64": torch.arange(-5, 5),
        "i8": torch.arange(-3, 3, dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.randn(3, generator=g, dtype=torch.complex64),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        # views sharing base's storage
        "transposed": base.t(),
        "row_slice": base[1:3],
        "col_slice": base[:, 2:5],
        "stepped": base[::2, ::3],
        "same_as_f32": base,
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_mixed_dtypes_and_views(tmp_path: Path, legacy: bool) -> None:
    tensors = mixed_tensors()
    m = read_manifest(save(tensors, tmp_path / "m.pt", legacy))
    assert m.format is (Format.TORCH_LEGACY if legacy else Format.TORCH_ZIP)
    assert_matches(m, tensors)
    by_name = {t.name: t for t in m.tensors}
    # Contiguous runs are hashed straight from the file; strided views are not.
    assert by_name["f32"].file_range is not None
    assert by_name["row_slice"].file_range is not None
    assert by_name["transposed"].file_range is None
    assert by_name["col_slice"].file_range is None
    assert by_name["same_as_f32"].file_range == by_name["f32"].file_range
    assert m.parameter_count == sum(t.numel() for t in tensors.values())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_state_dict_wrapper_and_extras(tmp_path: Path, legacy: bool) -> None:
    inner = {"model.w": torch.ones(2, 3), "model.b": torch.arange(2.0)}
    ckpt = {"state_dict": inner, "global_step": 1234, "epoch": 7, "lr": 0.5, "name": "run-1",
            "ema": {"model.w": torch.zeros(2, 3)}}
    m = read_manifest(save(ckpt, tmp_path / "c.ckpt", legacy))
    assert_matches(m, {**inner, "ema.model.w": ckpt["ema"]["model.w"]})
    assert m.extras == {"global_step": "1234", "epoch": "7", "lr": "0.5", "name": "'run-1'"}
    assert any("state_dict" in note for note in m.notes)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_nested_containers_join_with_dots(tmp_path: Path, legacy: bool) -> None:
    obj = {"enc": {"layers": [torch.ones(2), {"w": torch.eye(2)}]}, "opt": {"state": {0: {"m": torch.zeros(3)}}},
           "cfg": {"empty": [], "none": None}}
    m = read_manifest(save(obj, tmp_path / "n.pt", legacy))
    assert_matches(m, {"enc.layers.0": obj["enc"]["layers"][0], "enc.layers.1.w": obj["enc"]["layers"][1]["w"],
                       "opt.state.0.m": obj["opt"]["state"][0]["m"]})
    assert m.extras == {"cfg.empty": "[]", "cfg.none": "None"}


def test_real_module_state_dict_and_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    sd = net.state_dict()  # an OrderedDict carrying a _metadata attribute
    assert_matches(read_manifest(save(sd, tmp_path / "sd.pt")), dict(sd))
    params = {name: p for name, p in net.named_parameters()}  # nn.Parameter leaves
    assert_matches(read_manifest(save(params, tmp_path / "p.pt")), params)


def test_bare_tensor_is_named_tensor(tmp_path: Path) -> None:
    t = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    assert_matches(read_manifest(save(t, tmp_path / "t.pt")), {"tensor": t})


def test_torch_file_with_uppercase_safetensors_extension(tmp_path: Path) -> None:
    """InvokeAI#2946: the name says safetensors, the bytes say torch zip; bytes win."""
    t = {"w": torch.ones(3)}
    m = read_manifest(save(t, tmp_path / "model.SAFETENSORS"))
    assert m.format is Format.TORCH_ZIP
    assert_matches(m, t)


def test_deflated_members_stream_through_crc_checks(tmp_path: Path) -> None:
    """torch writes stored members; a deflated archive (hand-built) is still readable."""
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    tensors = {"w": base, "wt": base.t(), "half": torch.arange(5, dtype=torch.float16)}
    src = save(tensors, tmp_path / "src.pt")
    members = [Member(m.name, m.data, method=8 if "/data/" in m.name else 0) for m in members_of(src)]
    m = read_torch_zip(write(tmp_path / "deflated.pt", Archive(members)))
    assert all(t.file_range is None for t in m.tensors)
    assert_matches(m, tensors)


def test_plain_zipfile_layout_without_descriptors_is_accepted(tmp_path: Path) -> None:
    """A torch archive rewritten by Python's zipfile (flags 0, sizes in local headers)."""
    tensors = {"a": torch.arange(4.0), "b": torch.ones(2, 2, dtype=torch.int64)}
    src = save(tensors, tmp_path / "src.pt")
    out = tmp_path / "rezipped.pt"
    with zipfile.ZipFile(out, "w") as zout:
        for member in members_of(src):
            zout.writestr(member.name, member.data)
    assert_matches(read_torch_zip(out), tensors)


def test_zip64_size_fields_are_understood(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(10.0)}
    src = save(tensors, tmp_path / "src.pt")
    for flags in (0x808, 0x800):
        members = [Member(m.name, m.data, flags=flags, zip64=True) for m in members_of(src)]
        assert_matches(read_torch_zip(write(tmp_path / f"z64-{flags}.pt", Archive(members))), tensors)


def test_big_endian_archive_is_byteswapped(tmp_path: Path) -> None:
    """torch on a big-endian host writes byteorder 'big' and swapped storages (built here by
    swapping a little-endian archive; complex numbers swap per component)."""
    tensors = {"f32": torch.arange(6, dtype=torch.float32).reshape(2, 3), "i16": torch.arange(-2, 2, dtype=torch.int16),
               "c64": torch.tensor([1 + 2j, -3.5 + 0.25j], dtype=torch.complex64), "u8": torch.arange(3, dtype=torch.uint8)}
    tensors["f32_t"] = tensors["f32"].t()
    src = save(tensors, tmp_path / "src.pt")
    # torch numbers storages in the order it meets them; f32_t shares f32's storage
    by_key = {"0": tensors["f32"], "1": tensors["i16"], "2": tensors["c64"], "3": tensors["u8"]}
    members = []
    for mem in members_of(src):
        data = mem.data
        if mem.name == "src/byteorder":
            data = b"big"
        elif "/data/" in mem.name:
            t = by_key[mem.name.rsplit("/", 1)[1]]
            assert data == canonical(t)
            unit = 4 if t.dtype == torch.complex64 else t.element_size()
            data = np.frombuffer(data, dtype=f"u{unit}").byteswap().tobytes()
        members.append(Member(mem.name, data))
    m = read_torch_zip(write(tmp_path / "big.pt", Archive(members)))
    assert all(t.file_range is None for t in m.tensors)
    assert_matches(m, tensors)


def test_bytes_from_file_range_equal_iter_tensor_bytes_in_large_chunks(tmp_path: Path) -> None:
    t = torch.randn(300, 200)
    m = read_manifest(save({"big": t, "bigt": t.t()}, tmp_path / "b.pt"))
    for info in m.tensors:
        chunks = list(m.iter_tensor_bytes(info, chunk_size=1 << 12))
        assert all(len(c) <= 1 << 12 for c in chunks)
        assert b"".join(chunks) == canonical(t if info.name == "big" else t.t())


# ------------------------------------------------------------------ refusals that need torch files


def _rebuild(src: Path, dest: Path, change) -> Path:
    members = members_of(src)
    return write(dest, Archive([change(m) or m for m in members]))


def test_storage_size_mismatch_zip(tmp_path: Path) -> None:
    """CVE-2026-24747 shape: data/<key> shorter than numel x itemsize."""
    src = save({"w": torch.ones(8)}, tmp_path / "src.pt")

    def shrink(m: Member) -> None:
        if m.name == "src/data/0":
            m.data = m.data[:-4]

    with pytest.raises(UnsafeModelError, match=r"storage '0' declares 8 x F32 \(32 bytes\).*holds 28 bytes"):
        read_manifest(_rebuild(src, tmp_path / "bad.pt", shrink))


def test_storage_size_mismatch_legacy(tmp_path: Path) -> None:
    path = save({"w": torch.ones(8)}, tmp_path / "l.pt", legacy=True)
    data = bytearray(path.read_bytes())
    size_at = len(data) - 32 - 8
    assert struct.unpack_from("<q", data, size_at)[0] == 8
    struct.pack_into("<q", data, size_at, 7)
    path.write_bytes(bytes(data[:-4]))
    with pytest.raises(UnsafeModelError, match="declares 8 elements in the pickle but 7 in the file"):
        read_manifest(path)


def test_unreferenced_storage_member(tmp_path: Path) -> None:
    src = save({"w": torch.ones(2)}, tmp_path / "src.pt")
    members = members_of(src) + [Member("src/data/9", b"\x00" * 8)]
    with pytest.raises(UnsafeModelError, match="'src/data/9' is not referenced"):
        read_manifest(write(tmp_path / "x.pt", Archive(members)))


def test_missing_storage_member(tmp_path: Path) -> None:
    src = save({"w": torch.ones(2)}, tmp_path / "src.pt")
    members = [m for m in members_of(src) if m.name != "src/data/0"]
    with pytest.raises(UnsafeModelError, match="no member 'src/data/0'"):
        read_manifest(write(tmp_path / "x.pt", Archive(members)))


def test_bad_byteorder_record(tmp_path: Path) -> None:
    src = save({"w": torch.ones(2)}, tmp_path / "src.pt")
    path = _rebuild(src, tmp_path / "x.pt", lambda m: setattr(m, "data", b"middle") if m.name.endswith("byteorder") else None)
    with pytest.raises(UnsafeModelError, match="byteorder"):
        read_manifest(path)


def test_trailing_bytes_after_stop_in_data_pkl(tmp_path: Path, canary: Path) -> None:
    """A benign pickle followed by a malicious one (picklescan malicious6)."""
    src = save({"w": torch.ones(2)}, tmp_path / "src.pt")

    def append(m: Member) -> None:
        if m.name == "src/data.pkl":
            m.data += payload_pickle(canary)

    with pytest.raises(UnsafeModelError, match=r"data\.pkl: \d+ bytes after the pickle's STOP"):
        read_manifest(_rebuild(src, tmp_path / "x.pt", append))


def test_malicious_data_pkl_is_refused_by_name(tmp_path: Path, canary: Path) -> None:
    src = save({"w": torch.ones(2)}, tmp_path / "src.pt")
    path = _rebuild(src, tmp_path / "x.pt",
                    lambda m: setattr(m, "data", payload_pickle(canary)) if m.name == "src/data.pkl" else None)
    with pytest.raises(UnsafeModelError, match=r"src/data\.pkl: .*system") as info:
        read_manifest(path)
    assert info.value.verdict == "quarantine"


def test_out_of_bounds_view_is_refused(tmp_path: Path) -> None:
    """A tensor whose shape/stride reach past its storage (memory-corruption shape)."""
    src = save({"w": torch.ones(4)}, tmp_path / "src.pt")
    with zipfile.ZipFile(src) as zf:
        pkl = zf.read("src/data.pkl")
    # ones(4) is pickled with size (4,) as K\x04\x85: make it (40,)
    assert pkl.count(b"K\x04\x85") == 1
    bad = pkl.replace(b"K\x04\x85", b"K\x28\x85")
    path = _rebuild(src, tmp_path / "x.pt", lambda m: setattr(m, "data", bad) if m.name == "src/data.pkl" else None)
    with pytest.raises(UnsafeModelError, match=r"reaches element 39 of a storage of 4 elements|needs 40 elements, storage has 4"):
        read_manifest(path)


# ------------------------------------------------------------------ legacy-specific refusals


def test_bare_pickle_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=4))
    with pytest.raises(UnsafeModelError, match="not a torch file: a bare pickle") as info:
        read_manifest(path)
    assert info.value.verdict == "quarantine"


@pytest.mark.parametrize("name", ["model.safetensors", "model.pkl", "model.bin"])
def test_malicious_bare_pickle_names_the_global(tmp_path: Path, canary: Path, name: str) -> None:
    """Including a pickle renamed .safetensors (Civitai/InvokeAI extension trust)."""
    path = tmp_path / name
    path.write_bytes(payload_pickle(canary))
    with pytest.raises(UnsafeModelError, match="system"):
        read_manifest(path)


def test_legacy_trailing_bytes(tmp_path: Path, canary: Path) -> None:
    path = save({"w": torch.ones(2)}, tmp_path / "l.pt", legacy=True)
    path.write_bytes(path.read_bytes() + payload_pickle(canary))
    with pytest.raises(UnsafeModelError, match="trailing bytes after the last storage"):
        read_manifest(path)


def test_legacy_truncated(tmp_path: Path) -> None:
    path = save({"w": torch.ones(64)}, tmp_path / "l.pt", legacy=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MalformedModelError, match="truncated"):
        read_manifest(path)


def test_legacy_truncated_inside_pickle(tmp_path: Path) -> None:
    path = save({"w": torch.ones(64)}, tmp_path / "l.pt", legacy=True)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises((UnsafeModelError, MalformedModelError)):
        read_manifest(path)


def test_legacy_wrong_protocol_version(tmp_path: Path) -> None:
    path = tmp_path / "l.pt"
    path.write_bytes(pickle.dumps(TORCH_LEGACY_MAGIC, protocol=2) + pickle.dumps(999, protocol=2))
    with pytest.raises(MalformedModelError, match="protocol version 999"):
        read_torch_legacy(path)


def test_legacy_magic_via_other_protocol_still_reads(tmp_path: Path) -> None:
    """torch.save(pickle_protocol=4) is legacy too, though it does not sniff as such."""
    t = {"w": torch.arange(3.0)}
    path = tmp_path / "p4.pt"
    torch.save(t, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    assert_matches(read_manifest(path), t)


def test_strict_zip_reads_torch_members_exactly(tmp_path: Path) -> None:
    """Independent check of the zip layer against Python's zipfile on a benign archive."""
    src = save(mixed_tensors(), tmp_path / "src.pt")
    zf = StrictZip.open(src)
    with zipfile.ZipFile(src) as ref:
        assert [m.name for m in zf] == [i.filename for i in ref.infolist()]
        for member in zf:
            assert b"".join(zf.iter_member(member, 5)) == ref.read(member.name)
            if member.stored:
                start, end = member.data_range
                assert src.read_bytes()[start:end] == ref.read(member.name)
