"""hash_file / hash_bytes against independent hashlib/zlib/blake3 computations and published vectors."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest
from blake3 import blake3

from consentry.formats.tensors import Format, Manifest, TensorInfo
from consentry.identity import hashes
from consentry.identity.content_hash import combine
from consentry.identity.hashes import FileHashes, hash_bytes, hash_file, tensor_digests_for

MIB = 1 << 20


def expected(data: bytes, data_start: int | None = None, tensors: Sequence[TensorInfo] = ()) -> FileHashes:
    """The straightforward definition of every field, one hash at a time on the raw bytes."""
    sha = hashlib.sha256(data).hexdigest().upper()
    crc = zlib.crc32(data)
    autov3 = hashlib.sha256(data[data_start:]).hexdigest().upper() if data_start is not None else None
    return FileHashes(
        sha256=sha,
        autov1=hashlib.sha256(data[0x100000:0x110000]).hexdigest().upper()[:8] if len(data) >= 2 * MIB else None,
        autov2=sha[:10],
        autov3=autov3,
        autov3_short=autov3[:12] if autov3 else None,
        crc32=struct.pack("<I", crc).hex().upper(),
        crc32_conventional=struct.pack(">I", crc).hex().upper(),
        blake3=blake3(data).hexdigest().upper(),
        size=len(data),
        tensor_digests={t.name: blake3(data[t.file_range[0] : t.file_range[1]]).digest() for t in tensors if t.file_range},
    )


def write(tmp_path: Path, data: bytes, name: str = "f.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def pseudo_random(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def tensor(name: str, start: int, end: int, path: Path | None = None) -> TensorInfo:
    return TensorInfo(name, "U8", (end - start,), path, (start, end))


# --- published vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_hello_world_vectors(tmp_path: Path, workers: int) -> None:
    path = write(tmp_path, b"hello world")
    for h in (hash_bytes(b"hello world"), hash_file(path, workers=workers)):
        assert h.sha256 == "B94D27B9934D3E08A52E52D7DA7DABFAC484EFE37A5380EE9088F7ACE2EFCDE9"
        assert h.autov2 == "B94D27B993"
        assert h.crc32 == "85114A0D"
        assert h.crc32_conventional == "0D4A1185"
        assert h.blake3.startswith("D74981EF")
        assert h.blake3 == "D74981EFA70A0C880B8D8C1985D075DBCBF679B99A5F9914E5AAF96B831A9E24"
        assert h.autov1 is None and h.autov3 is None and h.autov3_short is None
        assert h.size == 11
        assert h == expected(b"hello world")


def build_vector_2_8() -> tuple[bytes, int, np.ndarray]:
    """hub-interfaces.md §2.8: one F32 tensor of float32(i*0.001), i < 600000, 344-byte header.

    The published metadata *values* are not given, so SHA256/CRC32/BLAKE3 of the whole file
    (367AEA39..., 5994ABD6, 3619FECB...) cannot be reproduced. The values below are padded so
    the header is 344 bytes (file size 2400352, as published); then AutoV3 (data only) and
    AutoV1 (bytes 1 MiB..1 MiB+64 KiB, inside the data because it starts at 352) are checkable.
    """
    values = (np.arange(600000, dtype=np.float64) * 0.001).astype("<f4")
    header = {
        "__metadata__": {
            "ss_output_name": "test",
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_tag_frequency": json.dumps({"10_ohwx woman": {"ohwx woman": 25}}),
            "modelspec.title": "test",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        },
        "lora_unet_test.weight": {"dtype": "F32", "shape": [600000], "data_offsets": [0, values.nbytes]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    assert len(raw) <= 344
    raw += b" " * (344 - len(raw))
    data = struct.pack("<Q", len(raw)) + raw + values.tobytes()
    return data, 8 + len(raw), values


def test_safetensors_vector_2_8(tmp_path: Path) -> None:
    data, data_start, values = build_vector_2_8()
    path = write(tmp_path, data, "vector.safetensors")
    from safetensors.numpy import load_file  # independent reader: the file we built is valid

    assert np.array_equal(load_file(str(path))["lora_unet_test.weight"], values)
    weight = TensorInfo("lora_unet_test.weight", "F32", (600000,), path, (data_start, len(data)))
    h = hash_file(path, data_start=data_start, tensors=[weight], chunk_size=256 * 1024, workers=2)
    assert h.size == 2400352
    assert h.autov3 == "83EFF4A462AB7209C5D8D2CEA3DC7B88C43BF24BBD9C64600679C6B8ECC17762"
    assert h.autov3_short == "83EFF4A462AB"
    assert h.autov1 == "7FD285A5"
    assert h.tensor_digests == {"lora_unet_test.weight": blake3(values.tobytes()).digest()}
    assert h == expected(data, data_start, [weight])
    assert hash_bytes(data, data_start=data_start, tensors=[weight]) == h


# --- sizes and chunk boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, 1000, MIB - 1, MIB + 12345, 2 * MIB - 1, 2 * MIB, 2 * MIB + 777, 0x110000 + 3],
)
@pytest.mark.parametrize("chunk_size,workers", [(4099, 2), (65536, 1), (65536, 3), (MIB, 2), (hashes.DEFAULT_CHUNK_SIZE, 2)])
def test_sizes_and_chunks(tmp_path: Path, size: int, chunk_size: int, workers: int) -> None:
    data = pseudo_random(size, size)
    path = write(tmp_path, data)
    data_start = size // 3
    tensors = [tensor("a", data_start, size), tensor("b", 0, size // 2)]
    got = hash_file(path, data_start=data_start, tensors=tensors, chunk_size=chunk_size, workers=workers)
    assert got == expected(data, data_start, tensors)
    assert (got.autov1 is None) == (size < 2 * MIB)


def test_autov1_threshold_is_exactly_2_mib() -> None:
    assert hash_bytes(bytes(2 * MIB - 1)).autov1 is None
    assert hash_bytes(bytes(2 * MIB)).autov1 == hashlib.sha256(bytes(0x10000)).hexdigest().upper()[:8]


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"")
    h = hash_file(path, data_start=0, tensors=[tensor("empty", 0, 0)])
    assert h.sha256 == hashlib.sha256(b"").hexdigest().upper()
    assert h.autov3 == h.sha256
    assert h.crc32 == h.crc32_conventional == "00000000"
    assert h.tensor_digests == {"empty": blake3(b"").digest()}
    assert h == expected(b"", 0, [tensor("empty", 0, 0)])


@pytest.mark.parametrize("workers", [1, 2])
def test_data_start_at_eof_and_at_zero(tmp_path: Path, workers: int) -> None:
    data = pseudo_random(10_000)
    path = write(tmp_path, data)
    at_eof = hash_file(path, data_start=len(data), chunk_size=1024, workers=workers)
    assert at_eof.autov3 == hashlib.sha256(b"").hexdigest().upper()
    at_zero = hash_file(path, data_start=0, chunk_size=1024, workers=workers)
    assert at_zero.autov3 == at_zero.sha256


@pytest.mark.parametrize("workers", [1, 2])
def test_crc_ranges_match_zlib_on_the_raw_bytes(tmp_path: Path, workers: int) -> None:
    """CRC-32 of byte ranges (a torch zip's stored members), computed in the same pass: ranges
    inside one chunk, spanning several, at the end and empty."""
    data = pseudo_random(50_000, 3)
    path = write(tmp_path, data)
    ranges = [("inside", 10, 900), ("spanning", 1000, 9000), ("tail", 40_000, 50_000), ("empty", 7, 7), ("all", 0, 50_000)]
    h = hash_file(path, crc_ranges=[(n, s, e, 0) for n, s, e in ranges], chunk_size=1024, workers=workers)
    assert h.range_crcs == {n: zlib.crc32(data[s:e]) for n, s, e in ranges}
    assert hash_bytes(data, crc_ranges=[(n, s, e, 0) for n, s, e in ranges]).range_crcs == h.range_crcs
    assert h.sha256 == hashlib.sha256(data).hexdigest().upper()  # the file hashes are unaffected
    with pytest.raises(ValueError, match="CRC range 'out'"):
        hash_file(path, crc_ranges=[("out", 49_000, 50_001, 0)])


# --- tensor ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_tensor_ranges_overlapping_zero_length_unsorted(tmp_path: Path, workers: int) -> None:
    size = 50_000
    data = pseudo_random(size, 7)
    path = write(tmp_path, data)
    chunk = 1000
    fixed = [
        tensor("whole", 0, size),
        tensor("first_byte", 0, 1),
        tensor("last_byte", size - 1, size),
        tensor("exact_chunk", chunk, 2 * chunk),
        tensor("across_boundary", chunk - 1, chunk + 1),
        tensor("across_many", 1500, 7500),
        tensor("overlaps_many", 1400, 7600),
        tensor("same_range_twice", 1500, 7500),
        tensor("zero_mid", 1234, 1234),
        tensor("zero_on_boundary", 3 * chunk, 3 * chunk),
        tensor("zero_at_eof", size, size),
        tensor("zero_at_start", 0, 0),
    ]
    rng = random.Random(3)
    rand = []
    for i in range(200):
        s = rng.randrange(size)
        rand.append(tensor(f"r{i}", s, min(size, s + rng.choice([0, 1, 999, 1000, 1001, 5000]))))
    tensors = fixed + rand
    rng.shuffle(tensors)
    tensors.append(TensorInfo("no_range", "F32", (4,), path, None))  # left to tensor_digests_for
    got = hash_file(path, data_start=100, tensors=tensors, chunk_size=chunk, workers=workers)
    want = expected(data, 100, tensors)
    assert got == want
    assert "no_range" not in got.tensor_digests
    assert len(got.tensor_digests) == len(tensors) - 1


def test_many_small_tensors_like_a_lora(tmp_path: Path) -> None:
    rng = random.Random(11)
    sizes = [rng.randrange(256, 8192) for _ in range(1000)]
    header = 512
    data = bytearray(pseudo_random(header + sum(sizes), 5))
    path = write(tmp_path, bytes(data))
    tensors, offset = [], header
    for i, n in enumerate(sizes):
        tensors.append(tensor(f"lora_unet_block_{i}.weight", offset, offset + n))
        offset += n
    got = hash_file(path, data_start=header, tensors=tensors, chunk_size=64 * 1024, workers=2)
    assert got == expected(bytes(data), header, tensors)
    digests = dict(got.tensor_digests)
    assert combine(tensors, digests) == combine(tensors, expected(bytes(data), header, tensors).tensor_digests)


def test_tensor_digests_for_tensors_without_range(tmp_path: Path) -> None:
    data = pseudo_random(20_000, 9)
    path = write(tmp_path, data)

    class Strided(Manifest):
        """A manifest whose tensor bytes are produced, not read raw (like a strided torch view)."""

        def iter_tensor_bytes(self, t: TensorInfo, chunk_size: int = 1 << 22) -> Iterator[bytes]:
            if t.file_range is not None:
                yield from super().iter_tensor_bytes(t, chunk_size)
            else:
                yield data[::2][:100]
                yield data[1::2][:100]

    raw = tensor("raw", 10, 19_000, path)
    strided = TensorInfo("strided", "U8", (200,), path, None)
    manifest = Strided(path, Format.TORCH_ZIP, tensors=[raw, strided])
    out = tensor_digests_for(manifest, [strided])
    assert out == {"strided": blake3(data[::2][:100] + data[1::2][:100]).digest()}
    assert tensor_digests_for(manifest, [raw])["raw"] == blake3(data[10:19_000]).digest()
    assert tensor_digests_for(manifest, []) == {}


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_file_that_shrinks_raises_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    data = pseudo_random(100_000)
    path = write(tmp_path, data)
    real = hashes._file_size
    monkeypatch.setattr(hashes, "_file_size", lambda fd: real(fd) + 5000)  # size at open > bytes there
    threads_before = threading.active_count()
    with pytest.raises(OSError, match="shrank"):
        hash_file(path, data_start=10, tensors=[tensor("t", 0, 100_000)], chunk_size=4096, workers=workers)
    assert threading.active_count() == threads_before  # workers were joined


def test_unreadable_paths_raise_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        hash_file(tmp_path / "missing.safetensors")
    with pytest.raises(OSError):
        hash_file(tmp_path)  # a directory


def test_inconsistent_offsets_raise_valueerror(tmp_path: Path) -> None:
    path = write(tmp_path, b"x" * 100)
    with pytest.raises(ValueError):
        hash_file(path, data_start=101)
    with pytest.raises(ValueError):
        hash_file(path, tensors=[tensor("t", 50, 101)])
    with pytest.raises(ValueError):
        hash_file(path, tensors=[TensorInfo("t", "U8", (1,), path, (60, 50))])


def test_worker_error_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, pseudo_random(200_000))

    def broken(self: object, start: int, view: memoryview) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(hashes._Crc32Job, "update", broken)
    threads_before = threading.active_count()
    with pytest.raises(RuntimeError, match="boom"):
        hash_file(path, chunk_size=4096, workers=2)
    assert threading.active_count() == threads_before


def test_as_dict_is_json() -> None:
    h = hash_bytes(b"hello world", data_start=5, tensors=[tensor("t", 0, 5)])
    d = json.loads(json.dumps(h.as_dict()))
    assert d["crc32"] == "85114A0D"
    assert d["autov3"] == hashlib.sha256(b" world").hexdigest().upper()
    assert d["tensor_digests"] == {"t": blake3(b"hello").hexdigest().upper()}
