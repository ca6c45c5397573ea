"""The format-independent description of a model file: its tensors and where their bytes are.

Every reader (safetensors, torch zip, legacy torch, diffusers folders...) produces a
:class:`Manifest`. Hashing, inspection and (later) fingerprints only ever see manifests, so
a new container format is a new reader, not a change everywhere.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Canonical dtype names are the safetensors spellings; bits per element.
# Source: safetensors/src/tensor.rs `enum Dtype` and safetensors.torch._TYPES.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    # Not in safetensors, but torch can pickle it; named in the same style.
    "C128": 128,
}

# Element sizes in bytes for the dtypes that are whole bytes (what numpy views need).
def dtype_itemsize(dtype: str) -> int:
    """Bytes per element; raises KeyError for an unknown dtype, ValueError for sub-byte ones."""
    bits = DTYPE_BITS[dtype]
    if bits % 8:
        raise ValueError(f"dtype {dtype} is not a whole number of bytes per element")
    return bits // 8


class Verdict(str, enum.Enum):
    """What a reader concluded about a file. Only a fully validated file is ``clean``."""

    CLEAN = "clean"
    QUARANTINE = "quarantine"  # could not be proven safe (may carry code)
    REJECTED = "rejected"  # malformed or not a model

    def __str__(self) -> str:  # so f-strings and JSON print the word
        return self.value


class Format(str, enum.Enum):
    """Container formats, sniffed from bytes (see :mod:`consentry.formats.sniff`)."""

    SAFETENSORS = "safetensors"
    TORCH_ZIP = "torch-zip"
    TORCH_LEGACY = "torch-legacy"
    PICKLE = "pickle"  # a bare pickle stream that is not a torch legacy file
    GGUF = "gguf"
    ZIP = "zip"  # a zip that is not laid out as a torch archive
    SEVEN_ZIP = "7z"
    TAR = "tar"
    DIFFUSERS = "diffusers"  # a folder with model_index.json
    SHARDED = "sharded"  # *.safetensors.index.json / pytorch_model.bin.index.json + shards
    EMPTY = "empty"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: name, canonical dtype, shape, and where its bytes live.

    ``file_range`` is ``(start, end)`` absolute offsets in ``path`` when the tensor's bytes are
    stored raw, C-contiguous and little-endian in one run of that file: the single hashing pass
    can then consume them as they stream by. Otherwise (a strided view into a torch storage, a
    compressed zip member, a big-endian archive) it is ``None`` and the manifest's
    :meth:`Manifest.iter_tensor_bytes` produces the canonical bytes.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path | None = None
    file_range: tuple[int, int] | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return (self.numel * DTYPE_BITS[self.dtype] + 7) // 8


@dataclass
class Manifest:
    """What a reader learnt about a model without running anything in it."""

    path: Path
    format: Format
    tensors: list[TensorInfo] = field(default_factory=list)
    # safetensors ``__metadata__`` (string -> string); empty for other formats.
    metadata: dict[str, str] = field(default_factory=dict)
    # Offset where the safetensors data buffer starts (8 + header length): AutoV3 hashes from here.
    data_start: int | None = None
    # Things a person should know (e.g. "GGUF: tensors not read yet").
    notes: list[str] = field(default_factory=list)
    # Component files for folders and shard sets: (relative name, manifest).
    parts: list[tuple[str, "Manifest"]] = field(default_factory=list)
    # Non-tensor values found in a pickle (e.g. ``global_step``) flattened to name -> repr.
    extras: dict[str, str] = field(default_factory=dict)
    # Byte ranges of ``path`` that must have a given CRC-32: ``(what, start, end, crc)``. A torch
    # zip's *stored* tensor members are hashed straight from the file, so their CRC is checked
    # in the same single read as the hashes (:func:`consentry.identity.identify.identify`).
    crc_ranges: list[tuple[str, int, int, int]] = field(default_factory=list)

    @property
    def parameter_count(self) -> int:
        return sum(t.numel for t in self.tensors)

    def iter_tensor_bytes(self, tensor: TensorInfo, chunk_size: int = 1 << 22) -> Iterator[bytes]:
        """Yield the tensor's canonical bytes (C order, little-endian) in chunks.

        The default reads ``file_range``; readers whose tensors may lack one override this.
        """
        if tensor.file_range is None or tensor.path is None:
            raise NotImplementedError(f"{self.format} manifest cannot produce bytes for {tensor.name!r}")
        start, end = tensor.file_range
        with open(tensor.path, "rb") as fh:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                block = fh.read(min(chunk_size, remaining))
                if not block:
                    raise EOFError(f"{tensor.path}: file ended inside tensor {tensor.name!r}")
                remaining -= len(block)
                yield block
