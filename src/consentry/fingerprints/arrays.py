"""Tensor values as float32 numpy arrays, read through :mod:`consentry.formats` (never unpickled)."""

from __future__ import annotations

import numpy as np

from consentry.fingerprints.errors import FingerprintError
from consentry.formats.tensors import Manifest, TensorInfo

_NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16,
          # integers only appear as kohya ``alpha`` scalars (diffusers writes them as int64)
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


def read_array(manifest: Manifest, tensor: TensorInfo) -> np.ndarray:
    """The tensor as float32, shaped. Only one tensor is in memory at a time (streaming)."""
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        raise FingerprintError(f"tensor {tensor.name!r}: dtype {tensor.dtype} is not fingerprinted (floating point F32, F16, BF16, F64 are)")
    count = tensor.numel
    if tensor.file_range is not None and tensor.path is not None:
        raw = np.fromfile(tensor.path, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=tensor.file_range[0])
    else:
        raw = np.frombuffer(b"".join(manifest.iter_tensor_bytes(tensor)), dtype=np.dtype(dtype).newbyteorder("<"), count=count)
    if raw.size != count:
        raise FingerprintError(f"tensor {tensor.name!r}: file ended inside the tensor")
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        out = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        out = raw.astype(np.float32, copy=False)
    return out.reshape(tensor.shape)
