"""``content_hash``: one hash of a model's tensors that does not depend on the container.

Definition (version 1; reproduce it from this docstring alone):

1. For each tensor, ``digest = BLAKE3(bytes)`` (32 bytes), where ``bytes`` are the tensor's
   elements in C (row-major) order, little-endian, exactly ``numel * bits / 8`` bytes —
   i.e. what safetensors stores for it. A torch view is hashed as the tensor it denotes, not as
   its whole storage.
2. Sort the tensors by name, comparing the names' UTF-8 bytes.
3. ``content_hash = BLAKE3(b"consentry-content-v1\\n" + record_1 + record_2 + ...)`` with
   ``record = u32(len(name)) + name + u8(len(dtype)) + dtype + u32(ndim) + u64(dim)... + digest``,
   integers unsigned little-endian, ``name`` UTF-8, ``dtype`` the safetensors dtype name in ASCII
   (``F32``, ``F16``, ``BF16``, ``I64``, ``BOOL``...).
4. Printed as 64 upper-case hex digits like the other hashes.

Header metadata, tensor order in the file, alignment padding, the container, and torch's
storage sharing all leave it unchanged; any change of a name, dtype, shape or value changes it.
Tensor names are the state-dict keys: a torch checkpoint whose top level is
``{"state_dict": {...}}`` is named by the inner keys, other nested dicts join keys with ``.``
(see :mod:`consentry.formats.torch_pickle`).
"""

from __future__ import annotations

import struct
from typing import Iterable, Mapping

from blake3 import blake3

from consentry.formats.tensors import TensorInfo

CONTENT_HASH_DOMAIN = b"consentry-content-v1\n"


def tensor_record(tensor: TensorInfo, digest: bytes) -> bytes:
    """The bytes one tensor contributes to the content hash."""
    if len(digest) != 32:
        raise ValueError("tensor digest must be 32 bytes of BLAKE3")
    name = tensor.name.encode("utf-8")
    dtype = tensor.dtype.encode("ascii")
    parts = [
        struct.pack("<I", len(name)),
        name,
        struct.pack("<B", len(dtype)),
        dtype,
        struct.pack("<I", len(tensor.shape)),
        struct.pack(f"<{len(tensor.shape)}Q", *tensor.shape),
        digest,
    ]
    return b"".join(parts)


def combine(tensors: Iterable[TensorInfo], digests: Mapping[str, bytes]) -> str:
    """Combine per-tensor digests (keyed by tensor name) into the content hash, upper-case hex."""
    ordered = sorted(tensors, key=lambda t: t.name.encode("utf-8"))
    names = [t.name for t in ordered]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor names: the content hash is defined only for unique names")
    hasher = blake3(CONTENT_HASH_DOMAIN)
    for tensor in ordered:
        hasher.update(tensor_record(tensor, digests[tensor.name]))
    return hasher.hexdigest().upper()
