"""Safe model-file reading: sniff the container, validate it, return a :class:`Manifest`.

Nothing here imports torch or unpickles anything. Every reader raises a
:class:`~consentry.errors.ModelFileError` subclass naming the file and the problem.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from consentry.errors import ModelFileError, ModelFileUnreadable, UnsafeModelError, UnsupportedFormatError, MalformedModelError
from consentry.formats.limits import DEFAULT_LIMITS, ReadLimits
from consentry.formats.sniff import sniff_path
from consentry.formats.tensors import Format, Manifest, TensorInfo, Verdict

__all__ = ["Format", "Manifest", "ReadLimits", "TensorInfo", "Verdict", "read_manifest", "sniff_path"]


def read_manifest(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Manifest:
    """Read any supported model file or folder without executing it.

    Raises ModelFileError (with ``.verdict`` ``rejected`` or ``quarantine``) for anything that
    cannot be proven to be a clean model.
    """
    p = Path(path)
    check_regular(p)
    try:
        fmt = sniff_path(p)
    except OSError as exc:
        raise ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}") from None
    try:
        return _dispatch(p, fmt, limits)
    except ModelFileError as err:
        raise err if err.path else err.with_path(p) from None
    except OSError as exc:
        raise ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}") from None


def check_regular(p: Path) -> None:
    """Refuse what is neither a regular file nor a folder before opening it: reading a FIFO
    or a device would block or never end."""
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise ModelFileUnreadable(p, f"cannot read: {exc.strerror or exc}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ModelFileUnreadable(p, "not a regular file (a pipe, socket or device)")


def _dispatch(p: Path, fmt: Format, limits: ReadLimits) -> Manifest:
    if fmt is Format.SAFETENSORS:
        from consentry.formats.safetensors import read_safetensors

        return read_safetensors(p, limits)
    if fmt is Format.ZIP:
        from consentry.formats.torch_pickle import read_torch_zip

        return read_torch_zip(p, limits)
    if fmt in (Format.TORCH_LEGACY, Format.PICKLE):
        from consentry.formats.torch_pickle import read_torch_legacy

        return read_torch_legacy(p, limits)
    if fmt is Format.GGUF:
        from consentry.formats.gguf import read_gguf

        return read_gguf(p, limits)
    if fmt is Format.DIFFUSERS:
        from consentry.formats.folders import read_diffusers

        return read_diffusers(p, limits)
    if fmt is Format.SHARDED:
        from consentry.formats.folders import read_sharded

        return read_sharded(p, limits)
    if fmt in (Format.SEVEN_ZIP, Format.TAR):
        raise UnsafeModelError(p, f"{fmt} archive: archives are not unpacked; a pickle inside cannot be ruled out")
    if fmt is Format.EMPTY:
        raise MalformedModelError(p, "empty file")
    if p.is_dir():
        raise UnsupportedFormatError(p, "folder is neither a diffusers model (model_index.json) nor a shard set (*.index.json)")
    raise UnsupportedFormatError(p, "not a model file: no known magic bytes (safetensors, torch zip/legacy, pickle, GGUF)")
