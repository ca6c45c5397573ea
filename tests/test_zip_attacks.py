"""Hostile containers (untrusted-files.md §1.8 group B, rows 13-19): each is refused, never clean.

Archives are built byte by byte with tests/hostile_zips.py (zipfile cannot write most of them);
the benign starting point is a real torch.save archive. Payload-carrying cases use the
``canary`` fixture: the payload would create that file if anything ever unpickled it.
"""

from __future__ import annotations

import io
import random
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from consentry.errors import MalformedModelError, ModelFileError, UnsafeModelError, UnsupportedFormatError
from consentry.formats import read_manifest
from consentry.formats.limits import ReadLimits
from consentry.formats.strict_zip import StrictZip
from consentry.formats.torch_pickle import read_torch_zip

from hostile_zips import Archive, Member, build, deflate, deflate_zeros, members_of, payload_pickle, write


@pytest.fixture(scope="module")
def torch_members(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """The members of a small real torch archive (prefix 'archive')."""
    path = tmp_path_factory.mktemp("src") / "archive.pt"
    torch.save({"w": torch.arange(6, dtype=torch.float32), "b": torch.ones(2)}, path)
    return [(m.name, m.data) for m in members_of(path)]


def fresh(torch_members: list[tuple[str, bytes]], **overrides) -> list[Member]:
    return [Member(name, data, **overrides) for name, data in torch_members]


def with_change(torch_members, name: str, **fields) -> list[Member]:
    members = fresh(torch_members)
    for m in members:
        if m.name == name:
            for key, value in fields.items():
                setattr(m, key, value)
    return members


def refused(path: Path, error=UnsafeModelError, match: str | None = None) -> ModelFileError:
    """read_manifest must raise ``error`` naming the problem; quarantine for unsafe files."""
    with pytest.raises(error, match=match) as info:
        read_manifest(path)
    err = info.value
    assert err.verdict == ("quarantine" if issubclass(error, UnsafeModelError) else "rejected")
    assert err.path == str(path)
    return err


def test_benign_archive_from_builder_is_accepted(tmp_path: Path, torch_members) -> None:
    """The builder's defaults reproduce an archive the strict reader accepts (control case)."""
    m = read_manifest(write(tmp_path / "ok.pt", Archive(fresh(torch_members))))
    assert sorted(t.name for t in m.tensors) == ["b", "w"]


# ------------------------------------------------------------------ row 13: torch accepts, zipfile rejects


@pytest.mark.parametrize(("flag", "what"), [(0x1, "encrypted"), (0x20, "patched data"), (0x40, "strong encryption"),
                                            (0x2000, "encrypted central directory"), (0x10, "not used by torch")])
def test_flag_bits(tmp_path: Path, torch_members, canary: Path, flag: int, what: str) -> None:
    members = with_change(torch_members, "archive/data.pkl", flags=0x808 | flag, data=payload_pickle(canary))
    refused(write(tmp_path / "f.pt", Archive(members)),
            match=rf"zip member 'archive/data\.pkl' has flag bit {flag:#x} \({what}\)")


def test_local_header_flags_differ_from_directory(tmp_path: Path, torch_members) -> None:
    members = with_change(torch_members, "archive/data.pkl", local_flags=0x809)
    refused(write(tmp_path / "f.pt", Archive(members)), match="local header flags 0x809 differ")


def test_password_protected_zip(tmp_path: Path, canary: Path) -> None:
    """Every member encrypted (ZipCrypto: a 12-byte header in front of the data)."""
    secret = b"\x13" * 12 + payload_pickle(canary)
    members = [Member("archive/data.pkl", secret, flags=0x809), Member("archive/version", b"3\n", flags=0x809)]
    refused(write(tmp_path / "locked.pt", Archive(members)), match=r"flag bit 0x1 \(encrypted\)")


def test_crc_mismatch_on_data_pkl(tmp_path: Path, torch_members, canary: Path) -> None:
    members = with_change(torch_members, "archive/data.pkl", data=payload_pickle(canary), crc=0x12345678)
    refused(write(tmp_path / "crc.pt", Archive(members)), match=r"'archive/data\.pkl' fails its CRC-32 check")


def test_crc_mismatch_on_a_streamed_member(tmp_path: Path, torch_members) -> None:
    members = with_change(torch_members, "archive/data/0", crc=0)
    zf = StrictZip.open(write(tmp_path / "crc.pt", Archive(members)))
    with pytest.raises(UnsafeModelError, match="'archive/data/0' fails its CRC-32 check"):
        b"".join(zf.iter_member("archive/data/0"))


def test_crc_mismatch_on_a_deflated_tensor_surfaces_from_iter_tensor_bytes(tmp_path: Path, torch_members) -> None:
    members = fresh(torch_members)
    for m in members:
        if m.name == "archive/data/0":
            m.method, m.crc = 8, 1
    manifest = read_manifest(write(tmp_path / "crc.pt", Archive(members)))
    w = next(t for t in manifest.tensors if t.name == "w")
    with pytest.raises(UnsafeModelError, match="CRC-32"):
        b"".join(manifest.iter_tensor_bytes(w))


def _central_offset(data: bytes) -> int:
    eocd = data.rindex(b"PK\x05\x06")
    return struct.unpack_from("<I", data, eocd + 16)[0]


def test_crc_mismatch_on_a_stored_tensor_member_is_quarantined(tmp_path: Path, torch_members) -> None:
    """A stored member (torch's default) is hashed straight from the file; its CRC-32 is checked
    in that same pass, so a tensor altered after the archive was written is caught."""
    from consentry.identity.identify import identify

    good = identify(write(tmp_path / "good.pt", Archive(fresh(torch_members))))
    assert good.verdict == "clean" and good.content_hash
    members = with_change(torch_members, "archive/data/0", crc=0x0BADC0DE)
    path = write(tmp_path / "crc.pt", Archive(members))
    for workers in (1, 2):
        ident = identify(path, workers=workers)
        assert ident.verdict == "quarantine"
        assert ident.problem.startswith("zip member 'archive/data/0' fails its CRC-32 check (stored 0badc0de, computed ")
        assert ident.content_hash is None and ident.hashes.sha256  # still identified by its bytes


def test_crc_of_every_stored_member_matches_zipfile(tmp_path: Path) -> None:
    """Independent check: the CRC ranges are exactly zipfile's stored members, and a clean
    multi-chunk archive (a member larger than the 4 MiB hashing chunk) passes."""
    from consentry.identity.identify import identify

    path = tmp_path / "big.pt"
    torch.save({"big": torch.arange(3 << 20, dtype=torch.float32), "small": torch.ones(3)}, path)  # 12 MiB member
    manifest = read_manifest(path)
    with zipfile.ZipFile(path) as zf:
        stored = {i.filename: i.CRC for i in zf.infolist() if "/data/" in i.filename and i.compress_type == zipfile.ZIP_STORED}
    assert {name: crc for name, _s, _e, crc in manifest.crc_ranges} == stored and len(stored) == 2
    data = path.read_bytes()
    for name, start, end, crc in manifest.crc_ranges:
        assert zlib.crc32(data[start:end]) == crc, name
    assert identify(path).verdict == "clean"
    flipped = bytearray(data)
    _name, big_start, big_end, _crc = max(manifest.crc_ranges, key=lambda r: r[2] - r[1])
    assert big_end - big_start == 12 << 20
    flipped[big_start + (6 << 20)] ^= 0xFF  # one byte in the middle of the 12 MiB storage
    altered = tmp_path / "altered.pt"
    altered.write_bytes(bytes(flipped))
    ident = identify(altered)
    assert ident.verdict == "quarantine" and "fails its CRC-32 check" in ident.problem


def test_crc_mismatch_inside_a_diffusers_folder(tmp_path: Path, torch_members) -> None:
    from consentry.identity.identify import identify

    root = tmp_path / "pipe"
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    write(root / "unet" / "diffusion_pytorch_model.bin", Archive(fresh(torch_members)))
    assert identify(root).verdict == "clean"
    write(root / "unet" / "diffusion_pytorch_model.bin", Archive(with_change(torch_members, "archive/data/1", crc=1)))
    ident = identify(root)
    assert ident.verdict == "quarantine" and ident.content_hash is None
    assert ident.problem.startswith("unet/diffusion_pytorch_model.bin: zip member 'archive/data/1' fails its CRC-32 check")


def test_corrupted_central_directory_signature(tmp_path: Path, torch_members) -> None:
    data = bytearray(build(Archive(fresh(torch_members))))
    cd = _central_offset(data)
    data[cd : cd + 4] = b"XXXX"
    path = tmp_path / "cd.pt"
    path.write_bytes(bytes(data))
    refused(path, match=r"central directory entry 0 at offset \d+ is damaged")


def test_central_directory_points_at_wrong_local_header(tmp_path: Path, torch_members) -> None:
    data = bytearray(build(Archive(fresh(torch_members))))
    cd = _central_offset(data)
    struct.pack_into("<I", data, cd + 42, 7)  # first entry's local header offset
    path = tmp_path / "cd.pt"
    path.write_bytes(bytes(data))
    refused(path, match="bytes before the first zip member|no local header")


def test_end_record_points_at_wrong_directory(tmp_path: Path, torch_members) -> None:
    data = bytearray(build(Archive(fresh(torch_members), zip64_end=False)))
    eocd = data.rindex(b"PK\x05\x06")
    struct.pack_into("<I", data, eocd + 16, _central_offset(data) - 1)
    path = tmp_path / "eocd.pt"
    path.write_bytes(bytes(data))
    refused(path, match="does not end at the end record")


def test_local_name_differs_from_directory_name(tmp_path: Path, torch_members, canary: Path) -> None:
    """Two views of one archive: the directory says 'version', the local header 'data.pkl'."""
    members = with_change(torch_members, "archive/version", local_name="archive/data.pkl", data=payload_pickle(canary))
    refused(write(tmp_path / "names.pt", Archive(members)), match="local header names it 'archive/data.pkl'")


def test_zip64_and_classic_end_records_disagree(tmp_path: Path, torch_members) -> None:
    data = bytearray(build(Archive(fresh(torch_members))))
    z64 = data.rindex(b"PK\x06\x06")
    struct.pack_into("<Q", data, z64 + 24, 3)  # entries on this disk
    struct.pack_into("<Q", data, z64 + 32, 3)  # entries in total
    path = tmp_path / "z64.pt"
    path.write_bytes(bytes(data))
    refused(path, match="zip64 and classic end records disagree on the member count")


# ------------------------------------------------------------------ row 14: a pickle under another name


def test_pickle_under_a_non_pickle_member_name(tmp_path: Path, torch_members, canary: Path) -> None:
    members = fresh(torch_members) + [Member("archive/weights.txt", payload_pickle(canary))]
    refused(write(tmp_path / "w.pt", Archive(members)), match="'archive/weights.txt' is not part of a torch.save archive")


def test_zip_of_a_lone_pickle(tmp_path: Path, canary: Path) -> None:
    """picklescan malicious1_wrong_ext.zip shape: no torch layout at all."""
    refused(write(tmp_path / "z.zip", Archive([Member("model.bin", payload_pickle(canary))])),
            match="'model.bin' is not inside a folder")


def test_torchscript_layout_is_not_read(tmp_path: Path, torch_members, canary: Path) -> None:
    members = fresh(torch_members) + [Member("archive/constants.pkl", payload_pickle(canary))]
    refused(write(tmp_path / "ts.pt", Archive(members)), match="'archive/constants.pkl' is not part of a torch.save")


# ------------------------------------------------------------------ row 15: 7z, nested, password (above)


def test_seven_zip_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 64)
    refused(path, match="7z archive")


def test_tar_file(tmp_path: Path, canary: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        payload = payload_pickle(canary)
        info = tarfile.TarInfo("data.pkl")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    path = tmp_path / "model.pt"
    path.write_bytes(buf.getvalue())
    refused(path, match="tar archive")


@pytest.mark.parametrize(("inner", "kind"), [
    (lambda c: build(Archive([Member("x/data.pkl", payload_pickle(c))])), "zip"),
    (lambda c: b"7z\xbc\xaf\x27\x1c\x00\x04" + payload_pickle(c), "7z"),
    (lambda c: b"\0" * 257 + b"ustar\x0000" + payload_pickle(c), "tar"),
])
def test_nested_archive_member(tmp_path: Path, torch_members, canary: Path, inner, kind: str) -> None:
    members = fresh(torch_members) + [Member("archive/data/7", inner(canary))]
    refused(write(tmp_path / "nested.pt", Archive(members)),
            match=f"'archive/data/7' is itself a {kind} archive")


def test_nested_zip_hidden_in_a_deflated_member(tmp_path: Path, torch_members, canary: Path) -> None:
    inner = build(Archive([Member("x/data.pkl", payload_pickle(canary))]))
    members = fresh(torch_members) + [Member("archive/data/7", inner, method=8)]
    refused(write(tmp_path / "nested.pt", Archive(members)), match="'archive/data/7' is itself a zip archive")


# ------------------------------------------------------------------ row 16: zip bombs


def _peak_during(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_zip_bomb_declaring_40_gb_is_refused_before_inflating(tmp_path: Path, torch_members) -> None:
    """safetensors attacks/torch_dos_create.py: a DEFLATE storage declaring 40 GB."""
    stream = deflate_zeros(64 << 20)  # ~64 KiB of deflate that really inflates to 64 MiB
    members = fresh(torch_members) + [Member("archive/data/9", method=8, payload=stream, size=40 << 30, crc=0, zip64=True)]
    path = write(tmp_path / "bomb.pt", Archive(members))
    assert path.stat().st_size < 200_000
    with pytest.raises(UnsafeModelError, match=r"'archive/data/9' declares 42949672960 bytes from \d+ compressed .*zip bomb"):
        read_manifest(path)


def test_zip_bomb_inflater_is_bounded_even_when_the_ratio_cap_is_off(tmp_path: Path, torch_members) -> None:
    stream = deflate_zeros(64 << 20)
    members = [Member("x/data/0", method=8, payload=stream, size=40 << 30, crc=0, zip64=True)]
    path = write(tmp_path / "bomb.zip", Archive(members))
    zf = StrictZip.open(path, ReadLimits(max_compression_ratio=10**9))

    def drain() -> None:
        with pytest.raises(UnsafeModelError, match="holds 67108864 bytes but declares 42949672960"):
            for _ in zf.iter_member("x/data/0"):
                pass

    assert _peak_during(drain) < 8 << 20


def test_zip_bomb_lying_about_its_size_stops_at_the_declared_size(tmp_path: Path, torch_members) -> None:
    """A member that declares 24 bytes (what its storage needs) but inflates to 64 MiB: caught
    while peeking at its first bytes, after inflating no more than the declared size."""
    stream = deflate_zeros(64 << 20)
    members = with_change(torch_members, "archive/data/0", method=8, payload=stream, data=bytes(24))
    path = write(tmp_path / "liar.pt", Archive(members))

    def read() -> None:
        with pytest.raises(UnsafeModelError, match="'archive/data/0' inflates beyond its declared 24 bytes"):
            read_manifest(path)

    assert _peak_during(read) < 8 << 20


def test_zip_bomb_lying_about_its_size_is_caught_while_streaming(tmp_path: Path) -> None:
    """Same, with a declared size past the peek window: the refusal comes from iter_tensor_bytes."""
    src = tmp_path / "src.pt"
    torch.save({"w": torch.ones(4096)}, src)
    members = members_of(src)
    for m in members:
        if m.name == "src/data/0":
            m.method, m.payload = 8, deflate_zeros(64 << 20)
    manifest = read_manifest(write(tmp_path / "liar.pt", Archive(members)))
    (w,) = manifest.tensors

    def drain() -> None:
        with pytest.raises(UnsafeModelError, match="'src/data/0' inflates beyond its declared 16384 bytes"):
            for _ in manifest.iter_tensor_bytes(w, chunk_size=1 << 16):
                pass

    assert _peak_during(drain) < 2 << 20  # 64 MiB of zeros never sit in memory


def _npz_bomb(path: Path, array_bytes: int) -> Path:
    """safetensors attacks/numpy_dos_create.py, scaled down: a numpy ``.npz`` (a zip of ``.npy``
    members, written here by zipfile exactly as the attack does) holding one DEFLATE-compressed
    array of zeros. The attack writes 40 GB; 256 MiB keeps the test fast and is still far past
    the compression-ratio cap (zeros deflate ~1000:1)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (array_bytes // 8,)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("weights.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            block = bytes(1 << 20)
            for _ in range(array_bytes >> 20):
                member.write(block)
    return path


def test_npz_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    """§1.8 row 16 (attacks/numpy_dos_create.py): quarantined by its declared ratio, in bounded
    memory, without inflating the array; the CLI prints one line and exits 2."""
    from click.testing import CliRunner

    from consentry.cli import cli

    path = _npz_bomb(tmp_path / "numpy_dos.npz", 256 << 20)
    assert path.stat().st_size < 1 << 20
    assert zipfile.ZipFile(path).infolist()[0].file_size > 256 << 20  # what zipfile (np.load) would inflate

    def read() -> None:
        with pytest.raises(UnsafeModelError, match=r"zip member 'weights.npy' declares \d+ bytes from \d+ compressed .*zip bomb"):
            read_manifest(path)

    assert _peak_during(read) < 8 << 20
    result = CliRunner().invoke(cli, ["hash", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"consentry: {path}: quarantine: zip member 'weights.npy' declares")


def test_npz_bomb_with_the_ratio_cap_off_is_still_refused_without_inflating(tmp_path: Path) -> None:
    """Without the ratio cap the strict reader still refuses it by layout (an npz is not a torch
    archive) before touching the DEFLATE stream."""
    path = _npz_bomb(tmp_path / "numpy_dos.npz", 64 << 20)

    def read() -> None:
        with pytest.raises(UnsafeModelError, match="'weights.npy' is not inside a folder: not a torch archive"):
            read_manifest(path, ReadLimits(max_compression_ratio=10**9))

    assert _peak_during(read) < 8 << 20


def test_member_larger_than_the_size_limit(tmp_path: Path, torch_members) -> None:
    members = with_change(torch_members, "archive/data/0", data=bytes(4096))
    path = write(tmp_path / "big.pt", Archive(members))
    with pytest.raises(UnsafeModelError, match=r"'archive/data/0' declares 4096 bytes \(limit 1000\)"):
        read_torch_zip(path, ReadLimits(max_member_bytes=1000))


def test_deflate_stream_with_junk_after_its_end(tmp_path: Path, torch_members) -> None:
    members = with_change(torch_members, "archive/data.pkl", method=8)
    for m in members:
        if m.name == "archive/data.pkl":
            m.payload = deflate(m.data) + b"junk"
    refused(write(tmp_path / "j.pt", Archive(members)), match="deflate stream does not end exactly")


@pytest.mark.parametrize("method", [12, 14, 93, 99])
def test_other_compression_methods(tmp_path: Path, torch_members, method: int) -> None:
    members = with_change(torch_members, "archive/data.pkl", method=method)
    refused(write(tmp_path / "m.pt", Archive(members)), match=f"compression method {method}")


# ------------------------------------------------------------------ row 17: unexpected member names


@pytest.mark.parametrize("name", ["../x/data.pkl", "/abs/data.pkl", "archive/../data.pkl", "archive\\data.pkl",
                                  "C:/archive/data.pkl", "archive//data.pkl", "archive/./data.pkl"])
def test_zip_slip_names(tmp_path: Path, torch_members, canary: Path, name: str) -> None:
    members = fresh(torch_members) + [Member(name, payload_pickle(canary))]
    err = refused(write(tmp_path / "slip.pt", Archive(members)), match="zip member name")
    assert repr(name) in str(err)


def test_two_data_pkl_under_two_folders(tmp_path: Path, torch_members, canary: Path) -> None:
    members = fresh(torch_members) + [Member("other/data.pkl", payload_pickle(canary))]
    refused(write(tmp_path / "two.pt", Archive(members)), match="more than one top-level folder.*'other/data.pkl'")


def test_duplicate_member_name(tmp_path: Path, torch_members, canary: Path) -> None:
    members = fresh(torch_members) + [Member("archive/data.pkl", payload_pickle(canary))]
    refused(write(tmp_path / "dup.pt", Archive(members)), match="'archive/data.pkl' appears twice")


def test_no_data_pkl(tmp_path: Path, torch_members) -> None:
    members = [m for m in fresh(torch_members) if not m.name.endswith("data.pkl")]
    refused(write(tmp_path / "none.pt", Archive(members)), match="no data.pkl")


def test_extra_member(tmp_path: Path, torch_members) -> None:
    members = fresh(torch_members) + [Member("archive/extra.py", b"import os\n")]
    refused(write(tmp_path / "extra.pt", Archive(members)), match="'archive/extra.py' is not part of a torch.save archive")


def test_oversized_text_record(tmp_path: Path, torch_members, canary: Path) -> None:
    """'version' is a short text record; a pickle hidden in it is refused."""
    members = with_change(torch_members, "archive/version", data=payload_pickle(canary) * 3)
    refused(write(tmp_path / "v.pt", Archive(members)), match="'archive/version' is \\d+ bytes")


def test_non_utf8_name(tmp_path: Path, torch_members) -> None:
    data = bytearray(build(Archive(fresh(torch_members) + [Member("archive/data/77", b"x")])))
    for at in [i for i in range(len(data)) if data.startswith(b"archive/data/77", i)]:
        data[at + 13 : at + 15] = b"\xff\xfe"
    path = tmp_path / "u.pt"
    path.write_bytes(bytes(data))
    refused(path, match="not valid UTF-8")


def test_member_count_limit(tmp_path: Path, torch_members) -> None:
    path = write(tmp_path / "many.pt", Archive(fresh(torch_members)))
    with pytest.raises(UnsafeModelError, match="has 8 members \\(limit 5\\)"):
        read_torch_zip(path, ReadLimits(max_zip_members=5))


# ------------------------------------------------------------------ row 18: polyglots, prefixes, trailers


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-offsets", "absolute-offsets"])
def test_prefix_bytes_before_the_archive(tmp_path: Path, torch_members, absolute: bool) -> None:
    path = write(tmp_path / "poly.pt", Archive(fresh(torch_members), prefix=b"PK\x03\x04" + b"\0" * 60,
                                               absolute_offsets=absolute))
    refused(path, match="bytes before the first zip member|bytes before the archive")


def test_pickle_zip_polyglot(tmp_path: Path, torch_members, canary: Path) -> None:
    """fickling polyglot: a pickle in front, a torch zip behind. Read as the pickle it starts as."""
    path = write(tmp_path / "poly.pt", Archive(fresh(torch_members), prefix=payload_pickle(canary)))
    err = refused(path)
    assert "system" in str(err)


def test_trailing_bytes_after_the_archive(tmp_path: Path, torch_members, canary: Path) -> None:
    path = write(tmp_path / "t.pt", Archive(fresh(torch_members), trailer=payload_pickle(canary)))
    refused(path, match="trailing bytes after the end of the zip archive")


def test_archive_comment(tmp_path: Path, torch_members, canary: Path) -> None:
    path = write(tmp_path / "c.pt", Archive(fresh(torch_members), comment=payload_pickle(canary)))
    refused(path, match=r"zip archive has a \d+-byte comment")


def test_member_comment(tmp_path: Path, torch_members) -> None:
    members = with_change(torch_members, "archive/data.pkl", comment=b"hello")
    refused(write(tmp_path / "c.pt", Archive(members)), match="'archive/data.pkl' has a 5-byte comment")


def test_bytes_between_members_and_directory(tmp_path: Path, torch_members, canary: Path) -> None:
    path = write(tmp_path / "b.pt", Archive(fresh(torch_members), between=payload_pickle(canary)))
    refused(path, match="after its data are not a matching data descriptor")


def test_gap_between_members_without_descriptors(tmp_path: Path, torch_members) -> None:
    members = fresh(torch_members, flags=0x800)
    members[0].payload = members[0].data
    path = write(tmp_path / "g.pt", Archive(members, between=b"\0" * 5))
    refused(path, match="5 unexplained bytes after zip member")


def test_overlapping_members(tmp_path: Path, torch_members) -> None:
    """Two directory entries for one local header (a zip 'quine' / overlap bomb shape)."""
    data = bytearray(build(Archive(fresh(torch_members))))
    cd = _central_offset(data)
    first_len = 46 + struct.unpack_from("<H", data, cd + 28)[0]
    struct.pack_into("<I", data, cd + first_len + 42, 0)  # second entry -> first local header
    path = tmp_path / "o.pt"
    path.write_bytes(bytes(data))
    refused(path, match="'archive/data.pkl' overlaps the next member")


# ------------------------------------------------------------------ row 19 and garbage


def test_png_renamed_pt(tmp_path: Path) -> None:
    path = tmp_path / "bad_pytorch.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\0" * 100)
    refused(path, UnsupportedFormatError, match="not a model file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    refused(path, MalformedModelError, match="empty")
    with pytest.raises(MalformedModelError, match="empty"):
        StrictZip.open(path)


@pytest.mark.parametrize("keep", [4, 30, 200, -30, -1])
def test_truncated_zip(tmp_path: Path, torch_members, keep: int) -> None:
    data = build(Archive(fresh(torch_members)))
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:keep])
    refused(path, MalformedModelError, match="truncated|too short")


def test_empty_zip_archive(tmp_path: Path) -> None:
    path = write(tmp_path / "e.zip", Archive([], zip64_end=False))
    refused(path, MalformedModelError, match="empty zip archive")


def test_zipfile_still_disagrees_with_us_on_the_relaxed_cases(tmp_path: Path, torch_members) -> None:
    """Sanity: the CRC case really is one Python's zipfile trips on only when reading."""
    members = with_change(torch_members, "archive/data.pkl", crc=1)
    path = write(tmp_path / "crc.pt", Archive(members))
    with zipfile.ZipFile(path) as zf:
        with pytest.raises(zipfile.BadZipFile):
            zf.read("archive/data.pkl")


# ------------------------------------------------------------------ fuzz: fail closed, never crash


@pytest.mark.parametrize("seed", range(6))
def test_mutated_archives_fail_closed(tmp_path: Path, torch_members, seed: int) -> None:
    """Seeded random byte edits/truncations: a full, readable manifest or a ModelFileError,
    never another exception."""
    rng = random.Random(seed)
    original = build(Archive(fresh(torch_members)))
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / "fuzz.pt"
        path.write_bytes(bytes(data))
        try:
            manifest = read_manifest(path)
            for info in manifest.tensors:
                b"".join(manifest.iter_tensor_bytes(info))
        except ModelFileError:
            pass
