"""Tensor values as float32 numpy arrays, read through :mod:`consentry.formats` (never unpickled)."""

from __future__ import annotations

import numpy as np

from consentry.fingerprints.errors import FingerprintError
from consentry.formats.tensors import Manifest, TensorInfo

def _fp8_table(exponent_bits: int, finite_only: bool) -> np.ndarray:
    """float32 value of each of the 256 bytes of an 8-bit float (OCP FP8: E4M3FN has no
    infinities and one NaN per sign; E5M2 is IEEE-like)."""
    mantissa_bits = 7 - exponent_bits
    bias = (1 << (exponent_bits - 1)) - 1
    table = np.empty(256, np.float32)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        e, m = (byte >> mantissa_bits) & ((1 << exponent_bits) - 1), byte & ((1 << mantissa_bits) - 1)
        top = (1 << exponent_bits) - 1
        if finite_only and e == top and m == (1 << mantissa_bits) - 1:
            value = float("nan")
        elif not finite_only and e == top:
            value = float("inf") if m == 0 else float("nan")
        elif e == 0:
            value = m / (1 << mantissa_bits) * 2.0 ** (1 - bias)
        else:
            value = (1 + m / (1 << mantissa_bits)) * 2.0 ** (e - bias)
        table[byte] = sign * value
    return table


_FP8 = {"F8_E4M3": _fp8_table(4, finite_only=True), "F8_E5M2": _fp8_table(5, finite_only=False)}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64", *_FP8)  # what weights are fingerprinted from

_NUMPY = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": np.uint16, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,
          # integers only appear as kohya ``alpha`` scalars (diffusers writes them as int64)
          "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


def read_array(manifest: Manifest, tensor: TensorInfo) -> np.ndarray:
    """The tensor as float32, shaped. Only one tensor is in memory at a time (streaming)."""
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        raise FingerprintError(f"tensor {tensor.name!r}: dtype {tensor.dtype} is not fingerprinted (floating point {', '.join(FLOAT_DTYPES)} are)")
    count = tensor.numel
    if tensor.file_range is not None and tensor.path is not None:
        raw = np.fromfile(tensor.path, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=tensor.file_range[0])
    else:
        raw = np.frombuffer(b"".join(manifest.iter_tensor_bytes(tensor)), dtype=np.dtype(dtype).newbyteorder("<"), count=count)
    if raw.size != count:
        raise FingerprintError(f"tensor {tensor.name!r}: file ended inside the tensor")
    if tensor.dtype == "BF16":  # bfloat16 is the top half of a float32
        out = (raw.astype(np.uint32) << 16).view(np.float32)
    elif tensor.dtype in _FP8:  # 256 possible values: a table lookup is exact
        out = _FP8[tensor.dtype][raw]
    else:
        out = raw.astype(np.float32, copy=False)
    return out.reshape(tensor.shape)
